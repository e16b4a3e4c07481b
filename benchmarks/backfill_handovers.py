"""A sequential backfill that hands the embedded store over, again and again: does it stay flat?

    .venv/bin/python benchmarks/backfill_handovers.py [--handovers 20] [--warmup 2]

A fresh temporary project (own DATA_DIR, embedded engine; the pipelines of
``backfill_overhead.py``). ``backfill api_seq`` (0.5 s of "API" wait per day) runs through the real
CLI in a new process. After more than ``SHARE_STORE_EVERY`` seconds with nobody waiting (the
backfill must not have handed anything over by then), a *second process* really takes the store
(opens the engine in-process, reads, releases) ``--handovers`` times; after each take the benchmark
waits until the backfill has finished one more interval (so it has the store, and its engine,
again) and reads the backfill process's threads, descriptors and RSS from ``/proc``. Then the
backfill is interrupted (Ctrl-C: it stops after the running interval).

Reports the figures after the first take, after ``--warmup`` takes and at the end, the seconds per
hand-over, and the seconds per interval before anybody waited. Writes
``benchmarks/results/backfill_handovers.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from backfill_overhead import FIRST, MODULE, ROOT, SRC, cli, env_for

SHARE_STORE_EVERY = 5.0  # runner/backfill/worker.py

# The second process: on each line of stdin, take the store (engine opened in-process), read,
# release, answer (a cron run's turn, without a CLI start-up per turn).
TAKER = """
import sys
from core.config import load_settings
from core.store import Store
store = Store(load_settings(), linger=0)
for line in sys.stdin:
    store.query_rows("SELECT count() FROM system.one")
    store.close()
    print("took", flush=True)
"""


def usage(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {line.split(":")[0]: line.split()[1] for line in status if line.startswith(("Threads", "VmRSS"))}
    return {"threads": int(field["Threads"]), "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
            "rss_mb": round(int(field["VmRSS"]) / 1024, 1)}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(env: dict[str, str], project: Path, handovers: int, warmup: int) -> dict[str, Any]:
    job_log = project / "logs" / "jobs" / "api_seq.log"

    def done() -> int:
        return job_log.read_text().count(" succeeded in ") if job_log.exists() else 0

    days = int(SHARE_STORE_EVERY / 0.5) + 4 * handovers + 20  # never runs out before the last take
    last = FIRST + timedelta(days=days - 1)
    started = time.monotonic()
    backfill = subprocess.Popen([sys.executable, str(SRC / "main.py"), "backfill", "api_seq", "--start",
                                 FIRST.isoformat(), "--end", last.isoformat()], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    taker = subprocess.Popen([sys.executable, "-c", TAKER], env=env, cwd=ROOT, text=True, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert taker.stdin is not None and taker.stdout is not None
    samples: list[dict[str, float]] = []
    try:
        wait_until(lambda: done() >= 1, 300, "the first day")
        first = (time.monotonic(), done())
        wait_until(lambda: time.monotonic() - started > SHARE_STORE_EVERY + 0.5 and done() >= 4, 300, "more days")
        alone = (time.monotonic() - first[0], done() - first[1])
        handed = (project / "logs" / "system" / "application.log").read_text().count("Handing the embedded store")
        taking = time.monotonic()
        for _ in range(handovers):
            taker.stdin.write("take\n")
            taker.stdin.flush()
            if taker.stdout.readline().strip() != "took":
                raise SystemExit("the second process could not take the store")
            then = done()
            wait_until(lambda: done() > then or backfill.poll() is not None, 300, "one more interval")  # noqa: B023
            if backfill.poll() is not None:
                raise SystemExit("the backfill ended before the last hand-over")
            samples.append(usage(backfill.pid))
        per_handover = (time.monotonic() - taking) / handovers
    finally:
        taker.stdin.close()
        taker.wait(60)
        backfill.send_signal(signal.SIGINT)
        backfill.wait(120)
    return {"handovers": handovers, "handed_over_while_nobody_waited": handed,
            "seconds_per_interval_nobody_waiting": round(alone[0] / alone[1], 3),
            "after_first": samples[0], "after_warmup": samples[min(warmup, handovers) - 1], "end": samples[-1],
            "seconds_per_handover": round(per_handover, 2), "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handovers", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dp-bench-handovers-") as tmp:
        project = Path(tmp)
        (project / "pipelines").mkdir()
        (project / "pipelines" / "bench_pipeline.py").write_text(MODULE)
        (project / ".env").write_text("")
        env = env_for(project)
        cli(env, "setup_db")
        report = measure(env, project, max(args.handovers, 1), max(args.warmup, 1))
    print(f"backfill alone: {report['seconds_per_interval_nobody_waiting']:.3f} s per interval (0.5 s of it the "
          f"'API'), {report['handed_over_while_nobody_waited']} hand-overs while nobody waited")
    for label in ("after_first", "after_warmup", "end"):
        print(f"  {label.replace('_', ' '):13s} {report[label]}")
    print(f"{report['handovers']} hand-overs to a second process, {report['seconds_per_handover']:.2f} s each "
          "(take + one more interval)")
    out = ROOT / "benchmarks" / "results" / "backfill_handovers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
