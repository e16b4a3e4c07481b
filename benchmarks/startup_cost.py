"""Per-process cost of the CLI: this checkout against an older commit, side by side in one run.

Usage (the product's .venv is enough: no peers are needed):

    .venv/bin/python benchmarks/startup_cost.py                    # baseline commit 0b6dc89, best of 7
    .venv/bin/python benchmarks/startup_cost.py --baseline 0b6dc89 --repeat 9

The baseline is checked out with ``git worktree add --detach`` into a temporary directory
(removed at the end). Each version gets its own fixture: a pipelines folder with one module that
imports only the framework (no pandas), whose pipeline loads one Arrow row into the ClickHouse
loader, and its own embedded store. Every measurement is a new process, timed from the outside
(wall clock, best of N, interleaved old/new so that load changes hit both alike):

  pass        ``python -c pass``: the interpreter alone (subtracted from ``help``)
  help        ``main.py help``
  list        ``main.py list``: discovery + last runs (opens the store)
  cron_run    ``main.py cron_run light`` on a store that already ran once (the cron case)
  floor       no framework: import what a run cannot do without (pydantic-settings, click, rich,
              pyarrow, clickhouse-connect), open the same embedded store, ``SELECT 1``

Then, once per version, the statements a ``cron_run`` sends to the engine are counted in a
child that wraps chdb's connection (``query``/``send_query``), and the run's recorded
``duration_seconds`` is read back. Bytecode caching is on (as for a cron user); the first
call of each version warms it. Results: a table and JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

PIPELINE = '''
from pathlib import Path

from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {}


class OneRow(Extractor):
    def extract(self, context):
        import pyarrow as pa

        # Read, not built: converting Python values (pa.array, pa.scalar, pa.table(dict)) makes
        # pyarrow import pandas (~0.4 s), which would be the user's cost, not the framework's.
        data = Path(__file__).with_name("one_row.arrows").read_bytes()
        yield pa.ipc.open_stream(pa.py_buffer(data)).read_all()


PIPELINE_REGISTRY["light"] = {
    "pipeline": create_etl_pipeline(OneRow(), [], create_clickhouse_loader("light_rows", mode="replace",
                                                                          order_by="id")),
    "schedule": "0 2 * * *",
}
'''

# What any cron_run pays before the framework does anything of its own.
FLOOR = """
import sys
import click, pydantic_settings, pyarrow, rich.console, clickhouse_connect
clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1]).command("SELECT 1")
"""

# Runs the CLI in-process with chdb's connection wrapped, then prints what it counted.
COUNTER = '''
import json, runpy, sys
import chdb.state.sqlitelike as sl
seen = []
for name in ("query", "send_query"):
    original = getattr(sl.Connection, name)
    def wrapped(self, sql, *a, _original=original, **k):
        seen.append(" ".join(str(sql).split())[:70])
        return _original(self, sql, *a, **k)
    setattr(sl.Connection, name, wrapped)
sys.argv = ["main.py", *sys.argv[1:]]
try:
    runpy.run_path({main!r}, run_name="__main__")
except SystemExit:
    pass
print("DP_STATEMENTS=" + json.dumps(seen))
'''


def write_one_row(path: Path) -> None:
    """The fixture's input: one row (id Int64, name String) as an Arrow IPC stream."""
    import pyarrow as pa

    table = pa.table({"id": pa.array([1], pa.int64()), "name": ["one"]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    path.write_bytes(sink.getvalue().to_pybytes())


def fixture(base: Path, version: str) -> dict[str, str]:
    home = base / version
    (home / "pipelines").mkdir(parents=True)
    (home / "pipelines" / "light_pipeline.py").write_text(PIPELINE)
    write_one_row(home / "pipelines" / "one_row.arrows")
    (home / "migrations").mkdir()
    (home / ".env").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"ENV_FILE": str(home / ".env"), "DATA_DIR": str(home / "data"), "LOG_DIR": str(home / "logs"),
                "RUN_DIR": str(home / "run"), "PIPELINES_DIR": str(home / "pipelines"),
                "MIGRATIONS_DIR": str(home / "migrations"), "COLUMNS": "200"})
    for name in ("CLICKHOUSE_HOST", "CLICKHOUSE_URL", "CLICKHOUSE_DATABASE"):
        env.pop(name, None)
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def count_statements(tree: Path, env: dict[str, str]) -> list[str]:
    env = {**env, "PYTHONPATH": str(tree / "src")}
    probe = COUNTER.format(main=str(tree / "src" / "main.py"))
    result = subprocess.run([sys.executable, "-c", probe, "cron_run", "light"], env=env, cwd=tree,
                            capture_output=True, text=True, timeout=300)
    marker = result.stdout.rsplit("DP_STATEMENTS=", 1)
    if len(marker) != 2:
        raise SystemExit(f"statement count failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(marker[1])


def recorded_duration(tree: Path, env: dict[str, str]) -> float | None:
    env = {**env, "PYTHONPATH": str(tree / "src")}
    result = subprocess.run([sys.executable, str(tree / "src" / "main.py"), "runs", "light", "--json"],
                            env=env, cwd=tree, capture_output=True, text=True, timeout=300)
    try:
        runs = json.loads(result.stdout)
        runs = runs.get("runs", runs) if isinstance(runs, dict) else runs
        return float(runs[0]["duration_seconds"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="0b6dc89", help="commit to compare with (default 0b6dc89)")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per step and version (best is kept)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="dp-startup-"))
    old_tree = base / "baseline-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), args.baseline],
                   check=True)
    try:
        trees = {"old": old_tree, "new": ROOT}
        envs = {v: {**fixture(base, v), "PYTHONPATH": str(trees[v] / "src")} for v in trees}
        steps = {"help": ["help"], "list": ["list"], "cron_run": ["cron_run", "light"]}
        for version, tree in trees.items():  # warm bytecode and create the store (first run migrates)
            for argv in steps.values():
                timed([sys.executable, str(tree / "src" / "main.py"), *argv], envs[version], tree)
        best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
        for _ in range(args.repeat):
            for version, tree in trees.items():
                store = Path(envs[version]["DATA_DIR"]) / "clickhouse"
                runs = {"pass": [sys.executable, "-c", "pass"], "floor": [sys.executable, "-c", FLOOR, str(store)]}
                runs.update({k: [sys.executable, str(tree / "src" / "main.py"), *v] for k, v in steps.items()})
                for step, command in runs.items():
                    elapsed = timed(command, envs[version], tree)
                    best[version][step] = min(best[version].get(step, elapsed), elapsed)
        statements = {v: count_statements(trees[v], envs[v]) for v in trees}
        durations = {v: recorded_duration(trees[v], envs[v]) for v in trees}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)
        shutil.rmtree(base, ignore_errors=True)

    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; best of {args.repeat}")
    print(f"{'step':<28}{'old ' + args.baseline:>14}{'new':>10}{'old/new':>10}")
    for step in ("pass", "help", "list", "cron_run", "floor"):
        old, new = best["old"][step], best["new"][step]
        print(f"{step + ' (s)':<28}{old:>14.3f}{new:>10.3f}{old / new:>9.2f}x")
    over = {v: best[v]["help"] - best[v]["pass"] for v in trees}
    print(f"{'help - python -c pass (s)':<28}{over['old']:>14.3f}{over['new']:>10.3f}   target new <= 0.25")
    print(f"{'cron_run statements':<28}{len(statements['old']):>14}{len(statements['new']):>10}")
    print(f"{'cron_run recorded duration':<28}{durations['old'] or float('nan'):>14.3f}"
          f"{durations['new'] or float('nan'):>10.3f}   (new: excludes opening the store)")
    print(f"{'cron_run - floor (s)':<28}{best['old']['cron_run'] - best['old']['floor']:>14.3f}"
          f"{best['new']['cron_run'] - best['new']['floor']:>10.3f}   (the framework's own share)")
    print(f"cron_run speed-up (old/new): {best['old']['cron_run'] / best['new']['cron_run']:.2f}x (target >= 1.5x)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"startup_cost-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"baseline": args.baseline, "load": load, "best": best, "statements": statements,
                               "recorded_duration": durations}, indent=2))
    print(f"statements per cron_run (new): {json.dumps(statements['new'], indent=1)}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
