"""How long `./run.sh list` takes with 50 pipeline modules, against the CLI's own start-up.

Usage: .venv/bin/python benchmarks/discovery_speed.py [--modules 50] [--repeat 5]

Each figure is the median wall time of a new process (as a user or cron would start it),
measured in this run, with ratios against two baselines from the same run:
- `help` (the CLI's start-up, no discovery, no store);
- `list` with no pipeline modules (start-up + store + run history).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODULE = '''
import pyarrow as pa
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
from pipelines.tools.loaders.console_loader import create_console_loader

class Rows(Extractor):
    interval_aware = True
    def extract(self, context):
        yield pa.table({{"ts": [context.start], "v": [{i}]}})

PIPELINE_REGISTRY = {{
    "bench_{i:03d}": {{
        "pipeline": create_etl_pipeline(Rows(), None, create_clickhouse_loader("bench_{i:03d}", time_column="ts"),
                                        "bench {i}"),
        "description": "benchmark pipeline {i}", "schedule": "{minute} * * * *", "table_name": "bench_{i:03d}",
    }}
}}
'''


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "src" / "main.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{args} failed: {result.stderr}")
    return elapsed


def median(args: list[str], env: dict[str, str], repeat: int) -> float:
    timed(args, env)  # warm the OS cache
    return statistics.median(timed(args, env) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        empty, full = tmp_path / "empty", tmp_path / "full"
        empty.mkdir()
        full.mkdir()
        for i in range(options.modules):
            (full / f"bench_{i:03d}_pipeline.py").write_text(MODULE.format(i=i, minute=i % 60))
        (tmp_path / ".env").write_text("")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), ENV_FILE=str(tmp_path / ".env"),
                   DATA_DIR=str(tmp_path / "data"), LOG_DIR=str(tmp_path / "logs"), RUN_DIR=str(tmp_path / "run"))
        help_time = median(["help"], env, options.repeat)
        empty_time = median(["list"], {**env, "PIPELINES_DIR": str(empty)}, options.repeat)
        full_time = median(["list"], {**env, "PIPELINES_DIR": str(full)}, options.repeat)
    print(f"{'command':44} {'median s':>9} {'x help':>8} {'x list(0)':>10}")
    for label, value in ((" help (CLI start-up)", help_time), (" list, 0 pipeline modules", empty_time),
                         (f" list, {options.modules} pipeline modules", full_time)):
        print(f"{label:44} {value:9.3f} {value / help_time:8.2f} {value / empty_time:10.2f}")
    per_module = (full_time - empty_time) / options.modules * 1000
    print(f"discovery cost: {per_module:.1f} ms per module; target: list with 50 modules well under 2 s "
          f"-> {'OK' if full_time < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
