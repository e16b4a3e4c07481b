"""What every ``--json`` command shares: the option and how the JSON is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.app import EXIT_OK

F = TypeVar("F", bound=Callable[..., Any])


def json_option(help: str = "Print as JSON.") -> Callable[[F], F]:
    """The ``--json`` flag; the command receives it as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def print_json(data: Any, exit_code: int = EXIT_OK) -> int:
    """Print ``data`` as indented JSON on stdout (for scripts and monitoring); return ``exit_code``."""
    click.echo(json.dumps(data, indent=2))
    return exit_code
