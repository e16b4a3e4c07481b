"""Peak memory of the streaming path against N, and where it grows.

Usage (the product's .venv is enough):

    .venv/bin/python benchmarks/streaming_memory.py                      # 1M and 8M rows
    .venv/bin/python benchmarks/streaming_memory.py --rows 1000000 4000000 8000000

Each (N, variant) runs in a fresh process on a fresh embedded store: an extractor yields N rows
(the 5-column events of load_throughput.py, generated per batch, so the input costs no memory)
in BATCH_SIZE batches, through a pass-through transformer (which forces the streaming path)
into the ClickHouse loader, mode append, via ``runner.run_pipeline``. Every 10 batches the child
samples its RSS, Arrow's allocator (``pa.total_allocated_bytes``), ClickHouse's own
``MemoryTracking`` metric and the staging table's active parts. Variants:

  default        as shipped
  no_merges      the same with ``SYSTEM STOP MERGES`` before the run (are merges the growth?)
  loop           no framework: a hand-written ``client.insert_arrow`` loop of the same batches
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "no_merges", "loop")
CATEGORIES = ["books", "games", "garden", "music", "sports", "tools", "toys", "travel"]


def batches(n: int, size: int):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(42)
    start_us = 1_768_435_200 * 1_000_000  # 2026-01-15 UTC
    for offset in range(0, n, size):
        m = min(size, n - offset)
        ids = np.arange(offset, offset + m, dtype=np.int64)
        yield pa.table({
            "id": pa.array(ids),
            "ts": pa.array(start_us + (ids * 86_400_000_000) // n, type=pa.timestamp("us", tz="UTC")),
            "name": pa.array(np.char.add("user_", rng.integers(0, 1_000_000, m).astype(str))),
            "amount": pa.array(np.round(rng.random(m) * 1000, 2)),
            "category": pa.array(np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), m)]),
        })


class Sampler:
    def __init__(self, store) -> None:
        self.store = store
        self.samples: list[dict[str, Any]] = []

    def __call__(self, rows: int) -> None:
        import psutil
        import pyarrow as pa

        tracked = self.store.command("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
        parts = self.store.command("SELECT count() FROM system.parts WHERE active AND database = currentDatabase()")
        self.samples.append({"rows": rows, "rss_mb": round(psutil.Process().memory_info().rss / 2**20),
                             "arrow_mb": round(pa.total_allocated_bytes() / 2**20),
                             "clickhouse_tracked_mb": round(int(tracked) / 2**20), "parts": int(parts)})


def child(n: int, variant: str, workdir: Path, batch_size: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.update({"DATA_DIR": str(workdir / "data"), "LOG_DIR": str(workdir / "logs"),
                       "RUN_DIR": str(workdir / "run"), "BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING"})
    for key in [k for k in os.environ if k.startswith("CLICKHOUSE_")]:
        del os.environ[key]
    (workdir / ".env").write_text("")
    from core.config import load_settings
    from core.store import Store

    settings = load_settings(workdir / ".env")
    store = Store(settings, linger=600)
    store.create_database()
    sampler = Sampler(store)
    if variant == "no_merges":
        store.command("SYSTEM STOP MERGES")
    if variant == "loop":
        store.command(f"CREATE TABLE {store.table('events')} (id Int64, ts DateTime64(6, 'UTC'), name String, "
                      "amount Float64, category String) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY ts")
        with store.session() as client:
            for i, batch in enumerate(batches(n, batch_size)):
                client.insert_arrow(store.table("events"), batch, settings={"async_insert": 0})
                if i % 10 == 9:
                    sampler((i + 1) * batch_size)
    else:
        run_framework(n, settings, store, batch_size, sampler)
    sampler(n)
    loaded = int(store.command(f"SELECT count() FROM {store.table('events')}"))
    return {"rows": n, "variant": variant, "loaded": loaded,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "samples": sampler.samples}


def run_framework(n: int, settings, store, batch_size: int, sampler: Sampler) -> None:
    from core.models import PipelineEntry
    from pipelines.interfaces import Extractor, Transformer
    from pipelines.pipeline_factory import create_etl_pipeline
    from pipelines.pipeline_registry import PipelineSpec
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from runner.runner import bootstrap_store, run_pipeline

    class Generated(Extractor):
        def extract(self, context):
            for i, batch in enumerate(batches(n, batch_size)):
                if i % 10 == 9:
                    sampler((i + 1) * batch_size)
                yield batch

    class Passthrough(Transformer):
        def transform(self, batch, context):
            return batch

    bootstrap_store(store, settings)
    pipeline = create_etl_pipeline(Generated(), [Passthrough()], create_clickhouse_loader("events", mode="append"))
    spec = PipelineSpec(name="mem", source="benchmarks/streaming_memory.py",
                        entry=PipelineEntry(pipeline=pipeline, table_name="events"))
    result = run_pipeline(spec, settings, store, trigger="manual")
    if result.status != "success":
        raise SystemExit(f"run failed: {result.error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 8_000_000])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, variant, workdir = args.child
        print("RESULT " + json.dumps(child(int(n), variant, Path(workdir), args.batch_size)), flush=True)
        return 0
    results = []
    for variant in args.variants:
        for n in args.rows:
            workdir = Path(tempfile.mkdtemp(prefix="dp-mem-"))
            try:
                proc = subprocess.run([sys.executable, __file__, "--batch-size", str(args.batch_size),
                                       "--child", str(n), variant, str(workdir)], capture_output=True, text=True)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{variant} N={n} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(line[7:])
            if result["loaded"] != n:
                raise SystemExit(f"{variant} N={n}: loaded {result['loaded']} rows")
            results.append(result)
            last = result["samples"][-1]
            print(f"{variant:<10} N={n:>10,}  peak RSS {result['peak_rss_mb']:>5} MB  at end: RSS {last['rss_mb']} MB, "
                  f"Arrow {last['arrow_mb']} MB, ClickHouse tracked {last['clickhouse_tracked_mb']} MB, "
                  f"parts {last['parts']}", flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for variant in args.variants:
        peaks = [r["peak_rss_mb"] for r in results if r["variant"] == variant]
        if len(peaks) > 1:
            print(f"{variant}: peak RSS {peaks[-1]} / {peaks[0]} MB = {peaks[-1] / peaks[0]:.2f}x from "
                  f"{args.rows[0]:,} to {args.rows[-1]:,} rows (target <= 1.10)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "streaming_memory-latest.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
