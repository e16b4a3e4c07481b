"""What a SQL pipeline costs against ClickHouse alone, and against moving the same rows through Python.

    .venv/bin/python benchmarks/sql_pipeline.py [--rows 5000000]

In a fresh temporary project (embedded engine), ``--rows`` raw rows over one day are derived
into a second table three ways, each timed in this process on an open store:

1. ``clickhouse``: one ``INSERT INTO ... SELECT`` typed by hand (the baseline);
2. ``sql_pipeline``: ``create_sql_pipeline`` in ``interval`` mode through the runner (staging,
   interval check, ``REPLACE PARTITION``, run records);
3. ``through_python``: the same query with an identity transformer, so the rows are streamed to
   Python in Arrow batches and inserted back (what an ETL pipeline over ClickHouse would do).

Then the cost of a downstream run: ``cron_run`` of a tiny upstream with and without its
(one) downstream SQL pipeline, new processes through the real CLI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

QUERY = ("SELECT ts, user_id, amount, amount * 1.19 AS gross, if(amount > 50, 'big', 'small') AS size "
         "FROM raw WHERE ts >= {start} AND ts < {end}")
TINY = textwrap.dedent('''
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Tiny(Extractor):
        interval_aware = True
        def extract(self, context):
            yield pa.table({"ts": pa.array([context.start + timedelta(hours=1)], pa.timestamp("ms", tz="UTC"))})

    PIPELINE_REGISTRY = {
        "up": {"pipeline": create_el_pipeline(Tiny(), create_clickhouse_loader("up_t", time_column="ts"), "up")},
        "down": {"pipeline": create_sql_pipeline("SELECT toDate(ts) AS day, count() AS n FROM up_t "
                                                 "WHERE ts >= {start} AND ts < {end} GROUP BY day",
                                                 create_clickhouse_loader("down_t", time_column="day")),
                 "depends_on": ["up"]},
    }
''')


def _derived_table(store, name: str) -> None:
    store.command(f"DROP TABLE IF EXISTS {name}")
    store.command(f"CREATE TABLE {name} (ts DateTime64(3, 'UTC'), user_id UInt32, amount Float64, gross Float64, "
                  f"size String, _dp_run_id String) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY ts")


def in_process(rows: int) -> dict[str, float]:
    from core.config import load_settings
    from core.intervals import Interval
    from core.models import PipelineEntry
    from core.store import Store
    from pipelines.pipeline_factory import create_etl_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.extractors.sql_source import create_sql_extractor, create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from pipelines.tools.transformers.transformers import create_lambda_transformer
    from record.tables import ensure_framework_tables
    from runner.runner import bootstrap_store, run_pipeline

    settings = load_settings()
    store = Store(settings)
    store.create_database()
    bootstrap_store(store, settings)  # once per store: not part of what is measured
    ensure_framework_tables(store)
    store.command("CREATE TABLE raw (ts DateTime64(3, 'UTC'), user_id UInt32, amount Float64) ENGINE = MergeTree "
                  "PARTITION BY toDate(ts) ORDER BY ts")
    day = datetime(2025, 3, 1, tzinfo=UTC)
    store.command(f"INSERT INTO raw SELECT toDateTime64('2025-03-01 00:00:00', 3, 'UTC') + number * 86400 / {rows}, "
                  f"number % 10000, (number % 1000) / 10 FROM numbers({rows})")
    interval = Interval(day, day + timedelta(days=1))
    seconds: dict[str, float] = {}

    _derived_table(store, "by_hand")
    hand = QUERY.replace("{start}", "'2025-03-01 00:00:00'").replace("{end}", "'2025-03-02 00:00:00'")
    started = time.perf_counter()
    store.command(f"INSERT INTO by_hand (ts, user_id, amount, gross, size) {hand}")
    seconds["clickhouse"] = time.perf_counter() - started

    for name, pipeline in (
        ("sql_pipeline", create_sql_pipeline(QUERY, create_clickhouse_loader("sql_t", time_column="ts"))),
        ("through_python", create_etl_pipeline(create_sql_extractor(QUERY), create_lambda_transformer(
            lambda batch, context: batch, "identity"), create_clickhouse_loader("py_t", time_column="ts"))),
    ):
        _derived_table(store, "sql_t" if name == "sql_pipeline" else "py_t")
        spec = PipelineSpec(name, PipelineEntry(pipeline=pipeline), "benchmark")
        started = time.perf_counter()
        result = run_pipeline(spec, settings, store, interval)
        seconds[name] = time.perf_counter() - started
        assert result.status == "success" and result.rows_loaded == rows, result.error
    store.close()
    return seconds


def cascade(env: dict[str, str], repeat: int = 3) -> dict[str, float]:
    def cli(*args: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, str(SRC / "main.py"), *args], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        return time.perf_counter() - started

    alone = [cli("cron_run", "up", "--date", f"2025-02-{n:02d}", "--no-downstream") for n in range(1, repeat + 1)]
    chained = [cli("cron_run", "up", "--date", f"2025-02-{n:02d}") for n in range(11, 11 + repeat)]
    return {"upstream_alone": statistics.median(alone), "upstream_and_downstream": statistics.median(chained)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATA_DIR": f"{tmp}/data", "LOG_DIR": f"{tmp}/logs", "RUN_DIR": f"{tmp}/run",
               "ENV_FILE": f"{tmp}/.env", "PIPELINES_DIR": f"{tmp}/pipelines", "LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(SRC)}
        Path(f"{tmp}/.env").write_text("")
        Path(f"{tmp}/pipelines").mkdir()
        os.environ.update(env)
        seconds = in_process(args.rows)
        (Path(tmp) / "pipelines" / "tiny_pipeline.py").write_text(TINY)
        chain = cascade(env)
    base = seconds["clickhouse"]
    print(f"{args.rows:,} rows derived inside one day (embedded engine):")
    for name, value in seconds.items():
        print(f"  {name:<16} {value:6.2f} s  {args.rows / value / 1e6:5.2f} Mrows/s  "
              f"{value / base:5.2f}x ClickHouse alone")
    print(f"through Python costs {seconds['through_python'] / seconds['sql_pipeline']:.1f}x the SQL pipeline")
    print(f"cron_run of a tiny upstream: {chain['upstream_alone']:.2f} s alone, "
          f"{chain['upstream_and_downstream']:.2f} s "
          f"with its downstream SQL pipeline (+{chain['upstream_and_downstream'] - chain['upstream_alone']:.2f} s: "
          "a new process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
