"""The db extractor's push-down (issue 24 §1): ClickHouse reads PostgreSQL itself, and the same
pipeline forced onto the Python path (``pushdown=False``) gives the same table: DESCRIBE, rows
(checksum), NULLs, cursor state, empty intervals and write modes. On the real private PostgreSQL
of ``tests/sources.py`` (zone America/New_York, a password with URL characters), in both engine
modes: on a server, the server connects to PostgreSQL itself."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from audit import not_null, row_count
from conftest import SERVER_MODE, run_cli
from core.exceptions import DataProcessorError
from core.store import Store
from pipelines.interfaces import Transformer
from pipelines.pipeline_factory import create_el_pipeline, create_etl_pipeline
from pipelines.tools.extractors.db_extractor import create_db_extractor
from pipelines.tools.extractors.db_query_shape import NotExpressible, query_shape
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

DAY = datetime(2026, 1, 15, tzinfo=UTC)
INTERVAL_QUERY = ("SELECT id, created_at, amount, note, paid, ts FROM pd_orders "
                  "WHERE created_at >= :start AND created_at < :end ORDER BY id")


class Passthrough(Transformer):
    def transform(self, batch, context):
        return batch


UTC_USER = "pd_utc"


@pytest.fixture(scope="module")
def source(postgres_source):
    """``pd_orders``: 3 days of a row a minute around the test day (UTC), NULLs in every nullable column.

    ``url``: how the pipelines connect. A ClickHouse server connects with its own environment, so on
    one the framework pushes down zoned columns only when the source's sessions start in UTC: there
    the pipelines log in as a role whose sessions do (``ALTER ROLE ... SET TimeZone``); the server
    default stays New York (see test_server_refuses_a_non_utc_source)."""
    postgres_source.execute(
        "DROP TABLE IF EXISTS pd_orders; DROP TABLE IF EXISTS pd_events;"
        "CREATE TABLE pd_orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, amount numeric(12,2), "
        "note text, paid boolean, ts timestamp);"
        "INSERT INTO pd_orders SELECT i, timestamptz '2026-01-14 00:00:00+00' + i * interval '1 minute', "
        "CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.25 END, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n' || i END, "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE i % 2 = 0 END, timestamp '2026-01-14' + i * interval '1 minute' "
        "FROM generate_series(0, 3 * 1440 - 1) i;"
        "CREATE TABLE pd_events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, v numeric(10,3));"
        "INSERT INTO pd_events SELECT i, timestamptz '2026-01-10 00:00:00+00' + i * interval '1 hour', i / 8.0 "
        "FROM generate_series(1, 100) i;")
    import psycopg2

    admin = psycopg2.connect(host=str(postgres_source.directory), port=postgres_source.port, user="postgres",
                             dbname=postgres_source.database)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {UTC_USER}")
        cursor.execute(f"CREATE ROLE {UTC_USER} LOGIN PASSWORD %s", (postgres_source.password,))
        cursor.execute(f"ALTER ROLE {UTC_USER} SET TimeZone = 'UTC'")
        cursor.execute(f"GRANT SELECT ON pd_orders, pd_events TO {UTC_USER}")
    admin.close()
    postgres_source.pushdown_url = (postgres_source.url.replace(f"//{postgres_source.user}:", f"//{UTC_USER}:")
                                    if SERVER_MODE else postgres_source.url)
    return postgres_source


def run(store: Store, make_context, extractor, table: str, *, mode: str = "interval", start: datetime = DAY,
        run_id: str = "r1", transformers=(), allow_empty: bool = False, checks=(), **loader) -> str | None:
    """One run of ``extractor`` into ``table`` (committed with its state); the error, if any."""
    if mode == "interval":
        loader.setdefault("time_column", "created_at")
    target = create_clickhouse_loader(table, mode=mode, **loader)
    pipeline = (create_etl_pipeline(extractor, list(transformers), target, table) if transformers
                else create_el_pipeline(extractor, target, table))
    context = make_context(pipeline=table, start=start, run_id=run_id)
    context.allow_empty = allow_empty
    context.checks = list(checks)
    try:
        pipeline.run(context)
    except DataProcessorError as exc:
        context.state.discard()
        return str(exc)
    context.state.commit(run_id)
    return None


def table_facts(store: Store, table: str) -> dict[str, object]:
    """What both paths must agree on: column types, row count, checksum, NULLs per column."""
    types = store.query_rows("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                             "AND table = {t:String} AND name != '_dp_run_id' ORDER BY position", {"t": table})
    names = [name for name, _ in types]
    columns = ", ".join(f"`{n}`" for n in names)
    nulls = ", ".join(f"countIf(`{n}` IS NULL)" for n in names)
    [(count, checksum, *null_counts)] = store.query_rows(
        f"SELECT count(), groupBitXor(cityHash64({columns})), {nulls} FROM `{table}`")
    return {"types": types, "count": count, "checksum": checksum, "nulls": null_counts}


def logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.same_in_both_runs("sqlglot only, no database")
def test_what_is_expressible() -> None:
    shape = query_shape("SELECT a, B AS b2, o.\"C\" FROM s.orders o WHERE (:cursor IS NULL OR u > :cursor) "
                        "AND :start <= t AND t < :end ORDER BY a", "postgresql")
    assert (shape.schema, shape.table, shape.columns) == ("s", "orders", [("a", "a"), ("b", "b2"), ("C", "C")])
    assert [(t.column, t.op, t.bind, t.unless_null) for t in shape.where] == [
        ("u", ">", "cursor", True), ("t", ">=", "start", False), ("t", "<", "end", False)]
    assert query_shape("SELECT * FROM `Orders` WHERE d >= :start_date", "mysql").table == "Orders"
    for sql, why in [("SELECT a FROM x JOIN y ON x.i = y.i", "JOIN"), ("SELECT a FROM x LIMIT 5", "LIMIT"),
                     ("SELECT lower(a) FROM x", "not a plain column"),
                     ("SELECT a FROM x WHERE a = 5", "does not compare"),
                     ("SELECT a FROM x WHERE a > :s OR b < :e", "OR"), ("SELECT count(*) FROM x", "plain column"),
                     ("SELECT a FROM (SELECT a FROM x) q", "one plain"), ("DELETE FROM x", "one plain SELECT"),
                     ("WITH q AS (SELECT 1) SELECT a FROM q", "WITH"), ("SELECT DISTINCT a FROM x", "DISTINCT")]:
        with pytest.raises(NotExpressible, match=why):
            query_shape(sql, "postgresql")


@pytest.mark.same_in_both_runs("URL parsing only, no database")
def test_tls_files_go_by_contents_and_other_options_are_named(tmp_path: Path) -> None:
    from pipelines.tools.extractors.db_pushdown import endpoint

    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    where = endpoint(f"postgresql+psycopg2://u:p@db:5433/shop?sslmode=verify-full&sslrootcert={tmp_path}/ca.pem")
    assert where.tls == {"sslmode": "verify-full",
                         "sslrootcert_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}
    for url, why in [("postgresql://u:p@db/shop?sslmode=strict", "sslmode=strict is not one of disable, allow"),
                     ("postgresql://u:p@db/shop?sslmode=require&sslmode=disable", "gives sslmode more than once"),
                     ("postgresql://u:p@db/shop?connect_timeout=5&sslmode=require",
                      "option(s) connect_timeout are not carried over to ClickHouse's postgresql()"),
                     ("mysql+pymysql://u:p@db/shop?ssl_ca=/ca.pem", "option(s) ssl_ca are not carried over to "
                                                                    "ClickHouse's mysql()$")]:
        with pytest.raises(NotExpressible, match=why.replace("(", r"\(").replace(")", r"\)")):
            endpoint(url)


def test_interval_query_same_on_both_paths(source, store: Store, make_context, caplog) -> None:
    caplog.set_level(logging.INFO)
    for table, pushdown in (("iv_sql", True), ("iv_py", False)):
        extractor = create_db_extractor(source.pushdown_url, INTERVAL_QUERY, pushdown=pushdown)
        assert run(store, make_context, extractor, table) is None
    log = logged(caplog)
    assert f"ClickHouse read pd_orders on postgresql://{UTC_USER if SERVER_MODE else 'dp_reader'}@" in log
    assert "no Python in the data path" in log
    assert "read through Python: the extractor sets pushdown=False" in log
    pushed, python = table_facts(store, "iv_sql"), table_facts(store, "iv_py")
    assert pushed == python
    assert pushed["count"] == 1440
    # The interval's instants, whatever the source's zone (New York here).
    assert store.query_rows("SELECT toUnixTimestamp(min(created_at)), min(id), max(id) FROM iv_sql") == [
        (int(DAY.timestamp()), 1440, 2879)]
    # Data checks see the same staged rows on both paths: a failing one publishes nothing.
    errors = [run(store, make_context, create_db_extractor(source.pushdown_url, INTERVAL_QUERY, pushdown=pushdown),
                  table, run_id="r2", checks=[row_count(min=1440, max=1440), not_null("id", "note")])
              for table, pushdown in (("iv_sql", True), ("iv_py", False))]
    assert errors[0] == errors[1].replace("iv_py", "iv_sql")
    assert "not_null" in errors[0] and "note" in errors[0]
    assert table_facts(store, "iv_sql") == pushed
    assert store.query_rows("SELECT amount, note, paid FROM iv_sql WHERE id = 1441") == [
        (Decimal("1801.25"), "n1441", None if 1441 % 5 == 0 else False)]


def test_start_date_form_and_empty_interval(source, store: Store, make_context) -> None:
    query = ("SELECT * FROM pd_orders WHERE created_at >= :start_date AND created_at < :end_date "
             "AND id >= :low")
    facts, errors = {}, {}
    for table, pushdown in (("sd_sql", True), ("sd_py", False)):
        def once(low: int, run_id: str, allow_empty: bool = False, table=table, pushdown=pushdown) -> str | None:
            extractor = create_db_extractor(source.pushdown_url, query, params={"low": low}, pushdown=pushdown)
            return run(store, make_context, extractor, table, run_id=run_id, allow_empty=allow_empty)

        assert once(0, "r1") is None
        facts[table] = table_facts(store, table)
        # An empty result must not empty the day silently; allow_empty says it is real.
        errors[table] = once(10**9, "r2")
        assert store.query_rows(f"SELECT count() FROM {table}") == [(1440,)]
        assert once(10**9, "r3", allow_empty=True) is None
        assert store.query_rows(f"SELECT count() FROM {table}") == [(0,)]
    assert facts["sd_sql"] == facts["sd_py"]
    assert facts["sd_sql"]["count"] == 1440
    assert errors["sd_sql"] == errors["sd_py"]
    assert "source returned 0 rows for 2026-01-15, which holds 1,440 rows; set allow_empty=True" in errors["sd_sql"]


def test_incremental_cursor_same_state_and_valid_across_paths(source, store: Store, make_context) -> None:
    states = {}
    for table, pushdown in (("inc_sql", True), ("inc_py", False)):
        extractor = create_db_extractor(source.pushdown_url, table="pd_events", cursor_column="updated_at",
                                        pushdown=pushdown)
        assert run(store, make_context, extractor, table, mode="append") is None
        states[table] = make_context(pipeline=table).state.get("cursor")
    assert states["inc_sql"] == states["inc_py"]
    assert table_facts(store, "inc_sql") == table_facts(store, "inc_py")
    assert table_facts(store, "inc_sql")["count"] == 100
    source.execute("INSERT INTO pd_events SELECT i, timestamptz '2026-01-10 00:00:00+00' + i * interval '1 hour', "
                   "i / 8.0 FROM generate_series(101, 110) i")
    try:
        # Each pipeline switches path: the cursor the other path saved reads exactly the new rows.
        for table, pushdown in (("inc_sql", False), ("inc_py", True)):
            extractor = create_db_extractor(source.pushdown_url, table="pd_events", cursor_column="updated_at",
                                            pushdown=pushdown)
            assert run(store, make_context, extractor, table, mode="append", run_id="r2") is None
            states[table] = make_context(pipeline=table).state.get("cursor")
        assert states["inc_sql"] == states["inc_py"]
        assert table_facts(store, "inc_sql") == table_facts(store, "inc_py")
        assert store.query_rows("SELECT count(), uniqExact(id) FROM inc_py") == [(110, 110)]
    finally:
        source.execute("DELETE FROM pd_events WHERE id > 100")


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_write_modes_same_on_both_paths(source, store: Store, make_context, mode: str) -> None:
    query = "SELECT id, updated_at, v FROM pd_events WHERE id <= :top"
    for table, pushdown in ((f"{mode}_sql", True), (f"{mode}_py", False)):
        for run_id, top in (("r1", 60), ("r2", 80)):
            extractor = create_db_extractor(source.pushdown_url, query, params={"top": top}, pushdown=pushdown)
            options = {"primary_key": ["id"]} if mode == "merge" else {}
            assert run(store, make_context, extractor, table, mode=mode, run_id=run_id, **options) is None
    assert table_facts(store, f"{mode}_sql") == table_facts(store, f"{mode}_py")
    assert store.query_rows(f"SELECT count() FROM {mode}_sql" + (" FINAL" if mode == "merge" else "")) == [(80,)]
    # The copy stops the staging table's merges; a replaced target is that very table (EXCHANGE
    # TABLES), so its merges must run again: OPTIMIZE is refused on a table whose merges are stopped.
    store.command(f"OPTIMIZE TABLE {mode}_sql FINAL")


def test_python_path_when_not_expressible_and_why(source, store: Store, make_context, caplog) -> None:
    caplog.set_level(logging.INFO)
    cases = {
        "np_func": create_db_extractor(source.url, "SELECT id, lower(note) AS note FROM pd_orders WHERE id < :top",
                                       params={"top": 10}),
        "np_opt": create_db_extractor(source.url + "?application_name=dp_test", table="pd_events"),
    }
    for table, extractor in cases.items():
        assert run(store, make_context, extractor, table, mode="append") is None
    assert run(store, make_context, create_db_extractor(source.url, table="pd_events"), "np_tr", mode="append",
               transformers=[Passthrough()]) is None
    log = logged(caplog)
    assert "db: read through Python: 'LOWER(note)' is not a plain column" in log
    assert ("read through Python: the URL's connection option(s) application_name are not carried over to "
            "ClickHouse's postgresql() (it takes sslmode, sslrootcert, sslcert and sslkey)") in log
    assert "db:pd_events: read through Python: the pipeline's transformers need the rows in Python" in log
    assert "no Python in the data path" not in log
    assert store.query_rows("SELECT count() FROM np_func") == [(10,)]
    assert store.query_rows("SELECT count() FROM np_tr") == [(100,)]


FAILING = """
import dataclasses, os
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors import db_pushdown
from pipelines.tools.extractors.db_extractor import create_db_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

