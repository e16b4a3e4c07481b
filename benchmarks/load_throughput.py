"""Load throughput into ClickHouse: the framework against ClickHouse itself, a hand-written loop and dlt.

Usage (creates benchmarks/.venv with the project's and the benchmark's requirements first):

    benchmarks/run.sh load_throughput.py                         # N = 2,000,000
    benchmarks/run.sh load_throughput.py --rows 1000000 4000000  # the figures in docs/performance.md

For each N the parent generates N rows (id Int64, ts timestamp within one day, name string,
amount float, category low-cardinality string) as a Parquet file and as JSON pages of 10,000
records (the bytes an API would send, rendered before anything is timed), starts a local HTTP
server in its own process that serves those pages by page number, and then runs every step in
its own fresh Python process, so each step's peak RSS (``ru_maxrss``) is its own:

  a  clickhouse_file    ClickHouse's own ingest: INSERT INTO t SELECT * FROM file(x.parquet) (the limit)
  b  insert_arrow_loop  hand-written clickhouse-connect insert_arrow over the file's record batches
  c  framework_append   create_file_extractor(parquet) -> create_clickhouse_loader(mode='append'),
                        through runner.run_pipeline (run recorded in _dp_runs, like ./run.sh run)
  c  framework_interval the same in mode 'interval', run for the day the rows fall in
  d  framework_http     create_http_extractor (page-number pagination) -> ClickHouse loader (append)
  e  dlt_http           dlt: the same pages, fetched from the same server, into duckdb
                        (loader_file_format='parquet', its fastest setting for dicts)
  e  dlt_arrow          dlt: the Parquet file's record batches (Arrow) into duckdb

All ClickHouse steps write to the embedded engine (chdb), each in a fresh store, into a table of
the same structure (MergeTree, PARTITION BY toDate(ts), ORDER BY ts; the framework's own table
has a ``_dp_run_id`` column, which the baselines' table fills with a DEFAULT). Timing starts
after imports and after the store was opened; it includes everything the user's load does.

The parent never imports chdb (a forked child of a chdb process hangs); children are started with
subprocess. Results: a table on stdout and JSON in benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE_SIZE = 10_000
DAY = date(2026, 1, 15)
TABLE = "events"
CATEGORIES = ["books", "games", "garden", "music", "sports", "tools", "toys", "travel"]

STEPS = {
    "clickhouse_file": "(a) ClickHouse INSERT ... FROM file(Parquet)",
    "insert_arrow_loop": "(b) clickhouse-connect insert_arrow loop",
    "framework_append": "(c) framework Parquet -> ClickHouse, append",
    "framework_interval": "(c) framework Parquet -> ClickHouse, interval",
    "framework_http": "(d) framework HTTP JSON pages -> ClickHouse",
    "dlt_http": "(e) dlt HTTP JSON pages -> duckdb (parquet)",
    "dlt_arrow": "(e) dlt Arrow batches -> duckdb",
}


# ---- data ------------------------------------------------------------------------------------

def generate(n: int, workdir: Path) -> dict[str, Any]:
    """The Parquet file and the JSON pages for ``n`` rows (deterministic)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = workdir / "events.parquet"
    pages = workdir / "pages"
    pages.mkdir()
    rng = np.random.default_rng(42)
    writer = None
    start_us = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp() * 1_000_000)
    day_us = 86_400 * 1_000_000
    chunk = 500_000
    page_no = 0
    for offset in range(0, n, chunk):
        m = min(chunk, n - offset)
        ids = np.arange(offset, offset + m, dtype=np.int64)
        # Sorted within the day, as an event log is (and as an API would page through it).
        ts = start_us + (ids * day_us) // n
        table = pa.table({
            "id": pa.array(ids),
            "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "name": pa.array([f"user_{i:07d}" for i in rng.integers(0, 1_000_000, m)]),
            "amount": pa.array(np.round(rng.random(m) * 1000, 2)),
            "category": pa.array([CATEGORIES[i] for i in rng.integers(0, len(CATEGORIES), m)]),
        })
        if writer is None:
            writer = pq.ParquetWriter(parquet, table.schema)
        writer.write_table(table, row_group_size=chunk)
        # JSON as an API sends it: a list of objects, ISO timestamps.
        ts_text = table.column("ts").to_pylist()
        names = table.column("name").to_pylist()
        amounts = table.column("amount").to_pylist()
        cats = table.column("category").to_pylist()
        for p in range(0, m, PAGE_SIZE):
            page_no += 1
            records = [{"id": int(ids[i]), "ts": ts_text[i].isoformat().replace("+00:00", "Z"), "name": names[i],
                        "amount": amounts[i], "category": cats[i]} for i in range(p, min(p + PAGE_SIZE, m))]
            (pages / f"{page_no:06d}.json").write_bytes(json.dumps(records, separators=(",", ":")).encode())
    assert writer is not None
    writer.close()
    return {"parquet": str(parquet), "pages": str(pages), "page_count": page_no,
            "parquet_mb": round(parquet.stat().st_size / 1e6, 1),
            "json_mb": round(sum(f.stat().st_size for f in pages.iterdir()) / 1e6, 1)}


