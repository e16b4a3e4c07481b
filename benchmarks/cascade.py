"""What the downstream cascade of a backfill costs, against the upstream backfill itself, on this
tree and on an older commit side by side.

    .venv/bin/python benchmarks/cascade.py [--days 30] [--old 5d49552]

For each tree (this worktree's ``src``, and ``--old`` extracted with ``git archive`` into a
temporary directory) a fresh temporary project (own DATA_DIR, embedded engine) gets an upstream
pipeline ``raw`` (a Python extractor, 24 rows a day) and a SQL pipeline ``daily`` that
``depends_on`` it. Through the real CLI, in new processes:

1. ``backfill raw`` over ``--days`` days with ``--no-downstream``: the upstream backfill's time;
2. ``backfill raw --rerun all`` over the same days: the upstream again, then the cascade of the
   ``--days`` downstream days. Cascade time = (2) - (1).

The rows of ``daily_t`` are checked after (2) (2 per day). Reported per tree: both wall times and
the ratio cascade / upstream backfill (target: at most 2). Writes ``benchmarks/results/cascade.json``.
"""

from __future__ import annotations

import argparse
import json
import os
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

    class Raw(Extractor):
        interval_aware = True
        def extract(self, context):
            ts = [context.start + timedelta(hours=h) for h in range(24)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
                            "cat": ["a" if h % 2 else "b" for h in range(24)], "v": list(range(24))})

    DAILY = """SELECT toDate(ts) AS day, cat, count() AS n, sum(v) AS total FROM raw_t
               WHERE ts >= {start} AND ts < {end} GROUP BY day, cat"""

    PIPELINE_REGISTRY = {
        "raw": {"pipeline": create_el_pipeline(Raw("raw"), create_clickhouse_loader("raw_t", time_column="ts"), "raw")},
        "daily": {"pipeline": create_sql_pipeline(DAILY, create_clickhouse_loader("daily_t", mode="interval",
                                                                                  time_column="day"), name="daily"),
                  "depends_on": ["raw"]},
    }
''')

FIRST = date(2024, 3, 1)


def cli(src: Path, project: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "STORE_"))}
    env.update({"DATA_DIR": str(project / "data"), "LOG_DIR": str(project / "logs"), "RUN_DIR": str(project / "run"),
                "PIPELINES_DIR": str(project / "pipelines"), "ENV_FILE": str(project / ".env"),
                "PYTHONPATH": str(src), "COLUMNS": "200"})
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(src / "main.py"), *args], env=env, cwd=src.parent,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{src}: {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def measure(src: Path, days: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dp-bench-cascade-") as tmp:
        project = Path(tmp)
        (project / "pipelines").mkdir()
        (project / "pipelines" / "bench_pipeline.py").write_text(MODULE)
        (project / ".env").write_text("")
        cli(src, project, "setup_db")
        warm = (FIRST - timedelta(days=1)).isoformat()
        cli(src, project, "cron_run", "raw", "--date", warm)  # creates both tables (and runs daily once)
        span = ["--start", FIRST.isoformat(), "--end", (FIRST + timedelta(days=days - 1)).isoformat()]
        upstream, _ = cli(src, project, "backfill", "raw", *span, "--no-downstream")
        both, out = cli(src, project, "backfill", "raw", *span, "--rerun", "all")
        ran = out.count("downstream daily ")
        _, counted = cli(src, project, "sql", f"SELECT count() FROM daily_t WHERE day >= '{FIRST}'")
    if ran != days or str(2 * days) not in counted:
        raise SystemExit(f"{src}: the cascade ran {ran} downstream days (want {days}); daily_t: {counted!r}")
    return {"upstream_backfill_seconds": upstream, "with_cascade_seconds": both,
            "cascade_seconds": both - upstream, "ratio": (both - upstream) / upstream}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--old", default="5d49552", help="the commit to compare with (before in-process cascades)")
    args = parser.parse_args()
    report: dict[str, Any] = {"days": args.days, "old": args.old}
    with tempfile.TemporaryDirectory(prefix="dp-bench-old-") as old:
        report["old_tree"] = measure(unpack(args.old, Path(old), "src", "migrations") / "src", args.days)
    report["this_tree"] = measure(ROOT / "src", args.days)
    for label in ("old_tree", "this_tree"):
        r = report[label]
        print(f"{label:<10} upstream backfill {r['upstream_backfill_seconds']:6.2f} s; with its cascade "
              f"{r['with_cascade_seconds']:6.2f} s: {args.days} downstream days in {r['cascade_seconds']:6.2f} s "
              f"= {r['ratio']:.2f}x the upstream backfill")
    out = ROOT / "benchmarks" / "results" / "cascade.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
