"""A PostgreSQL source read by ClickHouse itself (push-down) against ClickHouse alone, the Python
path, the same pipeline on an older commit, and dlt.

    .venv/bin/python benchmarks/db_pushdown.py [--rows 1000000] [--repeat 5] [--old cf6f863]
        [--without-python] [--without-old] [--dlt-python benchmarks/.venv/bin/python]

Starts a private PostgreSQL 15 (Debian's package, a temporary directory, a free loopback port,
``TimeZone=America/New_York``; as the ``postgres`` user under root), fills ``orders`` with
``--rows`` rows of one day (bigint, timestamptz, numeric(12,2), text, boolean, NULLs) and loads
that day, alternating (the order reversed every round), ``--repeat`` times each after one warm-up
round:

1. ``clickhouse``: ClickHouse's own ``INSERT INTO t SELECT * FROM postgresql(...) WHERE created_at
   >= ... AND created_at < ...`` into a table of the same definition as the pipeline's (the baseline;
   ``PGTZ=UTC`` set around it, as the push-down does, so PostgreSQL reads the bounds as UTC);
2. ``pushdown``: the db extractor with the scaffold's interval query, an ``interval`` ClickHouse
   loader, run by the runner: the run time the framework records (``duration_seconds``);
3. ``python``: the same pipeline with ``pushdown=False`` (rows through SQLAlchemy/psycopg2 and Arrow);
4. ``old``: the same pipeline on commit ``--old`` (unpacked with ``git archive``; a process of its
   own with its own embedded store, the target table created with the same definition), its
   recorded run time;
5. ``dlt``: dlt's ``sql_table`` source (``backend="pyarrow"``, the day as an incremental range)
   into its embedded destination (duckdb), ``write_disposition="replace"``: the wall time of
   ``pipeline.run``, in the interpreter ``--dlt-python`` (``benchmarks/run.sh`` builds
   ``benchmarks/.venv`` with dlt; left out when that interpreter is missing).

The four ClickHouse tables must end with the same row checksum. Prints the median of each and the
ratios side by side (targets: push-down >= 0.8x ClickHouse's speed, >= 5x the old commit's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trees import unpack

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "bench-pw"
QUERY = ("SELECT id, created_at, amount, customer, paid FROM orders "
         "WHERE created_at >= :start AND created_at < :end")
DAY = datetime(2026, 1, 15, tzinfo=UTC)
CHECKSUM = "SELECT toString(groupBitXor(cityHash64(id, created_at, amount, customer, paid))) FROM {}"

# A pipeline of a tree's own code in a process of its own (PYTHONPATH=<tree>/src): set up from
# the first line of stdin, then one run per further line, each answered with a RESULT line.
PIPELINE_WORKER = textwrap.dedent('''
    import json, sys
    from datetime import datetime, timedelta
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

    setup = json.loads(sys.stdin.readline())
    settings = load_settings()
    store = Store(settings)
    store.create_database()
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    store.command(setup["create"])
    loader = create_clickhouse_loader(setup["table"], time_column="created_at")
    spec = PipelineSpec("old", PipelineEntry(pipeline=create_el_pipeline(
        create_db_extractor(setup["url"], setup["query"]), loader, "old")), "benchmark")
    day = datetime.fromisoformat(setup["day"])
    for _ in sys.stdin:
        record = run_pipeline(spec, settings, store, Interval(day, day + timedelta(days=1)))
        assert record.status == "success", record.error
        [(checksum,)] = store.query_rows(setup["checksum"])
        print("RESULT " + json.dumps({"seconds": record.duration_seconds, "rows": record.rows_loaded,
                                      "checksum": checksum}), flush=True)
''')

# dlt's sql_table (pyarrow backend) into duckdb, in benchmarks/.venv: one run per line of stdin.
DLT_WORKER = textwrap.dedent('''
    import json, sys, time
    from datetime import datetime, timedelta
    import dlt
    from dlt.sources.sql_database import sql_table

    setup = json.loads(sys.stdin.readline())
    day = datetime.fromisoformat(setup["day"])
    pipeline = dlt.pipeline(pipeline_name="bench_orders", pipelines_dir=setup["dir"], dataset_name="dlt_data",
                            destination=dlt.destinations.duckdb(setup["dir"] + "/target.duckdb"), progress=None)
    for _ in sys.stdin:
        # end_value: a fixed range, no state carried between runs (each run loads the same day)
        source = sql_table(credentials=setup["url"], table="orders", backend="pyarrow",
                           incremental=dlt.sources.incremental("created_at", initial_value=day,
                                                               end_value=day + timedelta(days=1),
                                                               range_end="open"))
        started = time.perf_counter()
        pipeline.run(source, write_disposition="replace")
        seconds = time.perf_counter() - started
        with pipeline.sql_client() as client:
            [(rows,)] = client.execute_sql("SELECT count(*) FROM orders")
        print("RESULT " + json.dumps({"seconds": seconds, "rows": rows}), flush=True)
''')


class Worker:
    """A process serving runs: ``setup`` is its first line; :meth:`run` one run's result."""

    def __init__(self, python: str, script: str, env: dict[str, str], setup: dict[str, Any]) -> None:
        self.process = subprocess.Popen([python, "-c", script], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.setup = setup

    def run(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if self.setup:
            self.process.stdin.write(json.dumps(self.setup) + "\n")
            self.setup = {}
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise SystemExit(f"a benchmark worker ended ({self.process.wait()}); its error is above")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=120)


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


def start_workers(args: argparse.Namespace, url: str, work: Path) -> dict[str, Worker]:
    """The ``old`` and ``dlt`` processes (started before this process imports the engine)."""
    workers: dict[str, Worker] = {}
    if not args.without_old:
        tree = unpack(args.old, work / "old", "src", "migrations")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "PG"))}
        env.update(PYTHONPATH=str(tree / "src"), DATA_DIR=str(work / "old-data"), LOG_DIR=str(work / "old-logs"),
                   RUN_DIR=str(work / "old-run"), ENV_FILE=str(work / ".env"), PIPELINES_DIR=str(work / "none"))
        workers["old"] = Worker(sys.executable, PIPELINE_WORKER, env, {
            "url": url, "query": QUERY, "table": "orders_old", "day": DAY.isoformat(),
            "checksum": CHECKSUM.format("orders_old")})
    if Path(args.dlt_python).exists():
        (work / "dlt").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        workers["dlt"] = Worker(args.dlt_python, DLT_WORKER, {**env, "RUNTIME__LOG_LEVEL": "WARNING"},
                                {"url": url, "day": DAY.isoformat(), "dir": str(work / "dlt")})
    else:
        print(f"dlt left out: no {args.dlt_python} (benchmarks/run.sh creates it)")
    return workers


