"""Database sources on real PostgreSQL 15 and MariaDB 10.11 (issue 24): the source's declared types
from the first batch on, exact values whatever the server's zone, intervals as instants, timeouts.

The servers (tests/sources.py) run in zones other than UTC: PostgreSQL America/New_York, MariaDB
+02:00. Each fidelity test is one source table and one pipeline run, in both engine modes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import ROOT, SRC, cli_env, run_cli, wait_for
from core.exceptions import ConfigError, ExtractError, LoadError, TransientError
from core.store import Store
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.db_extractor import create_db_extractor
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
from pipelines.tools.transformers.transformers import create_type_transformer

DAY = datetime(2026, 1, 15, tzinfo=UTC)

PG_TABLE = """
DROP TABLE IF EXISTS fidelity; DROP TYPE IF EXISTS mood;
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE fidelity (
  id integer NOT NULL, small smallint, big bigint, flag boolean,
  price numeric(12,2), wide numeric(38,10), free numeric, r real, d double precision,
  at_tz timestamptz, at_wall timestamp, day date, t time, span interval,
  u uuid, j json, jb jsonb, ints integer[], texts text[], raw bytea, m mood,
  name text, code varchar(10) NOT NULL);
INSERT INTO fidelity VALUES
 (1, 7, 8, true, 1.50, 1.5, 3.14159, 1.5, 2.25, '2026-01-15 07:00:00', '2026-01-15 07:00:00', '2026-01-15',
  '12:34:56.5', '1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1,  "a": [1, 2]}',
  '{"n": 71430, "src": "web"}', '{1,NULL,3}', '{"x","y z"}', '\\xdeadbeef', 'happy', 'Grüße, 世界 🎉', 'abc'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, ''),
 (3, -32768, 9223372036854775807, false, 9999999999.99, 9999999999999999999999999999.9999999999, -1e30, 0, -0.5,
  '1900-01-01 00:00:00+00', '2262-04-11 23:47:16.854775', '1900-01-01', '24:00:00', '-1 day',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', '', 'sad', '', 'x');
"""

MY_TABLE = """
DROP TABLE IF EXISTS fidelity;
CREATE TABLE fidelity (
  id int NOT NULL, tiny tinyint(1), small smallint, medium mediumint, big bigint, ubig bigint unsigned,
  price decimal(12,2), wide decimal(38,10), f float, d double,
  at_ts timestamp(6) NULL, at_dt datetime(6), day date, t time(6), j json, u uuid, raw varbinary(16),
  e enum('a','b'), name varchar(50), code varchar(10) NOT NULL);
INSERT INTO fidelity VALUES
 (1, 1, 7, 8, 9, 10, 1.50, 1.5, 1.5, 2.25, '2026-01-15 12:00:00', '2026-01-15 12:00:00', '2026-01-15',
  '12:34:56.5', '{"b": 1,  "a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', x'deadbeef', 'b',
  'Grüße, 世界 🎉', 'abc'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ''),
 (3, 2, -32768, -8388608, -9223372036854775808, 18446744073709551615, 9999999999.99,
  9999999999999999999999999999.9999999999, 0, -0.5, '1970-01-01 02:00:01', '1900-01-01 00:00:00',
  '2262-04-11', '-838:59:59', '[]', '00000000-0000-0000-0000-000000000000', x'', 'a', '', 'x');
"""


def load(make_context, url: str, table: str) -> None:
    """One run: the source table into ClickHouse table ``table``, 2 rows a batch (row 3, the widest
    values, comes in the second batch: the first batch's values must not decide the types)."""
    extractor = create_db_extractor(url, table="fidelity", batch_size=2)
    create_el_pipeline(extractor, create_clickhouse_loader(table, order_by="id"), "fidelity").run(
        make_context(table_name=table))


def described(store: Store, table: str) -> dict[str, str]:
    return dict(store.query_rows("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                 f"AND table = '{table}' AND name != '_dp_run_id' ORDER BY position"))


def as_text(store: Store, table: str) -> list[tuple]:
    """Every value as ClickHouse's own text (NULL stays None; bytes in hex), rows by id."""
    names = list(described(store, table))
    shown = ", ".join(f"hex(`{n}`)" if n == "raw" else f"toString(`{n}`)" for n in names)
    return store.query_rows(f"SELECT {shown} FROM {table} ORDER BY id")


def test_postgres_types_and_values_land_exactly(postgres_source, store: Store, make_context) -> None:
    postgres_source.execute(PG_TABLE)
    load(make_context, postgres_source.url, "pg_fidelity")
    dt6 = "Nullable(DateTime64(6, 'UTC'))"
    assert described(store, "pg_fidelity") == {
        "id": "Int32", "small": "Nullable(Int16)", "big": "Nullable(Int64)", "flag": "Nullable(Bool)",
        "price": "Nullable(Decimal(12, 2))", "wide": "Nullable(Decimal(38, 10))", "free": "Nullable(String)",
        "r": "Nullable(Float32)", "d": "Nullable(Float64)", "at_tz": dt6, "at_wall": dt6, "day": "Nullable(Date32)",
        "t": "Nullable(String)", "span": "Nullable(String)", "u": "Nullable(UUID)", "j": "Nullable(String)",
        "jb": "Nullable(String)", "ints": "Array(Nullable(Int32))", "texts": "Array(Nullable(String))",
        "raw": "Nullable(String)", "m": "Nullable(String)", "name": "Nullable(String)", "code": "String"}
    first, nulls, extremes = as_text(store, "pg_fidelity")
    assert first == (
        "1", "7", "8", "true", "1.5", "1.5", "3.14159", "1.5", "2.25",
        "2026-01-15 12:00:00.000000",  # 07:00 in New York, the server's zone
        "2026-01-15 07:00:00.000000",  # a zone-less timestamp keeps its wall time
        "2026-01-15", "12:34:56.5", "1 year 2 mons 3 days 04:05:06", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        '{"b": 1,  "a": [1, 2]}', '{"n": 71430, "src": "web"}', "[1,NULL,3]", "['x','y z']", "DEADBEEF",
        "happy", "Grüße, 世界 🎉", "abc")
    assert nulls == ("2", *[None] * 16, "[]", "[]", None, None, None, "")  # a NULL array lands as []
    assert extremes == (
        "3", "-32768", "9223372036854775807", "false", "9999999999.99", "9999999999999999999999999999.9999999999",
        "-1000000000000000000000000000000", "0", "-0.5", "1900-01-01 00:00:00.000000", "2262-04-11 23:47:16.854775",
        "1900-01-01", "24:00:00", "-1 days", "00000000-0000-0000-0000-000000000000", "[]", "{}", "[]", "[]", "",
        "sad", "", "x")


def test_mariadb_types_and_values_land_exactly(mariadb_source, store: Store, make_context) -> None:
    mariadb_source.execute(MY_TABLE)
    load(make_context, mariadb_source.url, "my_fidelity")
    dt6 = "Nullable(DateTime64(6, 'UTC'))"
    assert described(store, "my_fidelity") == {
        "id": "Int32", "tiny": "Nullable(Int8)", "small": "Nullable(Int16)", "medium": "Nullable(Int32)",
        "big": "Nullable(Int64)", "ubig": "Nullable(UInt64)", "price": "Nullable(Decimal(12, 2))",
        "wide": "Nullable(Decimal(38, 10))", "f": "Nullable(Float32)", "d": "Nullable(Float64)", "at_ts": dt6,
        "at_dt": dt6, "day": "Nullable(Date32)", "t": "Nullable(String)", "j": "Nullable(String)",
        "u": "Nullable(UUID)", "raw": "Nullable(String)", "e": "Nullable(String)", "name": "Nullable(String)",
        "code": "String"}
    first, nulls, extremes = as_text(store, "my_fidelity")
    assert first == (
        "1", "1", "7", "8", "9", "10", "1.5", "1.5", "1.5", "2.25",
        "2026-01-15 10:00:00.000000",  # TIMESTAMP: 12:00 at the server's +02:00
        "2026-01-15 12:00:00.000000",  # DATETIME keeps its wall time
        "2026-01-15", "12:34:56.500000", '{"b": 1,  "a": [1, 2]}', "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "DEADBEEF", "b", "Grüße, 世界 🎉", "abc")
    assert nulls == ("2", *[None] * 18, "")
    assert extremes == (
        "3", "2", "-32768", "-8388608", "-9223372036854775808", "18446744073709551615", "9999999999.99",
        "9999999999999999999999999999.9999999999", "0", "-0.5", "1970-01-01 00:00:01.000000",
        "1900-01-01 00:00:00.000000", "2262-04-11", "-838:59:59", "[]", "00000000-0000-0000-0000-000000000000",
        "", "a", "", "x")


# ---- intervals, values that do not fit, transformers (the extractor alone: no ClickHouse) ---------

HOURS = [datetime(2026, 1, 14, 20, tzinfo=UTC).timestamp() + 3600 * h for h in range(33)]  # 14th 20:00 to 16th 04:00


@pytest.mark.same_in_both_runs("reads the sources only; no ClickHouse table")
def test_interval_binds_select_exactly_the_run_s_interval_in_any_server_zone(
        postgres_source, mariadb_source, make_context) -> None:
    values = ", ".join(f"({i}, '{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S}+00')" for i, t in enumerate(HOURS))
    postgres_source.execute(f"DROP TABLE IF EXISTS events; CREATE TABLE events (id int, at timestamptz); "
                            f"INSERT INTO events VALUES {values}")
    mariadb_source.execute("DROP TABLE IF EXISTS events; CREATE TABLE events (id int, at timestamp NULL); "
                           f"SET time_zone = '+00:00'; INSERT INTO events VALUES {values.replace('+00', '')}")
    inside = list(range(4, 28))  # the 24 hours of the 15th, UTC
    for source in (postgres_source, mariadb_source):
        for query in ("SELECT id FROM events WHERE at >= :start_date AND at < :end_date ORDER BY id",
                      "SELECT id FROM events WHERE at >= :start AND at < :end ORDER BY id"):
            batches = list(create_db_extractor(source.url, query).extract(make_context(start=DAY)))
            assert pa.concat_tables(batches).column("id").to_pylist() == inside, (source.kind, query)


@pytest.mark.same_in_both_runs("reads the sources only; no ClickHouse table")
def test_a_value_that_does_not_fit_fails_naming_table_column_and_row(
        postgres_source, mariadb_source, make_context) -> None:
    postgres_source.execute("DROP TABLE IF EXISTS odd; CREATE TABLE odd (id int, at timestamptz, n numeric(5,2)); "
                            "INSERT INTO odd VALUES (1, '2026-01-15', 1), (2, 'infinity', 1), (3, '2026-01-15', 'NaN')")
    mariadb_source.execute("SET sql_mode = ''; DROP TABLE IF EXISTS odd; "
                           "CREATE TABLE odd (id int, d date, at datetime);"
                           "INSERT INTO odd VALUES (1, '2026-01-15', '2026-01-15'), (2, '0000-00-00', '2026-01-15')")

    def failure(source, query) -> str:
        with pytest.raises(ExtractError) as caught:
            list(create_db_extractor(source.url, query, name="odd").extract(make_context()))
        return str(caught.value)

    assert failure(postgres_source, "SELECT id, at FROM odd ORDER BY id") == (
        "odd (query): column 'at' (timestamp with time zone) row 2: 9999-12-31T23:59:59.999999+00:00 does not fit "
        "Nullable(DateTime64(6, 'UTC')): outside ClickHouse's range 1900-01-01 to 2299-12-31 (PostgreSQL's "
        "'infinity'?)")
    assert failure(postgres_source, "SELECT id, n FROM odd WHERE id = 3") == (
        "odd (query): column 'n' (numeric(5,2)) row 1: Decimal('NaN') does not fit Nullable(Decimal(5, 2)): "
        "The string 'NaN' is not a valid decimal128 number")
    # MySQL queries are described from their own result: one MySQL could not wrap in a derived
    # table (two columns of one name) has its declared types too.
    (batch,) = create_db_extractor(mariadb_source.url, "SELECT id, id FROM odd WHERE id = 1").extract(make_context())
    assert batch.column_names == ["id", "id"] and batch.schema.types == [pa.int32(), pa.int32()]
    assert failure(mariadb_source, "SELECT * FROM odd ORDER BY id") == (
        "odd (query): column 'd' (date) row 2: '0000-00-00' does not fit Nullable(Date32): not a date "
        "(a MySQL zero date?)")


@pytest.mark.same_in_both_runs("reads the sources only; no ClickHouse table")
def test_uuid_and_time_columns_take_the_type_transformer(postgres_source, make_context) -> None:
    postgres_source.execute('DROP TABLE IF EXISTS "Ids"; CREATE TABLE "Ids" (u uuid, t time, span interval); '
                            "INSERT INTO \"Ids\" VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '08:30', '1 mon')")
    (batch,) = create_db_extractor(postgres_source.url, table="Ids").extract(make_context())
    assert batch.schema.field("u").metadata[b"clickhouse_type"] == b"UUID"  # the catalog found "Ids"
    typed = create_type_transformer({"u": "str", "t": "str", "span": "str"}).transform(batch, make_context())
    assert typed.to_pylist() == [{"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "t": "08:30:00", "span": "1 mon"}]


# ---- timeouts, SIGTERM, URLs -----------------------------------------------------------------------

@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung database)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.same_in_both_runs("a hung source; no ClickHouse table")
def test_a_source_that_never_answers_fails_after_the_connect_timeout(silent_server, make_context) -> None:
    port, _ = silent_server
    for url in (f"postgresql+psycopg2://dp:s3cret@127.0.0.1:{port}/shop", f"mysql+pymysql://dp:s3cret@127.0.0.1:{port}/shop"):
        began = time.monotonic()
        with pytest.raises(TransientError) as caught:
            list(create_db_extractor(url, table="t", connect_timeout=1).extract(make_context()))
        assert time.monotonic() - began < 5
        assert str(caught.value).startswith(f"db:t: cannot connect to {url.replace('s3cret', '***')}: ")
        assert "timeout" in str(caught.value).lower() or "timed out" in str(caught.value).lower()


HUNG_MODULE = """
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.db_extractor import create_db_extractor
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {"hung": {"pipeline": create_el_pipeline(
    create_db_extractor(url_env="HUNG_URL", table="t", connect_timeout=600), create_clickhouse_loader("hung_t"),
    "hung")}}
"""


@pytest.mark.same_in_both_runs("a hung source: the run never reaches ClickHouse")
def test_sigterm_ends_a_run_waiting_on_a_database(silent_server, pipelines_dir: Path) -> None:
    port, accepted = silent_server
    (pipelines_dir / "hung_pipeline.py").write_text(HUNG_MODULE)
    env = cli_env({"HUNG_URL": f"postgresql+psycopg2://dp:s3cret@127.0.0.1:{port}/shop"})
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "hung", "--date", "2026-01-15"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: accepted, what="the run to connect to the hung source")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 1, out + err
    assert "s3cret" not in out + err
    history = run_cli("runs", "--json", "hung")
    assert '"reason": "killed"' in history.stdout, history.stdout


@pytest.mark.same_in_both_runs("checks a URL; no ClickHouse table")
def test_an_unparsable_url_says_to_percent_encode_and_never_shows_the_password(make_context, monkeypatch) -> None:
    url = "postgresql+psycopg2://dp:p@ss:word@127.0.0.1:5432/shop"
    with pytest.raises(ConfigError) as caught:
        create_db_extractor(url, table="t")
    assert "ss:word" not in str(caught.value)
    assert str(caught.value) == (
        "db extractor 'db:t': postgresql+psycopg2://*** is not a SQLAlchemy URL (e.g. "
        "postgresql+psycopg2://user:pass@host/db, sqlite:///file.db; percent-encode @ : / % # ? in the user or "
        "password, e.g. p%40ss for p@ss)")
    monkeypatch.setenv("SOURCE_DB_URL", url)
    with pytest.raises(ConfigError) as caught:
        list(create_db_extractor(url_env="SOURCE_DB_URL", table="t").extract(make_context()))
    assert "ss:word" not in str(caught.value)


def test_the_sample_csv_s_time_of_day_column_loads_as_text(store: Store, make_context) -> None:
    """Arrow time columns (a CSV's ``08:15:00``) have no ClickHouse type the loader can rely on:
    they land as String, in the source's own ``HH:MM:SS[.ffffff]`` form."""
    sample = ROOT / "data" / "samples" / "orders_day.csv"
    pipeline = create_el_pipeline(create_file_extractor(sample), create_clickhouse_loader("sample_orders"), "s")
    pipeline.run(make_context(table_name="sample_orders"))
    first = sample.read_text().splitlines()[1].split(",")[0]
    assert described(store, "sample_orders")["time_of_day"] == "Nullable(String)"
    assert store.query_rows("SELECT time_of_day, count() FROM sample_orders GROUP BY 1 ORDER BY 1 LIMIT 1") == [
        (first, 1)]
    assert store.query_rows("SELECT count() FROM sample_orders") == [(len(sample.read_text().splitlines()) - 1,)]


@pytest.mark.same_in_both_runs("reads the sources only; no ClickHouse table")
def test_a_statement_longer_than_the_statement_timeout_fails_the_run(postgres_source, mariadb_source,
                                                                     make_context) -> None:
    reasons = {"postgresql": "canceling statement due to statement timeout",
               "mariadb": "no answer within statement_timeout=0.5 s"}
    for source, query in ((postgres_source, "SELECT pg_sleep(5) AS x"), (mariadb_source, "SELECT SLEEP(5) AS x")):
        began = time.monotonic()
        with pytest.raises(ExtractError) as caught:
            list(create_db_extractor(source.url, query, statement_timeout=0.5).extract(make_context()))
        assert time.monotonic() - began < 4, source.kind
        safe = source.url.replace(source.url.split(":")[2].split("@")[0], "***")
        assert str(caught.value) == f"db: query failed on {safe}: {reasons[source.kind]}"


def test_a_value_too_wide_for_a_column_the_source_widened_later_fails_naming_the_row(
        postgres_source, store: Store, make_context) -> None:
    postgres_source.execute("DROP TABLE IF EXISTS grow; CREATE TABLE grow (id int NOT NULL, price numeric(12,2), "
                            "n int); INSERT INTO grow VALUES (1, 1.50, 1)")

    def run(run_id: str) -> None:
        create_el_pipeline(create_db_extractor(postgres_source.url, table="grow"),
                           create_clickhouse_loader("pg_grow", mode="replace", order_by="id"), "grow").run(
            make_context(run_id=run_id, table_name="pg_grow"))

    run("r1")
    postgres_source.execute("ALTER TABLE grow ALTER price TYPE numeric(14,2), ALTER n TYPE bigint; "
                            "INSERT INTO grow VALUES (2, 7.25, 2)")
    run("r2")  # every value still fits the table's Decimal(12, 2)
    postgres_source.execute("INSERT INTO grow VALUES (3, 999999999999.99, 3)")
    with pytest.raises(LoadError) as caught:
        run("r3")
    assert str(caught.value) == (
        "Column 'price' of pg_grow is Nullable(Decimal(12, 2)) but row 3 of the run's data holds 999999999999.99, "
        "which does not fit: widen the column with a migration (ALTER TABLE ... MODIFY COLUMN)")
    postgres_source.execute("UPDATE grow SET price = 3, n = 3000000000 WHERE id = 3")
    with pytest.raises(LoadError) as caught:
        run("r4")
    assert str(caught.value) == (
        "Column 'n' of pg_grow is Nullable(Int32) but row 3 of the run's data holds 3000000000, which does not fit: "
        "widen the column with a migration (ALTER TABLE ... MODIFY COLUMN)")
    assert store.query_rows("SELECT id, toString(price), n FROM pg_grow ORDER BY id") == [(1, "1.5", 1), (2, "7.25", 2)]


@pytest.mark.same_in_both_runs("the driver's wait in this process; the same in both runs")
def test_a_process_holding_over_1024_descriptors_still_reads_postgres(postgres_source) -> None:
    # A long-running process (a backfill, this test process after hundreds of tests) may hold more
    # than 1024 descriptors: the driver's wait used select(), which cannot wait on one numbered
    # 1024 or more ("ValueError: filedescriptor out of range in select()", seen in the whole suite).
    import os

    from pipelines.tools.extractors.db_values import wait_interruptibly

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        import psycopg2

        source = postgres_source
        connection = psycopg2.connect(host=source.host, port=source.port, user=source.user, password=source.password,
                                      dbname=source.database, async_=True)
        assert connection.fileno() >= 1024
        wait_interruptibly(connection)
        cursor = connection.cursor()
        cursor.execute("SELECT 41 + 1")
        wait_interruptibly(connection)
        assert cursor.fetchone() == (42,)
        connection.close()
    finally:
        for fd in held:
            os.close(fd)