# 'clickhouse_refuses': the catalog is read with the right password, ClickHouse gets a wrong one
# (as when the server's own connection is refused), so ClickHouse's error is the one shown.
_endpoint = db_pushdown.endpoint
def endpoint(url):
    found = _endpoint(url)
    return dataclasses.replace(found, password=found.password + "x") if "CH_WRONG" in os.environ else found
db_pushdown.endpoint = endpoint

def pipeline(name, var):
    extractor = create_db_extractor(url_env=var, table="pd_events")
    return {"pipeline": create_el_pipeline(extractor, create_clickhouse_loader(name, mode="append"), name),
            "retries": 0}

PIPELINE_REGISTRY = {"wrong_password": pipeline("wrong_password", "BAD_URL"),
                     "closed_port": pipeline("closed_port", "CLOSED_URL"),
                     "clickhouse_refuses": pipeline("clickhouse_refuses", "GOOD_URL")}
"""


def test_failing_pushdown_is_one_line_and_hides_the_password(source, pipelines_dir: Path, project_env, db) -> None:
    from urllib.parse import quote

    url = source.pushdown_url
    bad = url.replace(quote(source.password, safe=""), quote(source.password + "x", safe=""))
    (pipelines_dir / "pd_pipeline.py").write_text(FAILING)
    env = {"BAD_URL": bad, "CLOSED_URL": url.replace(f":{source.port}/", ":1/"), "GOOD_URL": url}
    assert run_cli("setup_db", env=env).returncode == 0
    logs = Path(project_env["LOG_DIR"])
    expected = {
        "wrong_password": "password authentication failed",
        "closed_port": "cannot connect to",
        "clickhouse_refuses": "ClickHouse could not read pd_events on postgresql://",
    }
    for name, message in expected.items():
        result = run_cli("cron_run", name, "--date", "2026-01-15",
                         env={**env, **({"CH_WRONG": "1"} if name == "clickhouse_refuses" else {})})
        assert result.returncode != 0
        console = result.stdout + result.stderr
        errors = [line for line in console.splitlines() if message in line]
        assert len(errors) == 1, console
        if name == "clickhouse_refuses":
            assert "password authentication failed" in errors[0]
            assert ("must reach it" in errors[0]) == SERVER_MODE
        texts = [console, (logs / "jobs" / f"{name}.log").read_text(),
                 (logs / "system" / "application.log").read_text(),
                 repr(db.query_rows("SELECT * FROM _dp_runs"))]
        for text in texts:
            assert source.password not in text and quote(source.password, safe="") not in text
        db.close()


def test_server_refuses_a_non_utc_source(source, store: Store, make_context, caplog) -> None:
    """The source's default zone is New York: a server, connecting with its own environment, would
    read timestamptz values without their offset, so the run reads through Python and says why
    (the embedded engine makes its own sessions UTC and pushes down)."""
    caplog.set_level(logging.INFO)
    assert run(store, make_context, create_db_extractor(source.url, INTERVAL_QUERY), "ny") is None
    log = logged(caplog)
    if SERVER_MODE:
        assert ("read through Python: the source's sessions start in zone America/New_York, and ClickHouse "
                "would read created_at in it without the offset (ClickHouse issue #89128)") in log
    else:
        assert "no Python in the data path" in log
    assert store.query_rows("SELECT count(), toUnixTimestamp(min(created_at)) FROM ny") == [
        (1440, int(DAY.timestamp()))]


def test_mariadb_same_on_both_paths(mariadb_source, store: Store, make_context, caplog) -> None:
    """MySQL's protocol through ClickHouse's mysql(): a DATETIME interval (zone-less: pushed down even
    with the server at +02:00), and a TIMESTAMP column, which ClickHouse would read in the server's
    zone, taking the Python path with the reason."""
    caplog.set_level(logging.INFO)
    mariadb_source.execute(
        "SET SESSION max_recursive_iterations = 10000; DROP TABLE IF EXISTS pd_sales; "
        "CREATE TABLE pd_sales (id bigint NOT NULL PRIMARY KEY, "
        "sold_at datetime(6) NOT NULL, amount decimal(12,2), label varchar(20), day date, n int, "
        "stamped timestamp(6) NULL);"
        "INSERT INTO pd_sales WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 2999) "
        "SELECT i, TIMESTAMP'2026-01-14 00:00:00' + INTERVAL i MINUTE, IF(i % 7 = 0, NULL, i * 1.25), "
        "IF(i % 3 = 0, NULL, CONCAT('l', i)), DATE(TIMESTAMP'2026-01-14 00:00:00' + INTERVAL i MINUTE), "
        "IF(i % 5 = 0, NULL, i), NULL FROM s")
    query = ("SELECT id, sold_at, amount, label, day, n FROM pd_sales "
             "WHERE sold_at >= :start AND sold_at < :end")
    for table, pushdown in (("my_sql", True), ("my_py", False)):
        extractor = create_db_extractor(mariadb_source.url, query, pushdown=pushdown)
        assert run(store, make_context, extractor, table, time_column="sold_at") is None
    stamped = create_db_extractor(mariadb_source.url, "SELECT id, stamped FROM pd_sales WHERE id < :top",
                                  params={"top": 5})
    assert run(store, make_context, stamped, "my_ts", mode="append") is None
    log = logged(caplog)
    assert "ClickHouse read pd_sales on mysql://dp_reader@" in log
    assert "read through Python: the source's sessions start in zone +02:00" in log
    assert table_facts(store, "my_sql") == table_facts(store, "my_py")
    assert store.query_rows("SELECT count(), min(id), max(id) FROM my_sql") == [(1440, 1440, 2879)]


def test_a_source_column_widened_later_is_checked_value_by_value(source, store: Store, make_context, caplog) -> None:
    """ClickHouse's INSERT ... SELECT would wrap a too-wide integer and ignore a Decimal's precision:
    with a table column narrower than the source's, the rows go through Python, which names the row."""
    caplog.set_level(logging.INFO)
    source.execute("DROP TABLE IF EXISTS pd_wide; CREATE TABLE pd_wide (id integer NOT NULL, v numeric(12,2));"
                   "INSERT INTO pd_wide VALUES (1, 1.5), (2, 9999999999.99);"
                   f"GRANT SELECT ON pd_wide TO {UTC_USER}")
    extractor = create_db_extractor(source.pushdown_url, table="pd_wide")
    assert run(store, make_context, extractor, "wide", mode="replace") is None
    assert "no Python in the data path" in logged(caplog)
    source.execute("ALTER TABLE pd_wide ALTER COLUMN v TYPE numeric(16,2); ALTER TABLE pd_wide ALTER COLUMN id "
                   "TYPE bigint; INSERT INTO pd_wide VALUES (3, 12345678901234.50)")
    try:
        caplog.clear()
        error = run(store, make_context, create_db_extractor(source.pushdown_url, table="pd_wide"), "wide",
                    mode="replace", run_id="r2")
        assert "the source's id, v are wider than the table's column(s)" in logged(caplog)
        assert error is not None and "row 3" in error and "12345678901234.50" in error, error
        assert store.query_rows("SELECT id, v FROM wide ORDER BY id") == [
            (1, Decimal("1.50")), (2, Decimal("9999999999.99"))]
        source.execute("UPDATE pd_wide SET v = 7 WHERE id = 3")  # fits: loads, through Python
        caplog.clear()
        assert run(store, make_context, create_db_extractor(source.pushdown_url, table="pd_wide"), "wide",
                   mode="replace", run_id="r3") is None
        assert "no Python in the data path" not in logged(caplog)
        assert store.query_rows("SELECT count() FROM wide") == [(3,)]
    finally:
        source.execute("DROP TABLE pd_wide")


