"""A PostgreSQL source read by ClickHouse itself (push-down) against ClickHouse alone and the Python path.

    .venv/bin/python benchmarks/db_pushdown.py [--rows 1000000] [--repeat 5]

Starts a private PostgreSQL 15 (Debian's package, a temporary directory, a free loopback port,
``TimeZone=America/New_York``; as the ``postgres`` user under root), fills ``orders`` with
``--rows`` rows of one day (bigint, timestamptz, numeric(12,2), text, boolean, NULLs) and loads
that day into the embedded engine three ways, alternating, ``--repeat`` times each:

1. ``clickhouse``: ClickHouse's own ``INSERT INTO t SELECT * FROM postgresql(...) WHERE created_at
   >= ... AND created_at < ...`` into a table of the same definition as the pipeline's (the baseline);
2. ``pushdown``: the db extractor with the scaffold's interval query, an ``interval`` ClickHouse
   loader, run by the runner: the run time the framework records (``duration_seconds``);
3. ``python``: the same pipeline with ``pushdown=False`` (rows through SQLAlchemy/psycopg2 and Arrow).

Prints the median of each and the ratios side by side (target: pushdown >= 0.8x ClickHouse's speed).
``--without-python`` leaves the (slow) Python path out, to measure large sizes on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "bench-pw"
QUERY = ("SELECT id, created_at, amount, customer, paid FROM orders "
         "WHERE created_at >= :start AND created_at < :end")
DAY = datetime(2026, 1, 15, tzinfo=UTC)


def _as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_postgres(directory: Path) -> tuple[subprocess.Popen, int]:
    """A private PostgreSQL in ``directory`` (owned by ``postgres`` under root) and its port."""
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    pwfile = directory / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(directory / "data"), "-U", "bench", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, **_as_postgres())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(PG_BIN / "postgres"), "-D", str(directory / "data"), "-p", str(port), "-h", "127.0.0.1",
         "-k", str(directory), "-c", "TimeZone=America/New_York", "-c", "fsync=off",
         "-c", "synchronous_commit=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as_postgres())
    import psycopg2

    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="bench", password=PASSWORD, dbname="postgres").close()
            return process, port
        except psycopg2.OperationalError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.2)


def fill(port: int, rows: int) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user="bench", password=PASSWORD, dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, amount numeric(12,2), "
            "customer text, paid boolean);"
            "INSERT INTO orders SELECT i, timestamptz '2026-01-15 00:00:00+00' + (i * 86399.0 / %s) * interval "
            "'1 second', CASE WHEN i %% 10 = 0 THEN NULL ELSE (i %% 100000) / 100.0 END, "
            "CASE WHEN i %% 7 = 0 THEN NULL ELSE 'customer ' || (i %% 5000) END, i %% 3 = 0 "
            "FROM generate_series(1, %s) i; ANALYZE orders;", (rows, rows))
    connection.close()


def measure(port: int, rows: int, repeat: int, paths: tuple[str, ...]) -> dict[str, list[float]]:
    from core.config import load_settings
    from core.intervals import Interval
    from core.models import PipelineEntry
    from core.store import Store
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.extractors.db_extractor import create_db_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from record.tables import ensure_framework_tables
    from runner.runner import bootstrap_store, run_pipeline

    settings = load_settings()
    store = Store(settings)
    store.create_database()
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    url = f"postgresql+psycopg2://bench:{PASSWORD}@127.0.0.1:{port}/postgres"
    interval = Interval(DAY, DAY + timedelta(days=1))
    specs = {name: PipelineSpec(name, PipelineEntry(pipeline=create_el_pipeline(
        create_db_extractor(url, QUERY, pushdown=name == "pushdown"),
        create_clickhouse_loader(f"orders_{name}", time_column="created_at"), name)), "benchmark")
        for name in ("pushdown", "python")}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(-1, repeat):  # round -1: a warm-up (creates the tables), not counted
        order = [n for n in ("pushdown", "clickhouse", "python") if n in paths]
        for name in order if round_ % 2 else order[::-1]:
            if name == "clickhouse":
                if not store.table_exists("orders_clickhouse"):
                    store.command("CREATE TABLE orders_clickhouse AS orders_pushdown")  # the same definition
                store.command("TRUNCATE TABLE orders_clickhouse")
                started = time.perf_counter()
                store.command(
                    "INSERT INTO orders_clickhouse (id, created_at, amount, customer, paid) SELECT id, created_at, "
                    f"amount, customer, paid FROM postgresql('127.0.0.1:{port}', 'postgres', 'orders', 'bench', "
                    f"'{PASSWORD}') WHERE created_at >= '2026-01-15 00:00:00' AND created_at < '2026-01-16 00:00:00'")
                took = time.perf_counter() - started
                loaded = int(store.command("SELECT count() FROM orders_clickhouse"))
            else:
                record = run_pipeline(specs[name], settings, store, interval)
                assert record.status == "success", record.error
                took, loaded = record.duration_seconds, record.rows_loaded
            assert loaded == rows, (name, loaded)
            if round_ >= 0:
                seconds[name].append(took)
    checksums = {t: store.query_rows(f"SELECT groupBitXor(cityHash64(id, created_at, amount, customer, paid)) "
                                     f"FROM orders_{t}") for t in seconds}
    assert len({str(c) for c in checksums.values()}) == 1, checksums
    store.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--without-python", action="store_true", help="leave the Python path out")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dp-bench-pg-"))
    process = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update({"DATA_DIR": f"{tmp}/data", "LOG_DIR": f"{tmp}/logs", "RUN_DIR": f"{tmp}/run",
                               "ENV_FILE": f"{tmp}/.env", "PIPELINES_DIR": f"{tmp}/pipelines", "LOG_LEVEL": "WARNING"})
            os.environ.pop("CLICKHOUSE_HOST", None)
            Path(f"{tmp}/.env").write_text("")
            process, port = start_postgres(directory)
            fill(port, args.rows)
            paths = ("pushdown", "clickhouse") if args.without_python else ("pushdown", "clickhouse", "python")
            seconds = measure(port, args.rows, args.repeat, paths)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{args.rows:,} PostgreSQL rows of one day into the embedded engine, median of {args.repeat} "
          "alternating runs:")
    for name, value in median.items():
        print(f"  {name:<11} {value:6.2f} s  {args.rows / value / 1e6:5.2f} Mrows/s  "
              f"speed {median['clickhouse'] / value:4.2f}x ClickHouse alone")
    print(f"push-down: {median['clickhouse'] / median['pushdown']:.2f}x ClickHouse's speed (target >= 0.8)" +
          (f", {median['python'] / median['pushdown']:.1f}x the Python path's" if "python" in median else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
