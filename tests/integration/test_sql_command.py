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
    assert piped.stdout == "n\ts\n0\t0\n1\t\\N\n2\t2\n"  # a NULL is ClickHouse's \\N
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


# ---- issue 23 §2: read-only means no write of any kind, and no reading of the machine ----------

READ_ONLY_REFUSED = [
    # (statement template, what must not exist afterwards); {d} is a temporary directory.
    "INSERT INTO FUNCTION file('{d}/env', 'LineAsString') SELECT 'CLICKHOUSE_HOST=evil' "
    "SETTINGS engine_file_truncate_on_insert = 1",
    "insert into function file('{d}/lower', 'LineAsString') select 'x'",
    "/* a comment */ INSERT /* inside */ INTO FUNCTION file('{d}/commented', 'LineAsString') -- trailing\n SELECT 'x'",
    "SELECT 1 INTO OUTFILE '{d}/out.txt'",
    "select 1 into outfile '{d}/out-lower.txt' format CSV",
    "SELECT n FROM (SELECT 1 AS n) INTO OUTFILE '{d}/out-sub.txt' FORMAT TSV",
    "EXPLAIN SELECT 1 INTO OUTFILE '{d}/out-explain.txt'",
    "SELECT * FROM file('{d}/secret.txt', 'LineAsString')",
    "SELECT * FROM (SELECT * FROM file('{d}/secret.txt', 'LineAsString'))",
    "SELECT * FROM (SELECT * FROM file('{d}/secret.txt', 'LineAsString') SETTINGS readonly = 0)",
    "SELECT file('{d}/secret.txt') AS content",
    "select length(file('{d}/secret.txt')) FORMAT Vertical",
    "DESCRIBE file('{d}/secret.txt', 'CSVWithNames')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "INSERT INTO FUNCTION url('http://127.0.0.1:9/x', 'CSV', 'a String') SELECT 'x'",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT 1 SETTINGS max_execution_time = 1000",
    "SYSTEM DROP DNS CACHE",
    "KILL QUERY WHERE 1 SYNC",  # readonly = 1 lets KILL and UNDROP through: refused by their kind
    "kill mutation where 1",
    "UNDROP TABLE t",
    "CREATE TEMPORARY TABLE tmp (n UInt8)",
]


def test_read_only_writes_nothing_and_reads_no_file(project_env: dict[str, str], db: Store, tmp_path: Path) -> None:
    assert run_cli("setup_db").returncode == 0
    setup_table()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("CLICKHOUSE_PASSWORD=hunter2\n")
    for template in READ_ONLY_REFUSED:
        statement = template.format(d=outside)
        refused = run_cli("sql", statement)
        assert refused.returncode == 2, (statement, refused.stdout, refused.stderr)
        assert "pass --write" in refused.stderr, (statement, refused.stderr)
        assert "hunter2" not in refused.stdout + refused.stderr, statement
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert rows(db, "SELECT count() FROM t") == [(500,)]
    # What read-only mode may read: the store's tables, system tables, generated rows.
    for statement, expected in (("select count() from t where s is null", "1"),
                                ("SELECT count() FROM (SELECT n FROM t WHERE n < 10)", "10"),
                                ("SELECT count() FROM system.tables WHERE name = 't'", "1"),
                                ("SELECT sum(number) FROM numbers(10)", "45")):
        allowed = run_cli("sql", "--format", "tsv", statement)
        assert allowed.returncode == 0, (statement, allowed.stderr)
        assert allowed.stdout.splitlines()[1:] == [expected], statement
    # --write is the user's explicit choice: a file may then be written.
    written = run_cli("sql", "--write", f"INSERT INTO FUNCTION file('{outside}/w.txt', 'LineAsString') SELECT 'ok'")
    assert written.returncode == 0, written.stderr
    assert (outside / "w.txt").read_text() == "ok\n"


def test_a_trailing_format_clause_is_clickhouse_output(project_env: dict[str, str]) -> None:
    assert run_cli("setup_db").returncode == 0
    setup_table()
    vertical = run_cli("sql", "SELECT n, s FROM t WHERE n IN (1, 2) ORDER BY n FORMAT Vertical")
    assert vertical.returncode == 0, vertical.stderr
    assert vertical.stdout == "Row 1:\n──────\nn: 1\ns: ᴺᵁᴸᴸ\n\nRow 2:\n──────\nn: 2\ns: 2\n"
    lower = run_cli("sql", "select n from t order by n limit 2 format JSONEachRow -- a comment")
    assert lower.returncode == 0, lower.stderr
    assert lower.stdout == '{"n":0}\n{"n":1}\n'
    # A FORMAT inside a string is data, not a clause.
    data = run_cli("sql", "--format", "tsv", "SELECT 'x FORMAT Vertical' AS f")
    assert data.stdout == "f\nx FORMAT Vertical\n"
    both = run_cli("sql", "--format", "csv", "SELECT 1 FORMAT Vertical")
    assert both.returncode == 2 and "FORMAT Vertical in the query and --format csv: give one" in both.stderr
    # --format vertical: the same layout, from the fetched rows.
    ours = run_cli("sql", "--format", "vertical", "SELECT n, s FROM t WHERE n IN (1, 2) ORDER BY n")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == "Row 1:\n──────\nn: 1\ns: ᴺᵁᴸᴸ\n\nRow 2:\n──────\nn: 2\ns: 2\n"


def test_null_and_the_string_null_differ(project_env: dict[str, str]) -> None:
    assert run_cli("setup_db").returncode == 0
    query = "SELECT arrayJoin([NULL, 'NULL', '\\\\N', '']) AS v"
    tsv = run_cli("sql", "--format", "tsv", query)
    assert tsv.returncode == 0, tsv.stderr
    assert tsv.stdout == "v\n\\N\nNULL\n\\\\N\n\n"  # ClickHouse's own TSV: \N is NULL, a backslash is \\
    table = run_cli("sql", "--format", "table", query)
    assert table.returncode == 0, table.stderr
    cells = [line.strip("│ ") for line in table.stdout.splitlines() if line.startswith("│")]
    assert cells == ["ᴺᵁᴸᴸ", "NULL", "\\N", ""]
