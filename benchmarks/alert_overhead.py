"""What alerting costs a run: ``cron_run`` with no channel, a healthy webhook, one answering 500,
and one that never answers (``ALERT_TIMEOUT=1``).

    .venv/bin/python benchmarks/alert_overhead.py [--repeat 4]

Real CLI processes in a fresh temporary project (embedded engine) and a real HTTP receiver on
127.0.0.1. Runs alternate failing and succeeding, so every run sends an alert (failed, then recovered);
the cases interleave. Reported per case (median): the process's wall time, the run's own
recorded duration (``_dp_runs``), and the ratio of the wall time to the no-channel baseline
measured in the same run.
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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Tiny(Extractor):
        interval_aware = True
        def extract(self, context):
            if os.environ.get("FAIL"):
                raise RuntimeError("source is down")
            ts = [context.start + timedelta(hours=h) for h in (1, 7, 13, 19)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": [1, 2, 3, 4]})

    PIPELINE_REGISTRY = {"tiny": {"pipeline": create_el_pipeline(
        Tiny("tiny"), create_clickhouse_loader("tiny_t", time_column="ts"), "tiny")}}
''')


def receiver(status: int, delay: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.end_headers()
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def run_once(env: dict[str, str], fail: bool, listed: bool = True) -> tuple[float, float]:
    """One cron_run: its wall time and the duration the run recorded (0 without ``listed``)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(SRC / "main.py"), "cron_run", "tiny", "--date", "2026-03-10"],
                          env={**env, **({"FAIL": "1"} if fail else {})}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != (1 if fail else 0):
        raise SystemExit(f"unexpected exit {done.returncode}: {done.stderr[-500:]}")
    if not listed:
        return wall, 0.0
    listing = subprocess.run([sys.executable, str(SRC / "main.py"), "runs", "tiny", "--limit", "1", "--json"],
                             env=env, capture_output=True, text=True)
    return wall, json.loads(listing.stdout)[0]["duration_seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="alerting runs per case: this many failed + recovered")
    args = parser.parse_args()
    servers = {"healthy webhook": receiver(200, 0), "webhook answering 500": receiver(500, 0),
               "webhook hanging (ALERT_TIMEOUT=1)": receiver(200, 30)}
    cases: dict[str, dict[str, str]] = {"no channel": {}}
    for label, server in servers.items():
        cases[label] = {"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook", "ALERT_TIMEOUT": "1"}
    envs = {}
    for label, extra in cases.items():
        home = Path(tempfile.mkdtemp(prefix="dp-bench-alerts-"))
        (home / "pipelines").mkdir()
        (home / "pipelines" / "tiny_pipeline.py").write_text(MODULE)
        (home / ".env").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ALERT_"))}
        env.update(ENV_FILE=str(home / ".env"), DATA_DIR=str(home / "data"), LOG_DIR=str(home / "logs"),
                   RUN_DIR=str(home / "run"), PIPELINES_DIR=str(home / "pipelines"), PYTHONPATH=str(SRC), **extra)
        envs[label] = env
        run_once(env, fail=False, listed=False)  # warm-up: creates the store and the table, sends nothing
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    for _ in range(args.repeat):  # cases interleave, so the machine's load hits them alike
        for fail in (True, False):
            for label, env in envs.items():
                samples[label].append(run_once(env, fail))
    results = {label: (statistics.median(w for w, _ in found), statistics.median(d for _, d in found))
               for label, found in samples.items()}
    base = results["no channel"][0]
    print(f"cron_run, alternating failed / recovered (every run alerts), median of {args.repeat * 2} runs:")
    for label, (wall, duration) in results.items():
        print(f"  {label:<36} process {wall:6.2f} s (x{wall / base:4.2f})   run itself {duration:6.3f} s")
    for server in servers.values():
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
