"""Docs that cannot drift: what the code defines is where a user looks for it.

- every setting of ``core.config.Settings`` is in ``env.example`` and in docs/configuration.md;
- every command of the CLI is a row of README's command table (and a ``--json`` option shows there);
- every public factory (a ``create_*`` function of ``pipelines.pipeline_factory`` or of a module
  under ``pipelines.tools``) is named in docs/api-reference.md;
- docs/api-reference.md's registry example has exactly the keys of ``core.models.PipelineEntry``, its
  capabilities table exactly the capabilities of ``Extractor`` / ``Loader`` with their defaults, and
  each discovery message it shows is the one discovery gives for that problem.

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


# ---- docs/api-reference.md against the code (issue 26 §4) ---------------------------------------

def api_reference() -> str:
    return (DOCS / "api-reference.md").read_text()


def registry_example_keys() -> set[str]:
    """The keys of the entry in the PIPELINE_REGISTRY example (the pipeline's name excluded)."""
    block = re.search(r"```python\nPIPELINE_REGISTRY = \{\n(.*?)```", api_reference(), re.S)
    assert block is not None, "docs/api-reference.md has no PIPELINE_REGISTRY example"
    return set(re.findall(r'^ {8}"(\w+)":', block.group(1), re.M))


def test_the_registry_example_has_exactly_the_entry_keys() -> None:
    from core.models import PipelineEntry

    shown = registry_example_keys()
    assert sorted(set(PipelineEntry.model_fields) - shown) == [], "entry keys missing from the registry example"
    assert sorted(shown - set(PipelineEntry.model_fields)) == [], "registry example keys that are not entry keys"


def capabilities() -> dict[str, str]:
    """``Extractor.interval_aware`` -> ``False``: each declared capability and its default, from the code."""
    from pipelines.interfaces import Extractor, Loader

    return {f"{cls.__name__}.{name}": repr(value) for cls in (Extractor, Loader) for name, value in vars(cls).items()
            if not name.startswith("_") and name != "kind" and not callable(value)}


def test_the_capabilities_table_lists_every_capability_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `((?:Extractor|Loader)\.\w+)` \| `([^`]*)` \|", api_reference(), re.M))
    assert len(capabilities()) >= 8
    assert rows == capabilities()


#: A discovery problem (the label of its row in docs/api-reference.md) and an entry that has it.
DISCOVERY_PROBLEMS = {
    "bad cron": '{"x": {"pipeline": make("x"), "schedule": "61 * * * *"}}',
    "schedule cron does not run": '{"x": {"pipeline": make("x"), "schedule": "0 0 31 2 *"}}',
    "no `pipeline`": '{"x": {"description": "d"}}',
    "unknown key": '{"x": {"pipeline": make("x"), "shedule": "@daily"}}',
    "framework table as target": '{"x": {"pipeline": make("x"), "table_name": "_dp_coverage"}}',
    "`table_name` is not the loader's table": ('{"x": {"pipeline": create_el_pipeline(One(), '
                                               'create_clickhouse_loader("events"), "x"), "table_name": "events_v2"}}'),
}
PROBLEM_MODULE = """
import pyarrow as pa
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
from pipelines.tools.loaders.console_loader import create_console_loader

class One(Extractor):
    def extract(self, context):
        yield pa.table({"x": [1]})

def make(name):
    return create_el_pipeline(One(), create_console_loader(), name)

PIPELINE_REGISTRY = %s
"""


def discovery_rows() -> dict[str, str]:
    """Problem -> the message docs/api-reference.md shows for it (its first backquoted text)."""
    return {problem: message for problem, message in
            re.findall(r"^\| ([^|]+?) \| `([^`]+)`", api_reference(), re.M)}


@pytest.mark.parametrize("problem", sorted(DISCOVERY_PROBLEMS))
def test_the_discovery_message_shown_is_the_one_discovery_gives(problem: str, tmp_path: Path) -> None:
    from ops.discovery import discover

    shown = discovery_rows().get(problem)
    assert shown is not None, f"docs/api-reference.md has no row for '{problem}'"
    (tmp_path / "x_pipeline.py").write_text(PROBLEM_MODULE % DISCOVERY_PROBLEMS[problem])
    [broken] = discover(tmp_path).broken
    # The docs write "..." for the module's path and for what follows a shortened message.
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    error = broken.error.replace(str(tmp_path / "x_pipeline.py"), "src/pipelines/x_pipeline.py")
    assert re.fullmatch(pattern, error), (
        f"docs/api-reference.md shows `{shown}` for '{problem}'; discovery says `{error}`")
