"""What an interval costs when it cannot be batched: an hourly backfill of small intervals, this
checkout against an older commit (default cf6f863), side by side in the same run.

    .venv/bin/python benchmarks/hourly_backfill.py [--days 3] [--old cf6f863] [--repeat 1]

For each tree (this checkout's ``src``; ``--old`` unpacked with ``git archive``, see
``benchmarks/trees.py``) a fresh temporary project (own DATA_DIR, embedded engine) gets two hourly
pipelines (``granularity: hour``), and through the real CLI, in new processes:

1. ``backfill hext --start .. --end .. --hourly``: a Python extractor, 3 rows an hour, ``--days``
   days (24 intervals a day) into ``hext_t`` (partitioned by day, so an hour replaces a part of
   its day's partition);
2. ``backfill hsql ... --hourly``: a SQL pipeline over ``hext_t`` (count and sum per hour and
   category) into ``hsql_t``, the same intervals.

Whole processes' wall times are measured (start-up and planning included); afterwards the rows of
both tables and the number of successful runs are checked. The trees take turns within each
repeat. Prints the ratios and writes ``benchmarks/results/hourly_backfill.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from trees import ROOT, unpack

MODULE = textwrap.dedent('''
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Hourly(Extractor):
        interval_aware = True
        def extract(self, context):
            ts = [context.start + timedelta(minutes=m) for m in (5, 25, 45)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "cat": ["a", "b", "a"],
                            "v": [1, 2, 3]})

    HOURLY = """SELECT toStartOfHour(ts) AS hour, cat, count() AS n, sum(v) AS total FROM hext_t
                WHERE ts >= {start} AND ts < {end} GROUP BY hour, cat"""

    PIPELINE_REGISTRY = {
        "hext": {"pipeline": create_el_pipeline(Hourly("hext"), create_clickhouse_loader("hext_t", time_column="ts"),
                                                "hext"), "granularity": "hour"},
        "hsql": {"pipeline": create_sql_pipeline(HOURLY, create_clickhouse_loader("hsql_t", mode="interval",
                                                                                 time_column="hour"), name="hsql"),
                 "granularity": "hour"},
    }
''')

FIRST = date(2024, 3, 1)
KEYS = ("extractor_seconds", "sql_seconds", "extractor_cpu_seconds", "sql_cpu_seconds")


def cli(src: Path, project: Path, *args: str) -> tuple[float, str, float]:
    """Wall seconds, stdout and CPU seconds (user + system, all threads) of ``main.py args`` of tree
    ``src`` in ``project``; fails loudly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "STORE_", "DP_"))}
    env.update({"DATA_DIR": str(project / "data"), "LOG_DIR": str(project / "logs"), "RUN_DIR": str(project / "run"),
                "PIPELINES_DIR": str(project / "pipelines"), "ENV_FILE": str(project / ".env"),
                "PYTHONPATH": str(src), "COLUMNS": "200"})
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(src / "main.py"), *args], env=env, cwd=src.parent,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{src}: {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(src: Path, days: int) -> dict[str, Any]:
    """Both hourly backfills of ``days`` days on tree ``src`` in a new project; rows checked."""
    with tempfile.TemporaryDirectory(prefix="dp-bench-hourly-") as tmp:
        project = Path(tmp)
        (project / "pipelines").mkdir()
        (project / "pipelines" / "bench_pipeline.py").write_text(MODULE)
        (project / ".env").write_text("")
        cli(src, project, "setup_db")
        span = ["--start", FIRST.isoformat(), "--end", (FIRST + timedelta(days=days - 1)).isoformat(), "--hourly"]
        extractor, _, extractor_cpu = cli(src, project, "backfill", "hext", *span)
        sql, _, sql_cpu = cli(src, project, "backfill", "hsql", *span)
        _, counted, _ = cli(src, project, "sql", "SELECT (SELECT count() FROM hext_t), (SELECT sum(n) FROM hsql_t), "
                                              "(SELECT count() FROM hsql_t), (SELECT count() FROM _dp_runs FINAL "
                                              "WHERE status = 'success')")
    hours = 24 * days
    want = f"{3 * hours}\t{3 * hours}\t{2 * hours}\t{2 * hours}"
    if counted.split("\n")[-2 if counted.endswith("\n") else -1].strip() != want:
        raise SystemExit(f"{src}: wrong rows after the backfills: {counted!r} (want {want!r})")
    return {"extractor_seconds": extractor, "sql_seconds": sql, "extractor_cpu_seconds": extractor_cpu,
            "sql_cpu_seconds": sql_cpu, "intervals": hours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="days of 24 intervals (30: the issue's target)")
    parser.add_argument("--old", default="cf6f863", help="the commit to compare with")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"old_tree": [], "this_tree": []}
    with tempfile.TemporaryDirectory(prefix="dp-bench-old-") as old:
        trees = {"old_tree": unpack(args.old, Path(old), "src", "migrations") / "src", "this_tree": ROOT / "src"}
        for _ in range(args.repeat):
            for label, src in trees.items():
                runs[label].append(measure(src, args.days))
                r = runs[label][-1]
                print(f"{label:<10} {r['intervals']} hourly intervals: extractor {r['extractor_seconds']:6.2f} s "
                      f"({r['extractor_cpu_seconds']:.2f} s CPU), SQL {r['sql_seconds']:6.2f} s "
                      f"({r['sql_cpu_seconds']:.2f} s CPU)", flush=True)
    best = {label: {key: min(r[key] for r in rs) for key in KEYS} for label, rs in runs.items()}
    print(f"load average: {os.getloadavg()[0]:.1f} (best of {args.repeat})")
    for key in KEYS:
        old_s, new_s = best["old_tree"][key], best["this_tree"][key]
        print(f"{key.removesuffix('_seconds'):<14} old {old_s:7.2f} s  this {new_s:7.2f} s  "
              f"= {new_s / old_s:.2f} of the old ({old_s / new_s:.1f}x faster)")
    out = ROOT / "benchmarks" / "results" / "hourly_backfill.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"days": args.days, "old": args.old, "runs": runs, "best": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
