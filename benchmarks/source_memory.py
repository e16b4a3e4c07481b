"""Peak memory of a run against the size of its source, on both paths (issue 24 §4: "memory flat in
source size: peak RSS of a fresh process per size, 1M vs 8M rows within 10%").

    .venv/bin/python benchmarks/source_memory.py [--rows 1000000 8000000] [--only pg_pushdown ...]

Sources, started once by the parent (the tests' own helpers): a private PostgreSQL 15
(``tests/sources.py``: TimeZone America/New_York, a password with URL characters) holding
``orders`` (bigint, timestamptz, numeric(12,2), text, boolean, NULLs; filled by ``generate_series``,
1,000,000 rows a day), and moto's S3 server (``tests/s3_server.py``) holding one Parquet file of
1,000,000 rows (row groups of 100,000) per million rows of each size. Each (variant, size) runs in
a fresh process on a fresh embedded store (ClickHouse is in that process, so its memory counts):

  pg_clickhouse no framework: ClickHouse's own INSERT INTO t SELECT ... FROM postgresql(...) (reference)
  pg_pushdown   create_db_extractor(url, interval query): ClickHouse reads postgresql() itself
  pg_python     the same with pushdown=False: psycopg2 rows to Arrow batches in Python
  s3_clickhouse no framework: ClickHouse's own INSERT INTO t SELECT * FROM s3(glob, ...) (reference)
  s3_pushdown   create_file_extractor("s3://mem/<size>/*.parquet"): ClickHouse's s3() reads them
  s3_streamed   the same with columns=[...]: pyarrow reads row group by row group in Python

into ``create_clickhouse_loader(..., mode="append")`` via ``runner.run_pipeline``. The peak RSS is
the child's ``ru_maxrss`` (``os.wait4``); the ratio largest/smallest size is printed per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("pg_clickhouse", "pg_pushdown", "pg_python", "s3_clickhouse", "s3_pushdown", "s3_streamed")
DAY = datetime(2026, 1, 15, tzinfo=UTC)
PER_DAY = 1_000_000
QUERY = ("SELECT id, created_at, amount, customer, paid FROM orders "
         "WHERE created_at >= :start AND created_at < :end")
COLUMNS = ["id", "created_at", "amount", "customer", "paid"]


def fill_postgres(server, days: int) -> None:
    server.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, amount numeric(12,2), "
        "customer text, paid boolean);"
        f"INSERT INTO orders SELECT i, timestamptz '2026-01-15 00:00:00+00' + (i * 86400.0 / {PER_DAY}) * "
        "interval '1 second', CASE WHEN i % 10 = 0 THEN NULL ELSE (i % 100000) / 100.0 END, "
        "CASE WHEN i % 7 = 0 THEN NULL ELSE 'customer ' || (i % 5000) END, i % 3 = 0 "
        f"FROM generate_series(0, {days * PER_DAY - 1}) i; ANALYZE orders")


def fill_bucket(server, sizes: list[int]) -> None:
    """One day's rows as a Parquet file, uploaded once per million rows of each size."""
    import io
    from decimal import Decimal

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(PER_DAY, dtype=np.int64)
    start = int(DAY.timestamp()) * 1_000_000
    table = pa.table({
        "id": pa.array(ids),
        "created_at": pa.array(start + ids * 86_400_000_000 // PER_DAY, pa.timestamp("us", "UTC")),
        "amount": pa.array([Decimal(c) / 100 for c in range(100000)], pa.decimal128(12, 2)).take(ids % 100000),
        "customer": pa.array(np.char.add("customer ", (ids % 5000).astype(str))),
        "paid": pa.array(ids % 3 == 0)})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=100_000)
    body = out.getvalue()
    client = server.client()
    client.create_bucket(Bucket="mem")
    for size in sizes:
        for part in range(size // PER_DAY):
            client.put_object(Bucket="mem", Key=f"{size}/{part:03d}.parquet", Body=body)


def child(variant: str, rows: int, workdir: Path, source: str) -> None:
    """One run in this (fresh) process; prints its record as JSON."""
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.update({"DATA_DIR": str(workdir / "data"), "LOG_DIR": str(workdir / "logs"),
                       "RUN_DIR": str(workdir / "run"), "ENV_FILE": str(workdir / ".env"),
                       "PIPELINES_DIR": str(workdir / "pipelines"), "LOG_LEVEL": "WARNING"})
    from core.config import load_settings
    from core.intervals import Interval
    from core.models import PipelineEntry
    from core.store import Store
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.extractors.db_extractor import create_db_extractor
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from record.tables import ensure_framework_tables
    from runner.runner import bootstrap_store, run_pipeline

    settings = load_settings()
    store = Store(settings)
    store.create_database()
    if variant.endswith("_clickhouse"):
        print(json.dumps({"seconds": clickhouse_alone(store, variant, rows, json.loads(source))}))
        return
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    if variant.startswith("pg_"):
        extractor = create_db_extractor(json.loads(source)["url"], QUERY, pushdown=variant == "pg_pushdown")
    else:
        extractor = create_file_extractor(f"s3://mem/{rows}/*.parquet",
                                          columns=COLUMNS if variant == "s3_streamed" else None)
    pipeline = create_el_pipeline(extractor, create_clickhouse_loader("orders", mode="append"), variant)
    spec = PipelineSpec(variant, PipelineEntry(pipeline=pipeline), "benchmark")
    interval = Interval(DAY, DAY + timedelta(days=rows // PER_DAY))
    record = run_pipeline(spec, settings, store, interval)
    assert record.status == "success" and record.rows_loaded == rows, (record.status, record.error)
    store.close()
    print(json.dumps({"seconds": record.duration_seconds}))


def clickhouse_alone(store, variant: str, rows: int, source: dict[str, str]) -> float:
    """The reference: ClickHouse's own INSERT ... SELECT into a table of the pipelines' column types."""
    store.command("CREATE TABLE orders (id Int64, created_at DateTime64(6, 'UTC'), amount Nullable(Decimal(12, 2)), "
                  "customer Nullable(String), paid Nullable(Bool)) ENGINE = MergeTree ORDER BY ()")
    if variant == "pg_clickhouse":
        # The interval's rows are ids 0 .. rows-1 (fill_postgres); ClickHouse sends the WHERE to PostgreSQL.
        table = ("postgresql({host:String}, {database:String}, 'orders', {user:String}, {password:String}) "
                 "WHERE id < {rows:Int64}")
        parameters = {**source, "rows": rows}
    else:
        table = "s3({url:String}, {key:String}, {secret:String}, 'Parquet')"
        parameters = {"url": f"{os.environ['AWS_ENDPOINT_URL']}/mem/{rows}/*.parquet",
                      "key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"]}
    started = time.perf_counter()
    store.command(f"INSERT INTO orders SELECT {', '.join(COLUMNS)} FROM {table}", parameters)
    assert int(store.command("SELECT count() FROM orders")) == rows
    return time.perf_counter() - started


def measure(variant: str, rows: int, source: str, env: dict[str, str]) -> tuple[float, float]:
    """Peak RSS (MiB) and recorded run time of one fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pipelines").mkdir()
        Path(tmp, ".env").write_text("")
        with open(Path(tmp, "out"), "wb") as out, open(Path(tmp, "err"), "wb") as err:
            process = subprocess.Popen([sys.executable, __file__, "--child", variant, str(rows), tmp, source],
                                       stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own usage (RUSAGE_CHILDREN is a max over all)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise SystemExit(f"{variant} {rows}: exit {process.returncode}: {Path(tmp, 'err').read_text()[-2000:]}")
        return usage.ru_maxrss / 1024, json.loads(Path(tmp, "out").read_text().splitlines()[-1])["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 8_000_000],
                        help="sizes, whole millions")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, rows, workdir, source = args.child
        child(variant, int(rows), Path(workdir), source)
        return 0
    if any(size % PER_DAY for size in args.rows):
        parser.error("--rows: whole millions")
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
    from s3_server import start_s3_server
    from sources import start_postgres

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "AWS_"))}
    with tempfile.TemporaryDirectory() as tmp:
        postgres = s3 = None
        try:
            started = time.perf_counter()
            if any(v.startswith("pg_") for v in args.only):
                postgres = start_postgres()
                fill_postgres(postgres, max(args.rows) // PER_DAY)
            if any(v.startswith("s3_") for v in args.only):
                s3 = start_s3_server(Path(tmp) / "moto.log")
                fill_bucket(s3, args.rows)
                env.update(s3.env())
            print(f"sources filled in {time.perf_counter() - started:.0f} s", flush=True)
            results = {}
            for variant in args.only:
                source = json.dumps({"url": postgres.url, "host": f"{postgres.host}:{postgres.port}",
                                     "database": postgres.database, "user": postgres.user,
                                     "password": postgres.password} if postgres else {})
                for rows in args.rows:
                    results[variant, rows] = measure(variant, rows, source, env)
                    rss, seconds = results[variant, rows]
                    print(f"  {variant:<12} {rows:>10,} rows  peak RSS {rss:7.0f} MiB  run {seconds:6.1f} s",
                          flush=True)
        finally:
            if postgres:
                postgres.stop()
            if s3:
                s3.stop()
    small, large = min(args.rows), max(args.rows)
    for variant in args.only:
        ratio = results[variant, large][0] / results[variant, small][0]
        print(f"{variant:<12} peak RSS {large // PER_DAY}M / {small // PER_DAY}M rows = {ratio:.2f} "
              f"(target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
