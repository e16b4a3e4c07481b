"""How long the status page takes to render with a big run history, on the embedded store.

    .venv/bin/python benchmarks/ui_render.py [--pipelines 50] [--runs 20000] [--days 90] [--repeat 5]

A fresh temporary project (own DATA_DIR, embedded engine) gets ``--pipelines`` daily pipelines and
``--runs`` run records spread over the last ``--days`` days (one success per day and pipeline,
plus failed attempts, crashes, hourly partial loads, a running run). Then, in this process, the
Flask application answers requests exactly as ``./run.sh ui`` would (store open, read, release,
template rendered) and each page is timed:

- ``/`` (pipelines page), ``/coverage?days=90`` (the 90-day grid of every pipeline), ``/metrics``,
  ``/rows`` (first and cached);
- the baseline: one turn at the store that reads nothing (open, ``SELECT count() FROM _dp_runs
  FINAL``, release), the floor any page pays; and reading the window's runs as ``RunRecord``
  objects (``record.history.runs_overlapping``), one of the grid's two reads (the other: the
  window's rows of the coverage table, ``_dp_coverage``, filled from the runs' complete successes).

Prints seconds (median and best of ``--repeat``, and CPU seconds) and the ratio to the baseline, and writes
``benchmarks/results/ui_render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODULE = textwrap.dedent('''
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Nothing(Extractor):
        interval_aware = True
        def extract(self, context):
            yield pa.table({"ts": pa.array([], pa.timestamp("ms", tz="UTC"))})

    PIPELINE_REGISTRY = {
        f"bench_{n:02d}": {"pipeline": create_el_pipeline(Nothing(), create_clickhouse_loader(
                               f"bench_{n:02d}_t", time_column="ts"), f"bench_{n:02d}"),
                           "schedule": f"{n % 60} 2 * * *", "description": f"benchmark pipeline {n}"}
        for n in range(PIPELINES)
    }
''')


def history(pipelines: int, runs: int, days: int, seed: int = 7) -> list[list[object]]:
    """Run rows: a success per (pipeline, day), then failed attempts, crashes and hourly loads."""
    from core.models import RunRecord

    rng = random.Random(seed)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows: list[list[object]] = []

    def add(pipeline: str, start: datetime, end: datetime, status: str, started: datetime) -> None:
        record = RunRecord(run_id=f"r{len(rows):06d}", pipeline=pipeline, interval_start=start, interval_end=end,
                           trigger="backfill", status=status, reason="" if status == "success" else "error",
                           started_at=started, finished_at=started + timedelta(seconds=2),
                           duration_seconds=2.0, rows_loaded=rng.randint(1000, 90000) if status == "success" else 0,
                           error="" if status == "success" else "ValueError: <b>source</b> returned 503",
                           host="bench", pid=1)
        rows.append([getattr(record, c) for c in RunRecord.model_fields] + [len(rows) + 1])

    names = [f"bench_{n:02d}" for n in range(pipelines)]
    for name in names:
        for d in range(days, 0, -1):
            start = today - timedelta(days=d)
            if rng.random() < 0.97:
                add(name, start, start + timedelta(days=1), "success", start + timedelta(days=1, hours=2))
    while len(rows) < runs:
        name, d = rng.choice(names), rng.randint(1, days)
        start = today - timedelta(days=d)
        kind = rng.random()
        if kind < 0.6:
            add(name, start, start + timedelta(days=1), "failed", start + timedelta(days=1, hours=1))
        elif kind < 0.7:
            add(name, start, start + timedelta(days=1), "crashed", start + timedelta(days=1, hours=1))
        else:
            hour = start + timedelta(hours=rng.randint(0, 23))
            add(name, hour, hour + timedelta(hours=1), "success", hour + timedelta(hours=1))
    return rows[:runs]


def timed(action: Callable[[], object], repeat: int) -> dict[str, float]:
    """Wall seconds (median, best) and CPU seconds of this process, all threads (median): on a
    shared machine the CPU figure moves less with the load."""
    seconds, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"median": statistics.median(seconds), "best": min(seconds), "cpu": statistics.median(cpu)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dp-ui-bench-"))
    (work / "pipelines").mkdir()
    (work / "pipelines" / "bench_pipeline.py").write_text(f"PIPELINES = {args.pipelines}\n" + MODULE)
    (work / ".env").write_text("")
    for name in ("CLICKHOUSE_HOST", "CLICKHOUSE_URL", "UI_PASSWORD"):
        os.environ.pop(name, None)
    os.environ.update({"ENV_FILE": str(work / ".env"), "DATA_DIR": str(work / "data"), "LOG_DIR": str(work / "logs"),
                       "RUN_DIR": str(work / "run"), "PIPELINES_DIR": str(work / "pipelines")})

    from core.config import load_settings
    from core.store import Store
    from ops.discovery import get_registry
    from publish.ui.web import StatusPage, create_app
    from record.coverage import fill_from_history
    from record.history import _COLUMNS
    from record.tables import RUNS_TABLE, ensure_framework_tables

    settings = load_settings()
    store = Store(settings)
    ensure_framework_tables(store)
    rows = history(args.pipelines, args.runs, args.days)
    for chunk in range(0, len(rows), 5000):
        store.insert_rows(RUNS_TABLE, rows[chunk:chunk + 5000], _COLUMNS)
    stored = int(store.command(f"SELECT count() FROM {store.table(RUNS_TABLE)} FINAL"))
    fill_from_history(store, RUNS_TABLE)  # the coverage table, as the runs would have written it
    store.close()

    registry = get_registry(settings.pipelines_dir)
    assert len(registry.pipelines) == args.pipelines, registry.broken
    page = StatusPage(settings, lambda: registry)
    client = create_app(page).test_client()

    def get(path: str) -> Callable[[], object]:
        def fetch() -> object:
            answer = client.get(path)
            assert answer.status_code == 200 and b"store busy" not in answer.data, (path, answer.status_code)
            return answer
        return fetch

    def baseline() -> None:
        page.gate.read("baseline", lambda s: s.command(f"SELECT count() FROM {s.table(RUNS_TABLE)} FINAL"))

    def read_runs() -> None:
        from record.history import runs_overlapping

        end = datetime.now(UTC)
        page.gate.read("runs", lambda s: runs_overlapping(s, end - timedelta(days=args.days + 1), end))

    get(f"/coverage?days={args.days}")()  # warm-up: imports, templates compiled
    results = {"baseline (a turn at the store)": timed(baseline, args.repeat),
               f"reading the {args.days} days' runs": timed(read_runs, args.repeat),
               "/ (pipelines page)": timed(get("/"), args.repeat),
               f"/coverage?days={args.days} (grid)": timed(get(f"/coverage?days={args.days}"), args.repeat),
               "/metrics": timed(get("/metrics"), args.repeat),
               "/rows (first: counts computed)": timed(get("/rows?days=30"), 1),
               "/rows (cached counts)": timed(get("/rows?days=30"), args.repeat)}
    cells = args.pipelines * args.days
    size = len(client.get(f"/coverage?days={args.days}").data)
    base = results["baseline (a turn at the store)"]["median"]
    print(f"status page, embedded store: {args.pipelines} pipelines, {stored:,} runs, {args.days}-day grid "
          f"({cells:,} cells, {size / 1024:.0f} KiB of HTML); median and best of {args.repeat}")
    for name, figures in results.items():
        print(f"  {name:<38} {figures['median']:.3f} s (best {figures['best']:.3f} s, CPU {figures['cpu']:.3f} s)  "
              f"x{figures['median'] / base:.1f} baseline")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui_render.json").write_text(json.dumps({"pipelines": args.pipelines, "runs": stored, "days": args.days,
                                                    "results": results}, indent=2))
    page.gate.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
