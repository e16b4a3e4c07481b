"""What a user's pipeline test costs: ``TestProject.run`` and a session of generated tests, this
checkout against a baseline commit (default cf6f863), side by side in the same run.

    .venv/bin/python benchmarks/test_harness.py [--projects 6] [--tests 12] [--repeat 2] [--baseline cf6f863]

The baseline is unpacked with ``git archive`` into a temporary directory (no worktree is added).
Both trees are measured the same way, alternately, each in new processes:

1. ``TestProject.run`` of the shipped example pipeline (``example_pipeline``, one day): a process
   opens ``--projects`` projects in turn, as a test session does (one per test), and runs the day
   twice in each. Every run's rows are asserted (3000 rows read, the weekday's share loaded, every
   row of that day, amounts computed; the re-run replaces the day): nothing is skipped or cached.
   The first run of the process (engine start, imports) is reported apart from the others.
2. A test session of ``--tests`` generated tests: ``new`` writes pipelines (from file, http, db,
   sql, file...: 3, 2, 2, 2, 3 tests, so 12 for five pipelines) into a bare copy of the tree, then
   ``src/main.py test pipelines`` runs them; its wall time, and every test must pass.

Prints a report and writes ``benchmarks/results/test_harness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trees import ROOT, copy_checkout, unpack

SOURCES = ("file", "http", "db", "sql")

# Runs in a new process with PYTHONPATH=<tree>/src: the harness of that tree, the example of that tree.
RUNS = textwrap.dedent('''
    import json, sys, tempfile, time
    from datetime import date
    from pathlib import Path
    from pipelines.testing import TestProject

    DAY = date(2026, 1, 15)
    projects, runs = int(sys.argv[1]), int(sys.argv[2])
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in range(projects):
            with TestProject(Path(tmp) / f"p{p}") as project:
                loaded = None
                for r in range(runs):
                    started = time.perf_counter()
                    result = project.run("example_pipeline", day=DAY)
                    times.append(time.perf_counter() - started)
                    assert result.status == "success", result.error
                    assert result.record.rows_extracted == 3000
                    assert 0 < len(result.rows) == result.record.rows_loaded < 3000
                    assert {row["event_date"] for row in result.rows} == {DAY}
                    assert all(row["amount"] == round(row["quantity"] * row["unit_price"], 2)
                               for row in result.rows)
                    assert loaded in (None, len(result.rows))
                    loaded = len(result.rows)
                    [n] = project.query("SELECT count() AS n FROM example_events")
                    assert n == {"n": loaded}, n
    print(json.dumps(times))
''')


def env_for(tree: Path, runtime: Path) -> dict[str, str]:
    """The environment of a process of ``tree``: its own sources, runtime folders in ``runtime``,
    and nothing that could point it at a real server or at the user's project."""
    drop = ("PYTHONPATH", "PIPELINES_DIR", "MIGRATIONS_DIR", "ENV_FILE", "CLICKHOUSE_HOST", "CLICKHOUSE_URL",
            "DP_TEST_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(tree / "src"), DATA_DIR=str(runtime / "data"), LOG_DIR=str(runtime / "logs"),
               RUN_DIR=str(runtime / "run"), TEST_RESULTS_DIR=str(runtime / "results"))
    return env


