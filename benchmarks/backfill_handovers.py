"""A backfill and a cascade that hand the embedded store over, again and again: do they stay flat?

    .venv/bin/python benchmarks/backfill_handovers.py [--handovers 300] [--warmup 10] [--modes backfill,cascade]
                                                      [--share-every 0] [--minutes M]

A fresh temporary project per mode (own DATA_DIR, embedded engine), everything through the real
CLI in new processes:

- ``backfill``: ``backfill api_seq --hourly`` (0.05 s of "API" wait per hour);
- ``cascade``: ``cron_run raw`` of one interval of many days, then its downstream ``hourly`` (a SQL
  pipeline, ``depends_on`` raw, hourly intervals) runs each hour in the cascade that follows.

The process is started with ``STORE_SHARE_EVERY=--share-every`` (0: it hands the store over as
soon as a process waits, after one run; the default 5 s would make 2,000 hand-overs take hours).
After more than that with nobody waiting (nothing may be handed over by then), a *second process*
really takes the store (opens the engine in-process, reads, releases) ``--handovers`` times;
after each take the benchmark waits until one more interval finished (so the series has the store
again) and reads the CLI process's threads, descriptors and RSS from ``/proc``. Then the process is
interrupted (Ctrl-C: it stops after the running interval). ``--minutes``: stop taking after that
long (per mode) and report the hand-overs done by then.

Prints, per mode, the figures after ``--warmup`` hand-overs and at the end, and end / warm-up as
ratios, and the seconds per hand-over. Writes ``benchmarks/results/backfill_handovers.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backfill_overhead import ROOT, SRC, cli, env_for

MODULE = textwrap.dedent('''
    import time
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Hours(Extractor):
        """One row per hour of the interval; waits like a remote API would."""
        interval_aware = True
        def __init__(self, name, wait):
            super().__init__(name)
            self.wait = wait
        def extract(self, context):
            time.sleep(self.wait)
            hours = max(1, int((context.end - context.start).total_seconds() // 3600))
            yield pa.table({"ts": pa.array([context.start + timedelta(hours=h) for h in range(hours)],
                                           pa.timestamp("ms", tz="UTC")), "v": list(range(hours))})

    HOURLY = ("SELECT toStartOfHour(ts) AS hour, count() AS n, sum(v) AS total FROM raw_t "
              "WHERE ts >= {start} AND ts < {end} GROUP BY hour")
    PIPELINE_REGISTRY = {
        "api_seq": {"pipeline": create_el_pipeline(Hours("api", 0.05),
                                                   create_clickhouse_loader("api_t", time_column="ts"), "api_seq"),
                    "granularity": "hour"},
        "raw": {"pipeline": create_el_pipeline(Hours("raw", 0.0), create_clickhouse_loader("raw_t", time_column="ts"),
                                               "raw")},
        "hourly": {"pipeline": create_sql_pipeline(HOURLY, create_clickhouse_loader("hourly_t", mode="interval",
                                                                                    time_column="hour"), name="hourly"),
                   "granularity": "hour", "depends_on": ["raw"]},
    }
''')

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


class Taker:
    """The second process, restarted every 100 takes: it opens the engine in-process itself, so it
    grows by chdb's 5 threads a take (what the series must not do)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.takes = 0

    def take(self) -> None:
        if self.process is None or self.takes >= 100:
            self.stop()
            self.process = subprocess.Popen([sys.executable, "-c", TAKER], env=self.env, cwd=ROOT, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.takes = 0
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("take\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "took":
            raise SystemExit("the second process could not take the store")
        self.takes += 1

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(60)
            self.process = None


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
        time.sleep(0.02)


def command(mode: str, handovers: int) -> tuple[list[str], str]:
    """The CLI command of ``mode`` (enough hours never to run out before the last take) and the
    pipeline whose finished intervals are counted."""
    last = datetime.now(UTC).date() - timedelta(days=2)
    first = last - timedelta(days=(3 * handovers + 40) // 24 + 1)  # hourly intervals
    if mode == "backfill":
        return ["backfill", "api_seq", "--hourly", "--start", first.isoformat(), "--end", last.isoformat()], "api_seq"
    return ["cron_run", "raw", "--start", first.isoformat(), "--end", last.isoformat()], "hourly"


def measure(mode: str, env: dict[str, str], project: Path, handovers: int, warmup: int,
            share_every: float, minutes: float) -> dict[str, Any]:
    argv, counted = command(mode, handovers)
    job_log = project / "logs" / "jobs" / f"{counted}.log"

    def done() -> int:
        return job_log.read_text().count(" succeeded in ") if job_log.exists() else 0

    series = subprocess.Popen([sys.executable, str(SRC / "main.py"), *argv], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    taker = Taker(env)
    samples: list[dict[str, float]] = []
    try:
        wait_until(lambda: done() >= 1, 600, "the first interval")
        first = (time.monotonic(), done())
        wait_until(lambda: time.monotonic() - first[0] > share_every + 1 and done() >= first[1] + 4, 300, "more")
        alone = (time.monotonic() - first[0], done() - first[1])
        handed = (project / "logs" / "system" / "application.log").read_text().count("Handing the embedded store")
        taking = time.monotonic()
        for turn in range(handovers):
            if samples and time.monotonic() - taking > minutes * 60:
                break
            taker.take()
            then = done()
            wait_until(lambda: done() > then or series.poll() is not None, 300, "one more interval")  # noqa: B023
            if series.poll() is not None:
                raise SystemExit(f"the {mode} ended before the last hand-over")
            samples.append(usage(series.pid))
            if (turn + 1) % 50 == 0:
                print(f"  {mode} hand-over {turn + 1}: {samples[-1]}", flush=True)
        per_handover = (time.monotonic() - taking) / len(samples)
    finally:
        taker.stop()
        series.send_signal(signal.SIGINT)
        series.wait(120)
    warm, end = samples[min(warmup, len(samples)) - 1], samples[-1]
    return {"handovers": len(samples), "warmup": warmup, "handed_over_while_nobody_waited": handed,
            "seconds_per_interval_nobody_waiting": round(alone[0] / alone[1], 3),
            "after_first": samples[0], "after_warmup": warm, "end": end,
            "end_vs_warmup": {k: round(end[k] / warm[k], 3) for k in warm},
            "seconds_per_handover": round(per_handover, 2), "samples": samples}


def run_mode(mode: str, handovers: int, warmup: int, share_every: float, minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"dp-bench-handovers-{mode}-") as tmp:
        project = Path(tmp)
        (project / "pipelines").mkdir()
        (project / "pipelines" / "bench_pipeline.py").write_text(MODULE)
        (project / ".env").write_text("")
        env = env_for(project) | {"STORE_SHARE_EVERY": str(share_every)}
        cli(env, "setup_db")
        return measure(mode, env, project, handovers, warmup, share_every, minutes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handovers", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--modes", default="backfill,cascade", help="backfill, cascade or both (comma-separated)")
    parser.add_argument("--share-every", type=float, default=0.0, help="STORE_SHARE_EVERY of the measured process")
    parser.add_argument("--minutes", type=float, default=float("inf"), help="stop taking after this long per mode")
    args = parser.parse_args()
    # Started in the background by a shell, we (and so our children) would ignore SIGINT: the
    # series is stopped with a Ctrl-C, so give the children the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"backfill", "cascade"}:
        parser.error(f"--modes takes backfill and/or cascade, got {args.modes!r}")
    handovers, warmup = max(args.handovers, 1), max(args.warmup, 1)
    report = {mode: run_mode(mode, handovers, warmup, args.share_every, args.minutes) for mode in modes}
    for mode, r in report.items():
        print(f"{mode}: alone {r['seconds_per_interval_nobody_waiting']:.3f} s per interval, "
              f"{r['handed_over_while_nobody_waited']} hand-overs while nobody waited; "
              f"{r['handovers']} hand-overs to a second process, {r['seconds_per_handover']:.2f} s each "
              "(take + one more interval)")
        for label in ("after_first", "after_warmup", "end"):
            print(f"  {label.replace('_', ' '):13s} {r[label]}")
        print(f"  end / warm-up {r['end_vs_warmup']}")
    out = ROOT / "benchmarks" / "results" / "backfill_handovers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text()) if out.exists() else {}  # (the other mode's last figures stay)
    out.write_text(json.dumps({k: v for k, v in earlier.items() if k in ("backfill", "cascade")} | report,
                              indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
