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

    .venv/bin/python benchmarks/ui_render.py --scale [--pipelines 20] [--days 400] [--repeat 3]

Flat cost with history (issue 25 §5): the same pipelines over ``--days`` days with 200 runs, then
with 20,000 runs (each size in a new process: one embedded store per process), runs spread evenly
over the pipelines and days. The pipelines page, a pipeline page and ``/metrics`` are timed cold
(the first request of a newly started page: its first turn at the store, nothing cached) and warm
(the median of ``--repeat`` requests after it); the 20,000-run figures must stay within 1.5x of the
200-run ones. Writes ``benchmarks/results/ui_render_scale.json``.
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


def spread_history(pipelines: int, runs: int, days: int) -> list[list[object]]:
    """``runs`` daily runs spread evenly over the pipelines and the last ``days`` days: a success
    per slot, and every tenth slot a failed (or crashed) run first, healed by that success an hour
    later; whatever the size, the same shape."""
    from core.models import RunRecord

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows: list[list[object]] = []

    def add(name: str, start: datetime, status: str, started: datetime) -> None:
        n = len(rows)
        record = RunRecord(run_id=f"s{n:06d}", pipeline=name, interval_start=start,
                           interval_end=start + timedelta(days=1), trigger="backfill", status=status,
                           reason="" if status == "success" else "error", started_at=started,
                           finished_at=started + timedelta(seconds=2), duration_seconds=2.0,
                           rows_loaded=100 if status == "success" else 0,
                           error="" if status == "success" else "ValueError: source returned 503", host="bench", pid=1)
        rows.append([getattr(record, c) for c in RunRecord.model_fields] + [n + 1])

    slots = max(1, runs * 10 // 11 // pipelines)  # per pipeline; a tenth of them with a failure first
    for k in range(slots):
        start = today - timedelta(days=days - (k * days) // slots)
        for p in range(pipelines):
            name, started = f"bench_{p:02d}", start + timedelta(days=1, hours=2, seconds=k)
            if k % 10 == 9:
                add(name, start, ("failed", "crashed")[p % 2], started - timedelta(hours=1))
            add(name, start, "success", started)
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
    parser.add_argument("--scale", action="store_true", help="200 against 20,000 runs (see above)")
    parser.add_argument("--one-size", type=int, default=0, help=argparse.SUPPRESS)  # a --scale child
    args = parser.parse_args()
    if args.scale:
        return scale(args)

    work = Path(tempfile.mkdtemp(prefix="dp-ui-bench-"))
    (work / "pipelines").mkdir()
    (work / "pipelines" / "bench_pipeline.py").write_text(f"PIPELINES = {args.pipelines}\n" + MODULE)
    (work / ".env").write_text("")
    for name in ("CLICKHOUSE_HOST", "CLICKHOUSE_URL", "UI_PASSWORD"):
        os.environ.pop(name, None)
    os.environ.update({"ENV_FILE": str(work / ".env"), "DATA_DIR": str(work / "data"), "LOG_DIR": str(work / "logs"),
                       "RUN_DIR": str(work / "run"), "PIPELINES_DIR": str(work / "pipelines")})

    from ops.discovery import get_registry
    from publish.ui.web import StatusPage, create_app
    from record.tables import RUNS_TABLE

    rows = (spread_history(args.pipelines, args.one_size, args.days) if args.one_size
            else history(args.pipelines, args.runs, args.days))
    settings, stored = _store_with(rows)
    registry = get_registry(settings.pipelines_dir)
    if args.one_size:
        return _one_size(settings, registry, args)
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


def _store_with(rows: list[list[object]]) -> tuple[object, int]:
    """The project's embedded store with these run rows (and, as the runs would have written
    them, the coverage and the run totals); the settings and the number of runs stored."""
    from core.config import load_settings
    from core.store import Store
    from record.coverage import fill_from_history
    from record.history import _COLUMNS
    from record.tables import RUNS_TABLE, ensure_framework_tables
    from record.totals import TOTALS_TABLE
    from record.totals import fill_from_history as fill_totals

    settings = load_settings()
    store = Store(settings)
    ensure_framework_tables(store)
    for chunk in range(0, len(rows), 5000):
        store.insert_rows(RUNS_TABLE, rows[chunk:chunk + 5000], _COLUMNS)
    stored = int(store.command(f"SELECT count() FROM {store.table(RUNS_TABLE)} FINAL"))
    fill_from_history(store, RUNS_TABLE)
    store.command(f"TRUNCATE TABLE {store.table(TOTALS_TABLE)}")
    fill_totals(store, RUNS_TABLE)
    store.close()
    return settings, stored


SCALE_PATHS = ("/", "/pipelines/bench_00", "/metrics")


def _one_size(settings: object, registry: object, args: argparse.Namespace) -> int:
    """Cold and warm seconds of each page of SCALE_PATHS on this store, as JSON on stdout."""
    from publish.ui.web import StatusPage, create_app

    figures = {}
    for path in SCALE_PATHS:
        page = StatusPage(settings, lambda: registry)  # type: ignore[arg-type]
        client = create_app(page).test_client()

        def fetch(path: str = path, client: object = client) -> None:
            answer = client.get(path)  # type: ignore[attr-defined]
            assert answer.status_code == 200 and b"store busy" not in answer.data, (path, answer.status_code)

        cold = timed(fetch, 1)["median"]
        warm = timed(fetch, args.repeat)
        figures[path] = {"cold": cold, "warm": warm["median"], "warm_cpu": warm["cpu"]}
        page.gate.close()
    print(json.dumps(figures))
    return 0


def scale(args: argparse.Namespace) -> int:
    """200 against 20,000 runs, each size in a new process; prints the table and the ratios."""
    import subprocess

    found = {}
    for runs in (200, 20000):
        child = subprocess.run([sys.executable, __file__, "--one-size", str(runs), "--pipelines", str(args.pipelines),
                                "--days", str(args.days), "--repeat", str(args.repeat)],
                               capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if child.returncode != 0:
            print(child.stdout + child.stderr, file=sys.stderr)
            return 1
        found[runs] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"status page, embedded store: {args.pipelines} pipelines, {args.days} days, 200 against 20,000 runs "
          f"(cold: first request of a new page; warm: median of {args.repeat})")
    worst = 0.0
    for path in SCALE_PATHS:
        for kind in ("cold", "warm"):
            small, big = found[200][path][kind], found[20000][path][kind]
            worst = max(worst, big / small)
            print(f"  {path:<22} {kind}: {small:.3f} s -> {big:.3f} s  x{big / small:.2f}")
    print(f"  worst ratio x{worst:.2f} ({'within' if worst <= 1.5 else 'OVER'} the 1.5x bound)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui_render_scale.json").write_text(json.dumps({"pipelines": args.pipelines, "days": args.days,
                                                          "results": {str(k): v for k, v in found.items()}}, indent=2))
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
