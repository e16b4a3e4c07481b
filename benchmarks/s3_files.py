"""A year of daily Parquet files in an S3-compatible bucket, read as one run over a glob: the
framework's run against ClickHouse's own ``INSERT ... SELECT FROM s3(...)`` (issue 24 §4).

    .venv/bin/python benchmarks/s3_files.py [--rows-per-file 2000] [--days 365] [--repeat 5]

moto's standalone S3 server on a free loopback port (a new process), a fresh temporary project on
the embedded engine. ``create_file_extractor("s3://bench/orders/*.parquet")`` loads the year into
a table in ``append`` mode (ClickHouse reads the bucket itself: push-down), timed as the runner
records it; the baseline is one ``INSERT INTO ... SELECT * FROM s3(glob, key, secret, 'Parquet')``
into a table of the same definition. Both targets are emptied before each run; runs alternate;
medians are reported with their ratio (target: the framework at least 0.8x ClickHouse's speed).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

KEY, SECRET = "AKIABENCHMARK0000001", "bench-secret-0000000000000000000000000000"


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto did not start: {log.read_text()[-1000:]}")


def upload(endpoint: str, days: int, rows: int) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                      region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for day in range(days):
        first = start + timedelta(days=day)
        table = pa.table({
            "id": pa.array(range(day * rows, (day + 1) * rows), pa.int64()),
            "ts": pa.array([first + timedelta(seconds=86400 * i // rows) for i in range(rows)],
                           pa.timestamp("us", "UTC")),
            "amount": pa.array([(i % 10000) / 100 for i in range(rows)], pa.float64()),
            "country": pa.array([("DE", "FR", "NA", "US")[i % 4] for i in range(rows)], pa.string())})
        out = io.BytesIO()
        pq.write_table(table, out)
        s3.put_object(Bucket="bench", Key=f"orders/{first:%Y-%m-%d}.parquet", Body=out.getvalue())


def measure(endpoint: str, days: int, rows: int, repeat: int) -> dict[str, list[float]]:
    from core.config import load_settings
    from core.intervals import Interval
    from core.models import PipelineEntry
    from core.store import Store
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from record.tables import ensure_framework_tables
    from runner.runner import bootstrap_store, run_pipeline

    settings = load_settings()
    store = Store(settings)
    store.create_database()
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    pipeline = create_el_pipeline(create_file_extractor("s3://bench/orders/*.parquet"),
                                  create_clickhouse_loader("orders_fw", mode="append"), "s3_year")
    spec = PipelineSpec("s3_year", PipelineEntry(pipeline=pipeline), "benchmark")
    interval = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    url = f"{endpoint}/bench/orders/*.parquet"
    seconds: dict[str, list[float]] = {"framework": [], "clickhouse": []}
    for attempt in range(repeat + 1):  # the first round warms both up and is not counted
        if store.table_exists("orders_fw"):
            store.command("TRUNCATE TABLE orders_fw")
        result = run_pipeline(spec, settings, store, interval)
        assert result.status == "success" and result.rows_loaded == days * rows, result.error
        [(recorded,)] = store.query_rows("SELECT max(duration_seconds) FROM _dp_runs WHERE run_id = {r:String}",
                                         {"r": result.run_id})
        if attempt == 0:
            store.command("CREATE TABLE IF NOT EXISTS orders_ch AS orders_fw")
        store.command("TRUNCATE TABLE orders_ch")
        started = time.perf_counter()
        store.command(f"INSERT INTO orders_ch (id, ts, amount, country) SELECT id, ts, amount, country "
                      f"FROM s3('{url}', '{KEY}', '{SECRET}', 'Parquet')")
        baseline = time.perf_counter() - started
        if attempt:
            seconds["framework"].append(float(recorded))
            seconds["clickhouse"].append(baseline)
    assert store.query_rows("SELECT count() FROM orders_ch") == [(days * rows,)]
    store.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-file", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": f"{tmp}/data", "LOG_DIR": f"{tmp}/logs", "RUN_DIR": f"{tmp}/run",
               "ENV_FILE": f"{tmp}/.env", "PIPELINES_DIR": f"{tmp}/pipelines", "LOG_LEVEL": "WARNING",
               "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}
        Path(f"{tmp}/.env").write_text("")
        Path(f"{tmp}/pipelines").mkdir()
        process, endpoint = start_moto(Path(tmp) / "moto.log")
        try:
            env["AWS_ENDPOINT_URL"] = endpoint
            os.environ.update(env)
            upload(endpoint, args.days, args.rows_per_file)
            seconds = measure(endpoint, args.days, args.rows_per_file, args.repeat)
        finally:
            process.terminate()
            process.wait(10)
    framework, clickhouse = statistics.median(seconds["framework"]), statistics.median(seconds["clickhouse"])
    total = args.days * args.rows_per_file
    print(f"{args.days} daily Parquet files x {args.rows_per_file:,} rows = {total:,} rows from moto on loopback "
          f"(embedded engine, median of {args.repeat} alternating runs):")
    print(f"  framework run (recorded)     {framework:6.2f} s  {total / framework / 1e6:5.2f} Mrows/s")
    print(f"  ClickHouse INSERT ... s3()   {clickhouse:6.2f} s  {total / clickhouse / 1e6:5.2f} Mrows/s")
    print(f"  framework speed = {clickhouse / framework:.2f}x ClickHouse's own statement (target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