# ---- the HTTP server (its own process) -----------------------------------------------------------

def serve(pages_dir: str) -> None:
    """Serve ``/records?page=N`` (1-based) from memory; past the last page, ``[]``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    pages = [f.read_bytes() for f in sorted(Path(pages_dir).iterdir())]
    empty = b"[]"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            query = parse_qs(urlsplit(self.path).query)
            page = int(query.get("page", ["1"])[0])
            body = pages[page - 1] if 1 <= page <= len(pages) else empty
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ---- steps (each in its own process) -------------------------------------------------------------

def _settings(workdir: Path, batch_size: int):
    """Framework settings for a fresh embedded store under ``workdir``."""
    for key in list(os.environ):
        if key.startswith("CLICKHOUSE_"):
            del os.environ[key]
    env_file = workdir / ".env"
    env_file.write_text("")
    os.environ.update({"DATA_DIR": str(workdir / "data"), "LOG_DIR": str(workdir / "logs"),
                       "RUN_DIR": str(workdir / "run"), "BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING"})
    from core.config import load_settings

    return load_settings(env_file)


def _baseline_ddl(store) -> str:
    # The table the framework creates from the first batch (see clickhouse_loader._create_target).
    return (f"CREATE TABLE {store.table(TABLE)} (id Int64, ts DateTime64(6, 'UTC'), name String, "
            "amount Float64, category String, _dp_run_id String DEFAULT 'baseline') ENGINE = MergeTree "
            "PARTITION BY toDate(ts) ORDER BY (ts) SETTINGS non_replicated_deduplication_window = 1000")


def step_clickhouse_file(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from core.store import Store

    store = Store(_settings(args.workdir, args.batch_size), linger=60)
    store.create_database()
    store.command(_baseline_ddl(store))
    columns = "id, ts, name, amount, category"
    started = _start()
    store.command(f"INSERT INTO {store.table(TABLE)} ({columns}) SELECT {columns} "
                  f"FROM file('{data['parquet']}', Parquet)")
    elapsed = _stop(started)
    return {"seconds": elapsed, "rows_in_table": store.command(f"SELECT count() FROM {store.table(TABLE)}")}


def step_insert_arrow_loop(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from core.store import Store

    store = Store(_settings(args.workdir, args.batch_size), linger=60)
    store.create_database()
    store.command(_baseline_ddl(store))
    with store.session() as client:
        started = _start()
        parquet = pq.ParquetFile(data["parquet"])
        for batch in parquet.iter_batches(batch_size=args.batch_size):
            client.insert_arrow(store.table(TABLE), batch, settings={"async_insert": 0})
        elapsed = _stop(started)
    return {"seconds": elapsed, "rows_in_table": store.command(f"SELECT count() FROM {store.table(TABLE)}")}


def _run_framework(args: argparse.Namespace, extractor, mode: str) -> dict[str, Any]:
    from core.intervals import day_interval
    from core.models import PipelineEntry
    from core.store import Store
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from runner.runner import bootstrap_store, run_pipeline

    settings = _settings(args.workdir, args.batch_size)
    store = Store(settings)
    bootstrap_store(store, settings)  # the one-time setup of a new store (migrations): not timed
    time_column = "ts" if mode == "interval" or args.step != "framework_http" else None
    loader = create_clickhouse_loader(TABLE, mode=mode, time_column=time_column)  # type: ignore[arg-type]
    pipeline = create_el_pipeline(extractor, loader, name=f"bench_{mode}")
    spec = PipelineSpec(name=f"bench_{mode}", source="benchmarks/load_throughput.py",
                        entry=PipelineEntry(pipeline=pipeline, table_name=TABLE))
    started = _start()
    result = run_pipeline(spec, settings, store, interval=day_interval(DAY), trigger="manual")
    elapsed = _stop(started)
    if result.status != "success":
        raise SystemExit(f"{args.step}: run failed: {result.error}")
    return {"seconds": elapsed, "rows_loaded": result.rows_loaded,
            "rows_in_table": store.command(f"SELECT count() FROM {store.table(TABLE)}")}


def step_framework_append(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from pipelines.tools.extractors.file_extractor import create_file_extractor

    return _run_framework(args, create_file_extractor(data["parquet"]), "append")


def step_framework_interval(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from pipelines.tools.extractors.file_extractor import create_file_extractor

    return _run_framework(args, create_file_extractor(data["parquet"]), "interval")


def step_framework_http(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from pipelines.tools.extractors.http_extractor import create_http_extractor

    extractor = create_http_extractor(f"http://127.0.0.1:{args.port}/records", max_pages=None,
                                      pagination={"type": "page", "param": "page", "start": 1})
    return _run_framework(args, extractor, "append")


def _dlt_pipeline(args: argparse.Namespace, name: str):
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt

    return dlt.pipeline(pipeline_name=name, pipelines_dir=str(args.workdir / "dlt"),
                        destination=dlt.destinations.duckdb(str(args.workdir / f"{name}.duckdb")),
                        dataset_name="bench")


def _dlt_count(pipeline) -> int:
    with pipeline.sql_client() as client:
        return client.execute_sql(f"SELECT count(*) FROM {TABLE}")[0][0]


def step_dlt_http(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    import dlt
    import httpx
    import orjson

    pipeline = _dlt_pipeline(args, "dlt_http")

    @dlt.resource(name=TABLE, write_disposition="append")
    def pages():
        # The same requests as the framework's extractor; orjson (dlt's own JSON library) parses.
        with httpx.Client(timeout=30) as client:
            page = 1
            while True:
                records = orjson.loads(client.get(f"http://127.0.0.1:{args.port}/records",
                                                  params={"page": page}).content)
                if not records:
                    return
                yield records
                page += 1

    started = _start()
    info = pipeline.run(pages(), loader_file_format="parquet")
    elapsed = _stop(started)
    info.raise_on_failed_jobs()
    return {"seconds": elapsed, "rows_in_table": _dlt_count(pipeline)}


def step_dlt_arrow(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    import dlt
    import pyarrow.parquet as pq

    pipeline = _dlt_pipeline(args, "dlt_arrow")

    @dlt.resource(name=TABLE, write_disposition="append")
    def batches():
        parquet = pq.ParquetFile(data["parquet"])
        yield from parquet.iter_batches(batch_size=args.batch_size)

    started = _start()
    info = pipeline.run(batches())
    elapsed = _stop(started)
    info.raise_on_failed_jobs()
    return {"seconds": elapsed, "rows_in_table": _dlt_count(pipeline)}


_MARKS: dict[str, float] = {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start() -> float:
    """Note RSS and CPU time just before the timed part (imports and opening the store are not
    the load's)."""
    import psutil

    _MARKS["rss_before_mb"] = psutil.Process().memory_info().rss / 2**20
    _MARKS["cpu_start"] = _cpu()
    return time.perf_counter()


def _stop(started: float) -> float:
    """Seconds since :func:`_start`; notes the CPU time (all threads, ClickHouse's included)."""
    elapsed = time.perf_counter() - started
    _MARKS["cpu_seconds"] = _cpu() - _MARKS["cpu_start"]
    return elapsed


def run_step(args: argparse.Namespace) -> None:
    data = json.loads(args.data)
    sys.path.insert(0, str(ROOT / "src"))
    profile = os.environ.get("BENCH_PROFILE")
    function = globals()[f"step_{args.step}"]
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(function, args, data)
        profiler.dump_stats(profile)
    else:
        result = function(args, data)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_before_mb"] = _MARKS.get("rss_before_mb")
    result["cpu_seconds"] = _MARKS.get("cpu_seconds")
    print("RESULT " + json.dumps(result), flush=True)


# ---- the parent --------------------------------------------------------------------------------

def child(step: str, n: int, workdir: Path, data: dict[str, Any], port: int, batch_size: int) -> dict[str, Any]:
    stepdir = workdir / step
    stepdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, __file__, "--step", step, "--workdir", str(stepdir), "--port", str(port),
               "--batch-size", str(batch_size), "--data", json.dumps(data), "--rows", str(n)]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise SystemExit(f"step {step} (N={n}) failed with exit {proc.returncode}:\n{tail}")
    result = json.loads(line[len("RESULT "):])
    result.update(step=step, rows=n, process_seconds=round(wall, 2), rows_per_second=n / result["seconds"])
    if result.get("rows_in_table") != n:
        raise SystemExit(f"step {step} (N={n}): the destination has {result.get('rows_in_table')} rows, expected {n}")
    shutil.rmtree(stepdir, ignore_errors=True)
    return result