def test_extremes_and_text_same_on_both_paths(source, store: Store, make_context, caplog) -> None:
    """Dates and times at the ends of ClickHouse's range, unicode, empty string against NULL, uuid,
    json: pushed down, and the same as the Python path's."""
    caplog.set_level(logging.INFO)
    source.execute(
        "DROP TABLE IF EXISTS pd_edges; CREATE TABLE pd_edges (id integer NOT NULL, d date, at timestamptz, "
        "wall timestamp, u uuid, j jsonb, s text, c varchar(5), big numeric(38,10), f double precision);"
        "INSERT INTO pd_edges VALUES (1, '1900-01-01', '1900-01-01 00:00:00+00', '1900-01-01 00:00:00', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"b\": 1, \"a\": [1, 2]}', 'Grüße, 世界 🎉', '', "
        "9999999999999999999999999999.9999999999, -0.5),"
        "(2, '2262-04-11', '2262-04-11 23:47:16.854775+00', '2262-04-11 23:47:16.854775', NULL, NULL, NULL, NULL, "
        "NULL, NULL), (3, '1969-12-31', '1969-12-31 23:59:59.999999+00', '1970-01-01 00:00:00', "
        "'00000000-0000-0000-0000-000000000000', '{}', '', 'x', -1.5, 1e300);"
        f"GRANT SELECT ON pd_edges TO {UTC_USER}")
    try:
        for table, pushdown in (("edges_sql", True), ("edges_py", False)):
            extractor = create_db_extractor(source.pushdown_url, table="pd_edges", pushdown=pushdown)
            assert run(store, make_context, extractor, table, mode="append") is None
        assert "ClickHouse read pd_edges" in logged(caplog)
        assert table_facts(store, "edges_sql") == table_facts(store, "edges_py")
        assert store.query_rows("SELECT toString(d), toString(at), s, c, j FROM edges_sql ORDER BY id") == [
            ("1900-01-01", "1900-01-01 00:00:00.000000", "Grüße, 世界 🎉", "", '{"a": [1, 2], "b": 1}'),
            ("2262-04-11", "2262-04-11 23:47:16.854775", None, None, None),
            ("1969-12-31", "1969-12-31 23:59:59.999999", "", "x", "{}")]
    finally:
        source.execute("DROP TABLE pd_edges")