def harness_runs(tree: Path, runtime: Path, projects: int) -> list[float]:
    """Seconds of each ``TestProject.run`` (two per project, ``projects`` projects, one process)."""
    done = subprocess.run([sys.executable, "-c", RUNS, str(projects), "2"], cwd=tree, env=env_for(tree, runtime),
                          capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"harness runs failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def generated_project(tree: Path, target: Path, runtime: Path, tests: int) -> tuple[Path, int]:
    """A bare copy of ``tree`` (no user pipelines, migrations or tests) with pipelines written by
    its own ``new`` (from file, http, db, sql in turn) until they bring at least ``tests`` tests;
    returns the copy and its number of tests."""
    shutil.copytree(tree, target, symlinks=True)
    for pattern in ("src/pipelines/**/*_pipeline.py", "migrations/sql/*.sql", "tests/pipelines/test_*.py"):
        for path in target.glob(pattern):
            path.unlink()
    written, i = 0, 0
    while written < tests:
        name, source = f"gen{i}_{SOURCES[i % len(SOURCES)]}", SOURCES[i % len(SOURCES)]
        made = subprocess.run([sys.executable, "src/main.py", "new", name, "--from", source],
                              cwd=target, env=env_for(target, runtime), capture_output=True, text=True, timeout=120)
        if made.returncode != 0:
            raise SystemExit(f"new {name} failed in {target}: {made.stderr[-2000:]}")
        written += (target / "tests" / "pipelines" / f"test_{name}_pipeline.py").read_text().count("\ndef test_")
        i += 1
    return target, written


def session_seconds(project: Path, tests: int, runtime: Path) -> float:
    """Wall seconds of ``src/main.py test pipelines`` in ``project``; every test must pass."""
    results = runtime / "results"
    shutil.rmtree(results, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "src/main.py", "test", "pipelines", "-q", "--no-cov", "-p",
                           "no:cacheprovider"], cwd=project, env=env_for(project, runtime), capture_output=True,
                          text=True, timeout=1800, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = json.loads((results / "latest_test_results.json").read_text())
    if done.returncode != 0 or summary.get("passed") != tests:
        raise SystemExit(f"the generated tests did not all pass in {project}:\n{done.stdout[-3000:]}")
    return seconds


def measure(trees: dict[str, Path], work: Path, projects: int, tests: int, repeat: int) -> dict[str, Any]:
    """Both measurements for every tree, alternately, ``repeat`` times."""
    runs: dict[str, list[list[float]]] = {name: [] for name in trees}
    sessions: dict[str, list[float]] = {name: [] for name in trees}
    generated = {name: generated_project(tree, work / f"gen-{name}", work / f"gen-rt-{name}", tests)
                 for name, tree in trees.items()}
    counts = {count for _, count in generated.values()}
    if len(counts) != 1:
        raise SystemExit(f"the trees' new wrote different numbers of tests: {generated}")
    for attempt in range(repeat):
        for name, tree in trees.items():
            runs[name].append(harness_runs(tree, work / f"rt-{name}-{attempt}", projects))
            print(f"  [{attempt + 1}/{repeat}] {name}: {projects * 2} harness runs "
                  f"in {sum(runs[name][-1]):.1f} s", flush=True)
        for name in trees:
            sessions[name].append(session_seconds(*generated[name], work / f"gen-rt-{name}"))
            print(f"  [{attempt + 1}/{repeat}] {name}: {generated[name][1]} generated tests "
                  f"in {sessions[name][-1]:.1f} s",
                  flush=True)
    return {"runs": runs, "sessions": sessions, "tests": counts.pop()}


def summarize(measured: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per tree: the first run of a process, the median of the later runs, the median session."""
    out: dict[str, dict[str, float]] = {}
    for name, per_process in measured["runs"].items():
        later = [t for times in per_process for t in times[1:]]
        out[name] = {"first_run": statistics.median(times[0] for times in per_process),
                     "later_run_median": statistics.median(later), "later_run_mean": statistics.fmean(later),
                     # of the later runs: a new project's first (new store, migrations) and a re-run
                     "new_project_run_median": _median(t for times in per_process for t in times[2::2]),
                     "rerun_median": statistics.median(t for times in per_process for t in times[1::2]),
                     "runs_measured": float(sum(len(times) for times in per_process)),
                     "session_median": statistics.median(measured["sessions"][name])}
    return out


def _median(values: Iterable[float]) -> float:
    listed = list(values)
    return statistics.median(listed) if listed else float("nan")  # e.g. --projects 1: no new project


def report(summary: dict[str, dict[str, float]], baseline: str, projects: int, tests: int) -> None:
    old, new = summary["baseline"], summary["current"]
    print(f"\nTestProject.run of example_pipeline ({projects} projects x 2 runs per process, rows asserted)")
    print(f"{'':40} {'baseline ' + baseline:>18} {'this checkout':>14} {'ratio':>8}")
    rows = [("first run of the process", "first_run"), ("later runs, median", "later_run_median"),
            ("later runs, mean", "later_run_mean"),
            ("  of which a new project's first run", "new_project_run_median"),
            ("  of which the re-run in a project", "rerun_median")]
    for label, key in rows:
        print(f"{label:40} {old[key]:>16.3f} s {new[key]:>12.3f} s {old[key] / new[key]:>7.1f}x")
    print(f"\nA test session of {tests} generated pipeline tests (./run.sh test pipelines), wall time")
    print(f"{'session, median':40} {old['session_median']:>16.1f} s {new['session_median']:>12.1f} s "
          f"{old['session_median'] / new['session_median']:>7.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=6, help="TestProjects per process (two runs each)")
    parser.add_argument("--tests", type=int, default=12, help="generated tests in the session (at least)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", default="cf6f863", help="the commit to compare with")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dp-harness-bench-") as tmp:
        work = Path(tmp)
        trees = {"baseline": unpack(args.baseline, work / "baseline"), "current": copy_checkout(work / "current")}
        for tree in trees.values():
            (tree / "tests" / "pipelines").mkdir(parents=True, exist_ok=True)
        measured = measure(trees, work, args.projects, args.tests, args.repeat)
    summary = summarize(measured)
    report(summary, args.baseline, args.projects, measured["tests"])
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "test_harness.json").write_text(json.dumps(
        {"baseline": args.baseline, "projects": args.projects, "tests": args.tests, "repeat": args.repeat,
         "summary": summary, "measured": measured}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
