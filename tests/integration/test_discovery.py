from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from core.exceptions import DiscoveryError, PipelineNotFound
from pipelines.pipeline_registry import discover

HEADER = textwrap.dedent("""
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.console_loader import create_console_loader

    class One(Extractor):
        def extract(self, context):
            yield pa.table({"x": [1]})

    def make(name):
        return create_el_pipeline(One(), create_console_loader(), name)
""")


def write(directory: Path, filename: str, body: str) -> Path:
    path = directory / filename
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def test_discovers_registry_dicts_and_getters(tmp_path: Path) -> None:
    write(tmp_path, "a_pipeline.py", """
        PIPELINE_REGISTRY = {"alpha": {"pipeline": make("alpha"), "description": "A", "schedule": "0 * * * *",
                                       "table_name": "alpha_t"}}
    """)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "b_pipeline.py", """
        def get_pipeline_registry():
            return {"beta": {"pipeline": make("beta"), "schedule": None, "retries": 2, "granularity": "hour"}}
    """)
    write(tmp_path, "helpers.py", "raise RuntimeError('not a pipeline module: must not be imported')")
    registry = discover(tmp_path)
    assert sorted(registry.pipelines) == ["alpha", "beta"]
    assert registry.broken == []
    alpha = registry.get("alpha")
    assert alpha.entry.schedule == "0 * * * *" and alpha.table_name == "alpha_t" and alpha.entry.description == "A"
    assert registry.get("beta").entry.retries == 2 and registry.get("beta").entry.granularity == "hour"


def test_broken_modules_and_entries_are_reported_without_hiding_others(tmp_path: Path) -> None:
    write(tmp_path, "good_pipeline.py", 'PIPELINE_REGISTRY = {"good": {"pipeline": make("good")}}')
    (tmp_path / "crash_pipeline.py").write_text("x = 1\nimport does_not_exist_anywhere\n")
    write(tmp_path, "cron_pipeline.py", 'PIPELINE_REGISTRY = {"badcron": {"pipeline": make("c"), "schedule": "61 * * * *"}}')
    write(tmp_path, "missing_pipeline.py", 'PIPELINE_REGISTRY = {"nopipe": {"description": "forgot it"}}')
    write(tmp_path, "typo_pipeline.py", 'PIPELINE_REGISTRY = {"typo": {"pipeline": make("t"), "shedule": "x"}}')
    write(tmp_path, "none_pipeline.py", "VALUE = 1")
    registry = discover(tmp_path)
    assert list(registry.pipelines) == ["good"]
    errors = {b.source.rsplit("/", 1)[-1]: b.error for b in registry.broken}
    assert errors["crash_pipeline.py"] == (
        f"{tmp_path / 'crash_pipeline.py'}:2: ModuleNotFoundError: No module named 'does_not_exist_anywhere'")
    assert errors["cron_pipeline.py"] == (
        f"pipeline 'badcron' in {tmp_path / 'cron_pipeline.py'}: schedule: invalid cron expression '61 * * * *'")
    assert errors["missing_pipeline.py"].endswith("missing 'pipeline' (the object create_etl_pipeline() returns)")
    assert errors["typo_pipeline.py"].endswith("shedule: unknown key; did you mean 'schedule'?")
    assert errors["none_pipeline.py"].endswith("defines neither get_pipeline_registry() nor PIPELINE_REGISTRY")
    with pytest.raises(DiscoveryError, match="Pipeline 'badcron' cannot run: pipeline 'badcron' in"):
        registry.get("badcron")
    with pytest.raises(PipelineNotFound, match=r"No pipeline named 'nope' \(known: good\)"):
        registry.get("nope")


def test_a_name_defined_twice_names_both_files_and_runs_neither(tmp_path: Path) -> None:
    write(tmp_path, "one_pipeline.py", 'PIPELINE_REGISTRY = {"dup": {"pipeline": make("dup")}}')
    write(tmp_path, "two_pipeline.py", 'PIPELINE_REGISTRY = {"dup": {"pipeline": make("dup")}}')
    registry = discover(tmp_path)
    assert registry.pipelines == {}
    [broken] = registry.broken
    assert broken.error == (f"pipeline name 'dup' is defined in both {tmp_path / 'one_pipeline.py'} "
                            f"and {tmp_path / 'two_pipeline.py'}")


def test_list_shows_pipelines_and_broken_modules(pipelines_dir: Path) -> None:
    write(pipelines_dir, "ok_pipeline.py", """
        PIPELINE_REGISTRY = {"hourly_thing": {"pipeline": make("h"), "description": "Hourly thing",
                                              "schedule": "15 * * * *", "table_name": "things"}}
    """)
    (pipelines_dir / "broken_pipeline.py").write_text("syntax error here\n")
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "hourly_thing" in result.stdout and "Hourly thing" in result.stdout and "15 * * * *" in result.stdout
    assert "never" in result.stdout
    assert "broken_pipeline.py:1: SyntaxError" in result.stdout
    as_json = run_cli("list", "--json")
    import json

    data = json.loads(as_json.stdout)
    [entry] = data["pipelines"]
    assert entry["name"] == "hourly_thing" and entry["table"] == "things" and entry["next_run"].endswith(":15:00+00:00")
    assert data["broken"][0]["error"].startswith(str(pipelines_dir / "broken_pipeline.py") + ":1: SyntaxError")


def test_no_pipelines_is_a_friendly_message(pipelines_dir: Path) -> None:
    result = run_cli("list")
    assert result.returncode == 0
    assert f"No pipelines found: add a *_pipeline.py module to {pipelines_dir}" in result.stdout
