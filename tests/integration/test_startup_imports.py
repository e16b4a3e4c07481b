"""Start-up cost: commands that do not touch data must not import the data stack.

Each check runs the real CLI in a new process and reads ``sys.modules`` at exit; the pipelines
folder holds a module that imports only the framework's interfaces, so whatever heavy module
shows up was imported by the framework itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SRC, cli_env

HEAVY = ("pandas", "pyarrow", "numpy", "httpx", "chdb", "clickhouse_connect")

# Runs the CLI in this process and prints the heavy modules it loaded (after the command ran).
_PROBE = """
import json, runpy, sys
sys.argv = ["main.py", *sys.argv[1:]]
try:
    runpy.run_path({main!r}, run_name="__main__")
except SystemExit:
    pass
sys.stdout.flush()
print("\\nDP_IMPORTED=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""

LIGHT_PIPELINE = '''
from pipelines.interfaces import Extractor, Loader
from pipelines.pipeline_factory import create_etl_pipeline

PIPELINE_REGISTRY = {}


class OneRow(Extractor):
    def extract(self, context):
        import pyarrow as pa

        yield pa.table({"id": [1]})


class Nowhere(Loader):
    def write(self, batch, context):
        return batch.num_rows


PIPELINE_REGISTRY["light"] = {"pipeline": create_etl_pipeline(OneRow(), [], Nowhere()), "schedule": "0 2 * * *"}
'''


def imported(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    probe = _PROBE.format(main=str(SRC / "main.py"), heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", probe, *args], env=cli_env(env), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    marker = result.stdout.rsplit("DP_IMPORTED=", 1)
    assert len(marker) == 2, result.stdout + result.stderr
    return result, json.loads(marker[1])


@pytest.fixture
def light_env(pipelines_dir: Path, project_env: dict[str, str]) -> dict[str, str]:
    (pipelines_dir / "light_pipeline.py").write_text(LIGHT_PIPELINE)
    return project_env


@pytest.mark.parametrize("args", [("help",), ("--help",), ("list", "--help"), ("cron_run", "--help"),
                                  ("backfill", "--help"), ("migrate", "--help"), ("runs", "--help")])
def test_help_imports_no_data_stack(light_env: dict[str, str], args: tuple[str, ...]) -> None:
    result, heavy = imported(*args, env=light_env)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout or "Commands" in result.stdout
    assert heavy == []


def test_list_imports_only_the_store_stack(light_env: dict[str, str]) -> None:
    """``list`` reads run history (so it opens the store: clickhouse-connect, and chdb which
    itself imports pyarrow/numpy), but never pandas nor the HTTP client of the extractors."""
    result, heavy = imported("list", env=light_env)
    assert result.returncode == 0, result.stderr
    assert "light" in result.stdout and "0 2 * * *" in result.stdout
    assert "pandas" not in heavy and "httpx" not in heavy


def test_list_discovers_a_light_module_without_arrow(light_env: dict[str, str]) -> None:
    """Discovery itself (the module imports only pipelines.interfaces) loads no Arrow."""
    probe = (
        f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
        "from pipelines.pipeline_registry import get_registry\n"
        "from core.config import load_settings\n"
        "reg = get_registry(load_settings().pipelines_dir)\n"
        f"print(sorted(reg.pipelines), sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=cli_env(light_env), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['light'] []"


def test_framework_tables_are_repaired_by_a_new_process(store, settings) -> None:
    """The one-query check of an existing store still notices a dropped table, a quarantine
    table without the interval columns and a changed retention, and repairs them."""
    from core.store import Store
    from record.tables import QUARANTINE_TABLE, RUNS_TABLE, STATE_TABLE, _up_to_date, ensure_framework_tables

    ensure_framework_tables(store)
    assert _up_to_date(store, settings.run_history_ttl_days)  # what lets a new process skip the DDL
    store.command(f"DROP TABLE {store.table(STATE_TABLE)}")
    store.command(f"ALTER TABLE {store.table(QUARANTINE_TABLE)} DROP COLUMN interval_end")
    settings.run_history_ttl_days = 7
    fresh = Store(settings)  # what a new process has: no memory of earlier set-ups
    try:
        assert not _up_to_date(fresh, 7)
        ensure_framework_tables(fresh)
        assert _up_to_date(fresh, 7)
        assert fresh.table_exists(STATE_TABLE)
        columns = fresh.query_rows(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            {"db": fresh.database, "t": QUARANTINE_TABLE})
        assert ("interval_end",) in columns
        ddl = fresh.command(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": fresh.database, "t": RUNS_TABLE})
        assert "toIntervalDay(7)" in str(ddl)
    finally:
        fresh.close()


CLICKHOUSE_PIPELINE = '''
from pathlib import Path

from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {}


class FromIpc(Extractor):
    def extract(self, context):
        import pyarrow as pa

        yield pa.ipc.open_stream(pa.py_buffer(Path(__file__).with_name("rows.arrows").read_bytes())).read_all()


PIPELINE_REGISTRY["small"] = {"pipeline": create_etl_pipeline(
    FromIpc(), [], create_clickhouse_loader("small_rows", mode="replace", order_by="id"))}
'''


def test_a_small_run_into_clickhouse_imports_no_pandas(pipelines_dir: Path, project_env: dict[str, str]) -> None:
    """A few rows go in through clickhouse-connect's insert_arrow (chdb's Python() table
    function would import pandas, ~0.4 s of a short cron run); the run id is still in every row."""
    import pyarrow as pa

    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", None, "c"]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (pipelines_dir / "rows.arrows").write_bytes(sink.getvalue().to_pybytes())
    (pipelines_dir / "small_pipeline.py").write_text(CLICKHOUSE_PIPELINE)

    result, heavy = imported("cron_run", "small", env=project_env)
    assert result.returncode == 0, result.stderr
    assert "pandas" not in heavy and "httpx" not in heavy

    from core.config import load_settings
    from core.store import Store

    store = Store(load_settings())
    try:
        rows = store.query_rows("SELECT id, name, _dp_run_id FROM small_rows ORDER BY id")
        run_id = store.query_rows("SELECT run_id FROM _dp_runs WHERE pipeline = 'small'")[0][0]
    finally:
        store.close()
    assert rows == [(1, "a", run_id), (2, None, run_id), (3, "c", run_id)]
