"""What a backfilled interval costs, against one ``cron_run`` of the same pipeline.

    .venv/bin/python benchmarks/backfill_overhead.py [--days 60] [--parallel-days 16] [--no-parallel]
                                                     [--profile-intervals 20]

Everything runs in a fresh temporary project (own DATA_DIR, embedded engine) through the real
CLI in new processes, like a user would:

1. ``cron_run`` of a tiny pipeline (4 rows), 3 times: the cost of one scheduled run, process
   start included (that is what a backfill made of cron_runs would pay per interval).
2. ``backfill --start .. --end ..`` of ``--days`` daily intervals, sequential: wall time per
   interval, and the mean run duration recorded in ``_dp_runs``.
3. In-process, the same runner over ``--profile-intervals`` (20) more intervals with timers around
   each step, to show where an interval's time goes (run records, framework tables, reaping, staging, commit).
4. Parallelism: pipelines whose extraction waits 0.5 s or 2 s (a remote API) backfilled
   sequentially and with ``--parallel 2`` and ``4``, and the tiny pipeline with ``--parallel 2``.
   (Since these figures were taken, ``backfill`` runs sequentially on the embedded store whatever
   ``--parallel`` says: the parallel rows now show that the option costs nothing there.)

Prints a report and writes ``benchmarks/results/backfill_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

MODULE = textwrap.dedent('''
    import os, time
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Tiny(Extractor):
        """4 rows per day; optionally waits like a remote API would."""
        interval_aware = True
        def __init__(self, wait=0.0):
            super().__init__("tiny")
            self.wait = wait
        def extract(self, context):
            time.sleep(self.wait)
            ts = [context.start + timedelta(hours=h) for h in (1, 7, 13, 19)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": [1, 2, 3, 4]})

    PIPELINE_REGISTRY = {
        name: {"pipeline": create_el_pipeline(Tiny(wait), create_clickhouse_loader(name + "_t", time_column="ts"),
                                              name)}
        for name, wait in [("tiny", 0.0), ("tiny_par", 0.0), ("api_seq", 0.5), ("api_p2", 0.5), ("api_p4", 0.5),
                          ("slow_seq", 2.0), ("slow_p2", 2.0), ("slow_p4", 2.0)]
    }
''')

FIRST = date(2024, 1, 1)


def env_for(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "STORE_"))}
    env.update({
        "DATA_DIR": str(project / "data"), "LOG_DIR": str(project / "logs"), "RUN_DIR": str(project / "run"),
        "PIPELINES_DIR": str(project / "pipelines"), "ENV_FILE": str(project / ".env"),
        "PYTHONPATH": str(SRC), "COLUMNS": "200",
    })
    return env


def cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(SRC / "main.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed


def backfill(env: dict[str, str], name: str, first: date, days: int, *extra: str) -> float:
    last = first + timedelta(days=days - 1)
    return cli(env, "backfill", name, "--start", first.isoformat(), "--end", last.isoformat(), *extra)


def mean_run_seconds(env: dict[str, str], name: str) -> float:
    result = subprocess.run([sys.executable, str(SRC / "main.py"), "runs", name, "--json", "--limit", "10000"],
                            env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    runs = json.loads(result.stdout)
    return statistics.mean(r["duration_seconds"] for r in runs)


def profile_in_process(env: dict[str, str], intervals: int) -> dict[str, float]:
    """Seconds per interval spent in each step of a run, with the store kept open (as a backfill does)."""
    os.environ.update(env)
    sys.path.insert(0, str(SRC))
    from core.config import load_settings
    from core.intervals import day_interval
    from core.logging import setup_logging
    from core.store import Store
    from ops.discovery import get_registry
    from runner import runner

    settings = load_settings()
    setup_logging(settings, console=False)
    store = Store(settings)
    spec = get_registry(settings.pipelines_dir).get("tiny")
    loader = spec.pipeline.loader
    totals: dict[str, float] = defaultdict(float)

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started
        return wrapper

    runner.record_run = timed("run records (2 inserts into _dp_runs)", runner.record_run)
    runner.ensure_framework_tables = timed("ensure_framework_tables", runner.ensure_framework_tables)
    runner.reap_dead_runs = timed("reap dead runs (mark_crashed query)", runner.reap_dead_runs)
    loader.begin = timed("loader.begin (table check, staging create)", loader.begin)
    loader.write = timed("loader.write (insert into staging)", loader.write)
    loader.commit = timed("loader.commit (REPLACE PARTITION, drop staging)", loader.commit)
    first = FIRST + timedelta(days=400)
    runner.run_pipeline(spec, settings, store, day_interval(first), trigger="backfill")  # warm: table exists
    totals.clear()
    started = time.perf_counter()
    for n in range(1, intervals + 1):
        runner.run_pipeline(spec, settings, store, day_interval(first + timedelta(days=n)), trigger="backfill")
    wall = time.perf_counter() - started
    store.close()
    per = {label: seconds / intervals for label, seconds in totals.items()}
    per["other (lock, pid file, job log, extract, state)"] = wall / intervals - sum(per.values())
    per["total"] = wall / intervals
    return per


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--parallel-days", type=int, default=16)
    parser.add_argument("--no-parallel", action="store_true")
    parser.add_argument("--profile-intervals", type=int, default=20, help="intervals of the in-process profile")
    args = parser.parse_args()
    report: dict[str, Any] = {"days": args.days, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="dp-bench-") as tmp:
        project = Path(tmp)
        (project / "pipelines").mkdir()
        (project / "pipelines" / "bench_pipeline.py").write_text(MODULE)
        (project / ".env").write_text("")
        env = env_for(project)
        cli(env, "setup_db")
        cli(env, "cron_run", "tiny", "--date", (FIRST - timedelta(days=1)).isoformat())  # creates the table
        cron = [cli(env, "cron_run", "tiny", "--date", (FIRST - timedelta(days=n)).isoformat()) for n in (2, 3, 4)]
        report["cron_run_seconds"] = statistics.median(cron)

        wall = backfill(env, "tiny", FIRST, args.days)
        report["backfill_wall_seconds"] = wall
        report["backfill_seconds_per_interval"] = wall / args.days
        report["run_duration_mean_seconds"] = mean_run_seconds(env, "tiny")
        report["cron_run_vs_backfill_interval"] = report["cron_run_seconds"] / report["backfill_seconds_per_interval"]
        report["profile_seconds_per_interval"] = profile_in_process(env, args.profile_intervals)

        if not args.no_parallel:
            n = args.parallel_days
            parallel: dict[str, float] = {}
            parallel["api 0.5 s, sequential"] = backfill(env, "api_seq", FIRST, n)
            parallel["api 0.5 s, --parallel 2"] = backfill(env, "api_p2", FIRST, n, "--parallel", "2")
            parallel["api 0.5 s, --parallel 4"] = backfill(env, "api_p4", FIRST, n, "--parallel", "4")
            parallel["api 2 s, sequential"] = backfill(env, "slow_seq", FIRST, n)
            parallel["api 2 s, --parallel 2"] = backfill(env, "slow_p2", FIRST, n, "--parallel", "2")
            parallel["api 2 s, --parallel 4"] = backfill(env, "slow_p4", FIRST, n, "--parallel", "4")
            parallel["tiny, sequential"] = backfill(env, "tiny", FIRST + timedelta(days=200), n)
            parallel["tiny, --parallel 2"] = backfill(env, "tiny_par", FIRST, n, "--parallel", "2")
            report["parallel_days"] = n
            report["parallel_seconds_per_interval"] = {k: v / n for k, v in parallel.items()}

    print(f"cron_run of a tiny pipeline (new process):   {report['cron_run_seconds']:.2f} s")
    print(f"backfill of {args.days} days, sequential:            {report['backfill_wall_seconds']:.2f} s wall = "
          f"{report['backfill_seconds_per_interval']:.3f} s per interval "
          f"(runs themselves: {report['run_duration_mean_seconds']:.3f} s mean)")
    print(f"one cron_run costs {report['cron_run_vs_backfill_interval']:.1f}x a backfilled interval")
    print(f"\nwhere an interval's time goes (in-process, {args.profile_intervals} intervals):")
    for label, seconds in report["profile_seconds_per_interval"].items():
        print(f"  {label:<52} {seconds * 1000:7.1f} ms")
    if "parallel_seconds_per_interval" in report:
        print(f"\nparallelism ({report['parallel_days']} daily intervals, {report['cpus']} CPUs), "
              "seconds per interval:")
        for label, seconds in report["parallel_seconds_per_interval"].items():
            print(f"  {label:<28} {seconds:.3f} s")
    out = ROOT / "benchmarks" / "results" / "backfill_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