def test_tls_options_carried_to_postgresql_or_python_path_says_why(source, store: Store, make_context,
                                                                   caplog, tmp_path: Path) -> None:
    """``sslmode`` goes to postgresql() as a parameter of its own (``require`` against this server
    without TLS fails in ClickHouse's own connection: the argument is used, not dropped); an option
    ClickHouse takes only from a server's configuration, or a certificate file that cannot be read,
    takes the Python path with the reason in the log."""
    from core.exceptions import StoreError

    caplog.set_level(logging.INFO)
    disabled = create_db_extractor(source.pushdown_url + "?sslmode=disable", table="pd_events")
    assert run(store, make_context, disabled, "tls_off", mode="append") is None
    assert "ClickHouse read pd_events on postgresql://" in logged(caplog)
    assert store.query_rows("SELECT count() FROM tls_off") == [(100,)]
    pushed = disabled.sql_source(make_context(pipeline="tls_off", start=DAY, run_id="r2"))
    assert pushed is not None and ", sslmode = {dp_src_sslmode:String})" in pushed.expression
    assert pushed.parameters["dp_src_sslmode"] == "disable"
    with pytest.raises(StoreError, match="server does not support SSL, but SSL was required"):
        store.query_rows(f"SELECT count() FROM {pushed.expression}", {**pushed.parameters, "dp_src_sslmode": "require"})
    caplog.clear()
    for option in ("sslmode=require&sslrootcert=system", f"sslmode=verify-full&sslrootcert={tmp_path}/none.pem"):
        assert run(store, make_context, create_db_extractor(f"{source.url}?{option}", table="pd_events"),
                   "tls_py", mode="append") is not None  # the Python path asks for TLS too: refused
    log = logged(caplog)
    assert ("read through Python: sslrootcert=system is taken by ClickHouse only from a named collection in "
            "the server's configuration") in log
    assert f"read through Python: the URL's sslrootcert file {tmp_path}/none.pem cannot be read here" in log


