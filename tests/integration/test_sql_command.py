"""``./run.sh sql`` and the materialized-view warning of ``check``, through the real CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import rows, run_cli
from core.store import Store


def setup_table() -> None:
    created = run_cli("sql", "--write", "CREATE TABLE t (n UInt32, s Nullable(String)) ENGINE = MergeTree ORDER BY n")
    assert created.returncode == 0, created.stderr
    filled = run_cli("sql", "--write", "INSERT INTO t SELECT number, if(number = 1, NULL, toString(number)) "
                                       "FROM numbers(500)")
    assert filled.returncode == 0, filled.stderr


def test_formats_limits_and_inputs(project_env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli("setup_db").returncode == 0
    setup_table()
    piped = run_cli("sql", "SELECT n, s FROM t ORDER BY n LIMIT 3")  # not a terminal: TSV, no row limit
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "n\ts\n0\t0\n1\tNULL\n2\t2\n"
    assert len(run_cli("sql", "SELECT n FROM t").stdout.splitlines()) == 501
    csv = run_cli("sql", "SELECT n, s FROM t ORDER BY n LIMIT 2", "--format", "csv").stdout
    assert csv == "n,s\n0,0\n1,\n"
    data = json.loads(run_cli("sql", "SELECT n, s FROM t ORDER BY n LIMIT 2", "--format", "json").stdout)
    assert data == [{"n": 0, "s": "0"}, {"n": 1, "s": None}]
    table = run_cli("sql", "SELECT n FROM t ORDER BY n", "--format", "table")  # a table: 100 rows by default
    assert "100 row(s) shown (more exist; --limit to change)" in table.stdout
    assert "│ 99 │" in table.stdout and "│ 100 │" not in table.stdout
    limited = run_cli("sql", "SELECT n FROM t ORDER BY n", "--limit", "5")
    assert limited.stdout == "n\n0\n1\n2\n3\n4\n" and "(first 5 rows; --limit 0 for all)" in limited.stderr
    (tmp_path / "q.sql").write_text("-- a file\nSELECT count() AS c FROM t;\n")
    assert run_cli("sql", str(tmp_path / "q.sql")).stdout == "c\n500\n"
    assert run_cli("sql", input="SELECT max(n) AS m FROM t").stdout == "m\n499\n"
    assert run_cli("sql", "-", input="SELECT '{start}' AS x").stdout == "x\n{start}\n"


def test_read_only_by_default(project_env: dict[str, str], db: Store) -> None:
    assert run_cli("setup_db").returncode == 0
    setup_table()
    for statement in ("DROP TABLE t", "INSERT INTO t VALUES (1000, 'x')", "SELECT 1 SETTINGS readonly = 0"):
        refused = run_cli("sql", statement)
        assert refused.returncode == 2, statement
        assert "readonly" in refused.stderr.lower() and "pass --write to change data" in refused.stderr
    assert rows(db, "SELECT count() FROM t") == [(500,)]
    two = run_cli("sql", "SELECT 1; SELECT 2")
    assert two.returncode == 2 and "give exactly one statement, got 2" in two.stderr
    bad = run_cli("sql", "SELECT nope FROM t")
    assert bad.returncode == 1 and "error: ClickHouse error:" in bad.stderr and "nope" in bad.stderr


def test_check_warns_about_a_materialized_view_over_a_loaded_table(pipelines_dir: Path) -> None:
    (pipelines_dir / "load_pipeline.py").write_text(textwrap.dedent('''
        import pyarrow as pa
        from pipelines.interfaces import Extractor
        from pipelines.pipeline_factory import create_el_pipeline
        from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
        class Rows(Extractor):
            def extract(self, context):
                yield pa.table({"n": [1, 2, 3]})
        PIPELINE_REGISTRY = {"load": {"pipeline": create_el_pipeline(Rows(), create_clickhouse_loader("loaded_t"))}}
    '''))
    assert run_cli("cron_run", "load").returncode == 0
    quiet = json.loads(run_cli("check", "--json").stdout)
    assert not [c for c in quiet["checks"] if c["name"].startswith("mview:")]
    view = run_cli("sql", "--write", "CREATE MATERIALIZED VIEW loaded_mv ENGINE = MergeTree ORDER BY tuple() "
                                     "AS SELECT n FROM loaded_t")
    assert view.returncode == 0, view.stderr
    warned = json.loads(run_cli("check", "--json").stdout)
    [mview] = [c for c in warned["checks"] if c["name"].startswith("mview:")]
    assert mview == {"name": "mview:loaded_t", "status": "warn", "detail": (
        "materialized view(s) loaded_mv read from loaded_t, which pipeline 'load' writes in mode 'append' "
        "(partition swaps / table exchange, not INSERTs): the view(s) never see those rows; use a SQL pipeline "
        "with depends_on instead (docs/sql-pipelines.md)")}