def measure(port: int, args: argparse.Namespace, workers: dict[str, Worker]) -> dict[str, list[float]]:
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
    order = ["pushdown", "clickhouse", *([] if args.without_python else ["python"]), *workers]
    seconds: dict[str, list[float]] = {name: [] for name in order}
    checksums: dict[str, str] = {}
    for round_ in range(-1, args.repeat):  # round -1: a warm-up (creates the tables), not counted
        for name in order if round_ % 2 else order[::-1]:
            if name in ("pushdown", "python"):
                record = run_pipeline(specs[name], settings, store, interval)
                assert record.status == "success", record.error
                took, loaded = record.duration_seconds, record.rows_loaded
                if "old" in workers and workers["old"].setup and "create" not in workers["old"].setup:
                    # the old tree loads into a table of this tree's definition
                    [create] = store.adapter.create_statements(["orders_pushdown"]).values()
                    workers["old"].setup["create"] = create.replace(".orders_pushdown", ".orders_old", 1)
            elif name == "clickhouse":
                took, loaded = _clickhouse_alone(store, port)
            else:
                result = workers[name].run()
                took, loaded = result["seconds"], result["rows"]
                if "checksum" in result:
                    checksums[name] = result["checksum"]
            assert loaded == args.rows, (name, loaded)
            if round_ >= 0:
                seconds[name].append(took)
    for table in ("pushdown", "clickhouse", "python"):
        if table in seconds:
            [(checksums[table],)] = store.query_rows(CHECKSUM.format(store.table(f"orders_{table}")))
    assert len(set(checksums.values())) == 1, checksums
    store.close()
    return seconds


