"""What the commands that serve something (``ui``, ``clickhouse_server``) share: ``--port`` and
``--host``, loopback by default, and how to tell whether an address is reachable from elsewhere."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
LOOPBACK = "127.0.0.1"


def listen_options(default_port: int, port_help: str, host_help: str) -> Callable[[F], F]:
    """``--port`` (0-65535, 0: any free port) and ``--host`` (default 127.0.0.1), in that order."""

    def wrap(command: F) -> F:
        command = click.option("--host", default=LOOPBACK, show_default=True, help=host_help)(command)
        return click.option("--port", type=click.IntRange(0, 65535), default=default_port, show_default=True,
                            help=port_help)(command)

    return wrap


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