def ratios(by_step: dict[str, dict[str, Any]]) -> dict[str, float]:
    def r(a: str, b: str) -> float | None:
        if a in by_step and b in by_step:
            return round(by_step[a]["rows_per_second"] / by_step[b]["rows_per_second"], 2)
        return None

    out = {
        "framework_append / clickhouse_file (c/a, target >= 0.5)": r("framework_append", "clickhouse_file"),
        "framework_interval / clickhouse_file (c/a, target >= 0.5)": r("framework_interval", "clickhouse_file"),
        "framework_append / insert_arrow_loop (c/b, target > 1)": r("framework_append", "insert_arrow_loop"),
        "framework_interval / insert_arrow_loop (c/b, target > 1)": r("framework_interval", "insert_arrow_loop"),
        "framework_http / dlt_http (d/e, target >= 10)": r("framework_http", "dlt_http"),
        "framework_append / dlt_arrow (same Arrow data)": r("framework_append", "dlt_arrow"),
    }
    return {k: v for k, v in out.items() if v is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000_000], help="N (several: one run each)")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS))
    parser.add_argument("--batch-size", type=int, default=100_000, help="BATCH_SIZE for every step")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each step this many times (fresh process each) and keep the fastest")
    parser.add_argument("--keep", action="store_true", help="keep the generated data (printed path)")
    # Internal: one step in a child process.
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.step:
        run_step(args)
        return 0

    results: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for n in args.rows:
        workdir = Path(tempfile.mkdtemp(prefix=f"dp-bench-{n}-"))
        print(f"N={n:,}: generating data in {workdir} ...", file=sys.stderr, flush=True)
        data = generate(n, workdir)
        server = subprocess.Popen([sys.executable, __file__, "--serve", data["pages"]], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            by_step = {}
            for step in args.steps:
                print(f"N={n:,}: {STEPS[step]} ...", file=sys.stderr, flush=True)
                tries = []
                for _ in range(args.repeat):
                    load = os.getloadavg()[0]
                    tries.append(child(step, n, workdir, data, port, args.batch_size))
                    tries[-1]["load_average_1m"] = round(load, 1)
                # The fastest of the tries: the others lost time to something else on the machine.
                by_step[step] = dict(min(tries, key=lambda t: t["seconds"]))
                by_step[step]["all_seconds"] = [round(t["seconds"], 3) for t in tries]
                by_step[step]["peak_rss_mb"] = max(t["peak_rss_mb"] for t in tries)
                results.append(by_step[step])
                best = by_step[step]
                print(f"    {best['rows_per_second']:>12,.0f} rows/s  {best['seconds']:.2f} s (tries: "
                      f"{', '.join(f'{t:.2f}' for t in best['all_seconds'])})  CPU {best['cpu_seconds']:.2f} s  "
                      f"peak RSS {best['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            runs.append({"rows": n, "parquet_mb": data["parquet_mb"], "json_mb": data["json_mb"],
                         "pages": data["page_count"], "ratios": ratios(by_step)})
        finally:
            server.terminate()
            server.wait()
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    report(results, runs, args)
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("chdb", "clickhouse-connect", "pyarrow", "httpx", "dlt", "duckdb", "orjson"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def report(results: list[dict[str, Any]], runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = sorted({r["rows"] for r in results})
    header = f"| {'step':<48} |" + "".join(f" {f'N={n:,}':>24} |" for n in rows)
    print(header)
    print("|" + "-" * 50 + "|" + "".join("-" * 26 + "|" for _ in rows))
    print(f"| {'':<48} |" + "".join(f" {'rows/s':>10} {'peak RSS':>13} |" for _ in rows))
    for step, label in STEPS.items():
        cells = []
        for n in rows:
            hit = next((r for r in results if r["step"] == step and r["rows"] == n), None)
            cells.append(f" {hit['rows_per_second']:>10,.0f} {hit['peak_rss_mb']:>10.0f} MB |" if hit
                         else f" {'':>24} |")
        if any(c.strip(" |") for c in cells):
            print(f"| {label:<48} |" + "".join(cells))
    for run in runs:
        print(f"\nN={run['rows']:,} ratios:")
        for name, value in run["ratios"].items():
            print(f"  {name:<60} {value:>6.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"load_throughput-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(), "batch_size": args.batch_size, "page_size": PAGE_SIZE,
        "runs": runs, "results": results,
    }, indent=2))
    print(f"\nJSON: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