def _clickhouse_alone(store: Any, port: int) -> tuple[float, int]:
    """ClickHouse's own statement into a table of the pipeline's definition: seconds, rows."""
    if not store.table_exists("orders_clickhouse"):
        store.command("CREATE TABLE orders_clickhouse AS orders_pushdown")  # the same definition
    store.command("TRUNCATE TABLE orders_clickhouse")
    # Its PostgreSQL session in UTC, as the push-down's: else the zone-less bounds and values are New York's.
    os.environ["PGTZ"] = "UTC"
    try:
        started = time.perf_counter()
        store.command(
            "INSERT INTO orders_clickhouse (id, created_at, amount, customer, paid) SELECT id, created_at, "
            f"amount, customer, paid FROM postgresql('127.0.0.1:{port}', 'postgres', 'orders', 'bench', "
            f"'{PASSWORD}') WHERE created_at >= '2026-01-15 00:00:00' AND created_at < '2026-01-16 00:00:00'")
        took = time.perf_counter() - started
    finally:
        del os.environ["PGTZ"]
    return took, int(store.command("SELECT count() FROM orders_clickhouse"))


def report(seconds: dict[str, list[float]], args: argparse.Namespace) -> None:
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{args.rows:,} PostgreSQL rows of one day into the embedded engine, median of {args.repeat} "
          "alternating runs:")
    labels = {"old": f"old ({args.old})", "dlt": "dlt (duckdb)"}
    for name, value in median.items():
        print(f"  {labels.get(name, name):<16} {value:6.2f} s  {args.rows / value / 1e6:5.2f} Mrows/s  "
              f"speed {median['clickhouse'] / value:4.2f}x ClickHouse alone   "
              f"runs: {' '.join(f'{v:.2f}' for v in seconds[name])}")
    line = f"push-down: {median['clickhouse'] / median['pushdown']:.2f}x ClickHouse's speed (target >= 0.8)"
    for name, what in (("old", f"the pipeline on {args.old}'s (target >= 5)"), ("python", "the Python path's"),
                       ("dlt", "dlt's")):
        if name in median:
            line += f", {median[name] / median['pushdown']:.1f}x {what}"
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old", default="cf6f863", help="the commit to compare with (before push-down)")
    parser.add_argument("--without-python", action="store_true", help="leave the Python path out")
    parser.add_argument("--without-old", action="store_true", help="leave the old commit out")
    parser.add_argument("--dlt-python", default=str(ROOT / "benchmarks" / ".venv" / "bin" / "python"),
                        help="the interpreter with dlt (benchmarks/run.sh builds it)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dp-bench-pg-"))
    process, workers = None, {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update({"DATA_DIR": f"{tmp}/data", "LOG_DIR": f"{tmp}/logs", "RUN_DIR": f"{tmp}/run",
                               "ENV_FILE": f"{tmp}/.env", "PIPELINES_DIR": f"{tmp}/pipelines", "LOG_LEVEL": "WARNING"})
            os.environ.pop("CLICKHOUSE_HOST", None)
            Path(f"{tmp}/.env").write_text("")
            process, port = start_postgres(directory)
            fill(port, args.rows)
            workers = start_workers(args, f"postgresql+psycopg2://bench:{PASSWORD}@127.0.0.1:{port}/postgres",
                                    Path(tmp))
            seconds = measure(port, args, workers)
    finally:
        for worker in workers.values():
            worker.close()
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
    report(seconds, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
