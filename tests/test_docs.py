"""Docs that cannot drift: what the code defines is where a user looks for it.

- every setting of ``core.config.Settings`` is in ``env.example`` and in docs/configuration.md;
- every command of the CLI is a row of README's command table (and a ``--json`` option shows there);
- every public factory (a ``create_*`` function of ``pipelines.pipeline_factory`` or of a module
  under ``pipelines.tools``) is named in docs/api-reference.md.

Each item is its own test case, so a failure names exactly what is undocumented.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FACTORY_MODULES = ("pipelines.pipeline_factory",)
FACTORY_PACKAGES = ("pipelines.tools",)


def setting_names() -> list[str]:
    from core.config import Settings

    return [name.upper() for name in Settings.model_fields]


def commands() -> dict[str, click.Command]:
    from cli.app import cli

    importlib.import_module("main")  # importing it registers every command

    return {name: command for name, command in cli.commands.items() if not command.hidden}


def public_factories() -> list[str]:
    modules = [importlib.import_module(name) for name in FACTORY_MODULES]
    for package_name in FACTORY_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            modules.append(importlib.import_module(info.name))
    return sorted({name for module in modules for name, value in vars(module).items()
                   if name.startswith("create_") and inspect.isfunction(value) and value.__module__ == module.__name__})


def readme_rows() -> dict[str, str]:
    """Command name -> its row in README's command table."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"^\| `\./run\.sh (\w+)[^`]*` \|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_the_lists_are_not_empty() -> None:
    """A broken lookup must not make every case below vanish (and pass)."""
    assert len(setting_names()) > 20 and len(commands()) > 20 and len(public_factories()) > 10


@pytest.mark.parametrize("name", setting_names())
def test_setting_is_in_env_example(name: str) -> None:
    text = (ROOT / "env.example").read_text()
    assert re.search(rf"^#? ?{name}=", text, re.M), f"{name} (core/config.py) is missing from env.example"


@pytest.mark.parametrize("name", setting_names())
def test_setting_is_in_the_configuration_docs(name: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert re.search(rf"^\| `{name}` \|", text, re.M), f"{name} (core/config.py) has no row in docs/configuration.md"


@pytest.mark.parametrize("name", sorted(commands()))
def test_command_is_in_the_readme_table(name: str) -> None:
    row = readme_rows().get(name)
    assert row is not None, f"./run.sh {name} has no row in README.md's command table"
    if any("--json" in param.opts for param in commands()[name].params):
        assert "--json" in row, f"./run.sh {name} has --json, which its README.md row does not show"


@pytest.mark.parametrize("name", public_factories())
def test_factory_is_in_the_api_reference(name: str) -> None:
    text = (DOCS / "api-reference.md").read_text()
    assert re.search(rf"\b{name}\b", text), f"{name} is missing from docs/api-reference.md"