def test_a_users_postgresql_sessions_keep_their_zone(source, store: Store, make_context,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded engine's own PostgreSQL sessions start in UTC only while its statements run:
    a psycopg2 connection of the user's in the same process, opened after a push-down (with a
    cursor: two statements), keeps the server's zone, or the user's own PGTZ."""
    import psycopg2

    def zone() -> str:
        connection = psycopg2.connect(host=source.host, port=source.port, user=source.user,
                                      password=source.password, dbname=source.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW TimeZone")
                return str(cursor.fetchone()[0])
        finally:
            connection.close()

    for user_zone, table in ((None, "zone_default"), ("Europe/Berlin", "zone_berlin")):
        if user_zone is None:
            monkeypatch.delenv("PGTZ", raising=False)
        else:
            monkeypatch.setenv("PGTZ", user_zone)
        extractor = create_db_extractor(source.pushdown_url, table="pd_orders", cursor_column="created_at")
        assert run(store, make_context, extractor, table, mode="append") is None
        assert os.environ.get("PGTZ") == user_zone
        assert zone() == (user_zone or "America/New_York")
        # ClickHouse's sessions were UTC all the same: every instant is right
        assert store.query_rows(f"SELECT count(), toUnixTimestamp(min(created_at)) FROM {table}") == [
            (3 * 1440, int(datetime(2026, 1, 14, tzinfo=UTC).timestamp()))]
