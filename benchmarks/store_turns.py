"""A long-running process handing the embedded store over, turn after turn: does it stay flat?

    .venv/bin/python benchmarks/store_turns.py [--turns 2000] [--warmup 20] [--inprocess-turns 40]
                                               [--clients 8] [--seconds 60] [--page-turns 200]
                                               [--server-turns 500] [--scheduler-fires 100]

A fresh temporary project (own DATA_DIR, embedded engine, one MergeTree table with rows). Then:

1. **Turns.** This process reads the store (``SELECT count()`` of the table) through a
   :class:`core.store.Store`, releases it, and a *second process* really takes the store (opens
   the engine, reads, closes) before the next turn: the store is never kept open. Two ways:

   - ``child turns`` (``Store(turns=True)``, what the status page uses): each turn is a child
     process's (``core/store_child.py``), for ``--turns`` turns;
   - ``in-process`` (``Store()``, a short command's way): the engine opened in this process, for
     ``--inprocess-turns`` turns (the baseline: chdb leaves ~5 threads behind per open).

   Threads, descriptors (``/proc/self``) and RSS of this process after ``--warmup`` turns and at
   the end, and the seconds per turn.

2. **8 clients on a busy store.** A real ``./run.sh ui`` process; a run-like process takes the
   store for 0.5 s every second; ``--clients`` threads request ``/`` back to back for
   ``--seconds``. Latency p50/p99/max and the share of answers that were the last snapshot
   (store busy); the same clients on an idle store are the baseline.

3. **The real processes.** ``--page-turns``: a real ``./run.sh ui``; each turn one ``/metrics``
   request, then the second process takes the store (the page's turn ends, its next request is a
   new turn). ``--server-turns``: a real ``./run.sh clickhouse_server`` holds the store; each turn
   a long-lived client process opens a :class:`core.store.Store` (which finds the server), reads,
   closes. Threads, descriptors and RSS of the page, the server and the client (``/proc``) after
   ``--warmup`` turns and at the end. ``--scheduler-fires``: a real ``./run.sh scheduler`` (a
   minute lasts 3 s) fires a pipeline every minute (each fire a child process); after each fire
   the second process takes the store; the scheduler's figures and whether chdb is loaded in it.
   (A backfill and a cascade: ``backfill_handovers.py``.)

Writes ``benchmarks/results/store_turns.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# The second process: on each line of stdin, take the store (engine opened in-process), read,
# release, answer. ``hold`` seconds keeps it for that long (a run between batches).
TAKER = '''
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from core.config import Settings
from core.store import Store
store = Store(Settings(_env_file=None, data_dir=Path(sys.argv[2]), clickhouse_host=None, clickhouse_url=None), linger=0)
for line in sys.stdin:
    with store.session():
        store.query_rows("SELECT count() FROM data_warehouse.turns_t")
        time.sleep(float(line))
    store.close()
    print("done", flush=True)
'''


def usage(pid: int | None = None) -> dict[str, float]:
    pid = pid or os.getpid()
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": round(rss / 1024, 1)}


class Taker:
    """The second process (restarted every 100 takes: it opens the engine in-process itself)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[str] | None = None
        self.takes = 0

    def take(self, hold: float = 0.0) -> None:
        if self.process is None or self.takes >= 100:
            self.stop()
            self.process = subprocess.Popen([sys.executable, "-c", TAKER, str(ROOT / "src"), str(self.data_dir)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                            stderr=subprocess.DEVNULL)  # its "waiting for the store" lines
            self.takes = 0
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{hold}\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "done"
        self.takes += 1

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin
            self.process.stdin.close()
            self.process.wait(60)
            self.process = None


def turns(settings: object, taker: Taker, count: int, warmup: int, child: bool) -> dict[str, object]:
    from core.store import Store

    store = Store(settings, linger=0, turns=child)  # type: ignore[arg-type]
    warm: dict[str, float] = {}
    started = time.monotonic()
    for turn in range(count):
        if turn == warmup:
            time.sleep(1.0)  # the last child's exit
            warm, started = usage(), time.monotonic()
        with store.session():
            store.query_rows("SELECT count() FROM data_warehouse.turns_t")
        store.close()
        taker.take()
        if turn and turn % 250 == 0:
            print(f"  {'child turns' if child else 'in-process'} turn {turn}: {usage()}", flush=True)
    seconds = (time.monotonic() - started) / max(count - warmup, 1)
    time.sleep(1.0)
    end = usage()
    if store._child is not None:
        store._child.shutdown()
    return {"turns": count, "warmup": warmup, "after_warmup": warm, "end": end, "seconds_per_turn": round(seconds, 3)}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def start_page(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A real ``./run.sh ui`` process and its URL."""
    ui = subprocess.Popen([sys.executable, str(ROOT / "src" / "main.py"), "ui", "--port", "0"], env=env,
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    assert ui.stderr is not None
    url = ""
    while not url:
        line = ui.stderr.readline()
        if not line:
            raise RuntimeError("the status page did not start")
        found = re.search(r"http://\S+?:(\d+)/ ", line)
        url = f"http://127.0.0.1:{found.group(1)}/" if found else ""
    threading.Thread(target=ui.stderr.read, daemon=True).start()
    return ui, url


def flat(samples: list[dict[str, float]], warmup: int) -> dict[str, object]:
    """The figures after ``warmup`` turns and at the end, and end / warm-up."""
    warm, end = samples[min(warmup, len(samples)) - 1], samples[-1]
    return {"turns": len(samples), "warmup": warmup, "after_warmup": warm, "end": end,
            "end_vs_warmup": {k: round(end[k] / warm[k], 3) for k in warm}}


def page_turns(env: dict[str, str], data_dir: Path, count: int, warmup: int) -> dict[str, object]:
    import httpx

    ui, url = start_page(env)
    taker = Taker(data_dir)
    samples = []
    started = time.monotonic()
    try:
        for turn in range(count):
            assert httpx.get(url + "metrics", timeout=120).status_code == 200
            taker.take()  # the second process has the store: the page's next request is a new turn
            samples.append(usage(ui.pid))
            if (turn + 1) % 100 == 0:
                print(f"  page turn {turn + 1}: {samples[-1]}", flush=True)
    finally:
        taker.stop()
        ui.terminate()
        ui.wait(30)
    return flat(samples, warmup) | {"seconds_per_turn": round((time.monotonic() - started) / count, 3)}


SERVER_CLIENT = '''
import os, sys
sys.path.insert(0, sys.argv[1])
from core.config import load_settings
from core.store import Store
settings = load_settings()
for line in sys.stdin:
    store = Store(settings, linger=0)
    store.query_rows("SELECT count() FROM data_warehouse.turns_t")
    store.close()
    print("done", flush=True)
'''


def server_turns(env: dict[str, str], count: int, warmup: int) -> dict[str, object]:
    server = subprocess.Popen([sys.executable, str(ROOT / "src" / "main.py"), "clickhouse_server", "--port", "0",
                               "--tcp-port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, stdin=subprocess.DEVNULL)
    assert server.stdout is not None
    while not server.stdout.readline().startswith("ready "):
        if server.poll() is not None:
            raise RuntimeError("clickhouse_server did not start")
    client = subprocess.Popen([sys.executable, "-c", SERVER_CLIENT, str(ROOT / "src")], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert client.stdin is not None and client.stdout is not None
    on_server, on_client = [], []
    started = time.monotonic()
    try:
        for _ in range(count):
            client.stdin.write("turn\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == "done", "the client could not use the server"
            on_server.append(usage(server.pid))
            on_client.append(usage(client.pid))
    finally:
        client.stdin.close()
        client.wait(60)
        server.terminate()
        server.wait(60)
    return {"server": flat(on_server, warmup), "client": flat(on_client, warmup),
            "seconds_per_turn": round((time.monotonic() - started) / count, 3)}


SCHEDULED = '''
import pyarrow as pa
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

class Tick(Extractor):
    """Not interval-aware: every fire runs (reads "now")."""
    interval_aware = False
    def extract(self, context):
        yield pa.table({"ts": pa.array([context.start], pa.timestamp("ms", tz="UTC")), "v": [1]})

PIPELINE_REGISTRY = {"tick": {"pipeline": create_el_pipeline(Tick("tick"), create_clickhouse_loader(
    "tick_t", time_column="ts"), "tick"), "schedule": "* * * * *"}}
'''


def scheduler_fires(env: dict[str, str], data_dir: Path, count: int, warmup: int) -> dict[str, object]:
    (Path(env["PIPELINES_DIR"]) / "tick_pipeline.py").write_text(SCHEDULED)
    job_log = Path(env["LOG_DIR"]) / "jobs" / "tick.log"

    def done() -> int:
        return job_log.read_text().count(" succeeded in ") if job_log.exists() else 0

    scheduler = subprocess.Popen([sys.executable, str(ROOT / "src" / "main.py"), "scheduler", "--tick", "3"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    taker = Taker(data_dir)
    samples = []
    try:
        for fire in range(count):
            then, deadline = done(), time.monotonic() + 300
            while done() <= then:
                if time.monotonic() > deadline or scheduler.poll() is not None:
                    raise RuntimeError("the scheduler did not fire")
                time.sleep(0.05)
            taker.take()  # between two fires the second process has the store
            samples.append(usage(scheduler.pid))
            if (fire + 1) % 50 == 0:
                print(f"  scheduler fire {fire + 1}: {samples[-1]}", flush=True)
        chdb = "chdb" in Path(f"/proc/{scheduler.pid}/maps").read_text()
    finally:
        taker.stop()
        scheduler.terminate()
        scheduler.wait(120)
    return flat(samples, warmup) | {"chdb_loaded": chdb}


def clients(env: dict[str, str], data_dir: Path, count: int, seconds: float, busy: bool) -> dict[str, object]:
    import httpx

    ui, url = start_page(env)
    httpx.get(url, timeout=60)  # the first snapshot
    stop = threading.Event()
    taker = Taker(data_dir)
    times: list[float] = []
    stale = [0]

    def hog() -> None:
        while not stop.is_set():
            taker.take(0.5)
            stop.wait(0.5)

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                started = time.monotonic()
                page = http.get(url)
                times.append(time.monotonic() - started)
                stale[0] += "store busy" in page.text or page.status_code == 503

    threads = [threading.Thread(target=client) for _ in range(count)] + ([threading.Thread(target=hog)] if busy else [])
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    taker.stop()
    ui.terminate()
    ui.wait(30)
    return {"requests": len(times), "p50": round(percentile(times, 0.5), 3), "p99": round(percentile(times, 0.99), 3),
            "max": round(max(times), 3), "snapshots": stale[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--inprocess-turns", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--page-turns", type=int, default=200)
    parser.add_argument("--server-turns", type=int, default=500)
    parser.add_argument("--scheduler-fires", type=int, default=100)
    args = parser.parse_args()

    from core.config import Settings

    with tempfile.TemporaryDirectory(prefix="dp-bench-turns-") as tmp:
        data_dir = Path(tmp) / "data"
        (Path(tmp) / "pipelines").mkdir()
        (Path(tmp) / ".env").write_text("")
        settings = Settings(_env_file=None, data_dir=data_dir,  # type: ignore[call-arg]
                            clickhouse_host=None, clickhouse_url=None)
        setup = ("import chdb; c = chdb.connect('file:{}'); c.query('CREATE DATABASE data_warehouse'); "
                 "c.query('CREATE TABLE data_warehouse.turns_t (id Int64) ENGINE = MergeTree ORDER BY id'); "
                 "c.query('INSERT INTO data_warehouse.turns_t SELECT number FROM numbers(1000)'); c.close()")
        subprocess.run([sys.executable, "-c", setup.format(settings.store_path)], check=True)
        taker = Taker(data_dir)
        results: dict[str, object] = {}
        try:
            # Child turns first: the in-process baseline leaves its threads in this process.
            results["child turns"] = turns(settings, taker, args.turns, min(args.warmup, args.turns // 2), True)
            results["in-process"] = turns(settings, taker, args.inprocess_turns,
                                          min(args.warmup, args.inprocess_turns // 2), False)
        finally:
            taker.stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKHOUSE_")}
        env.update(ENV_FILE=str(Path(tmp) / ".env"), DATA_DIR=str(data_dir), LOG_DIR=str(Path(tmp) / "logs"),
                   RUN_DIR=str(Path(tmp) / "run"), PIPELINES_DIR=str(Path(tmp) / "pipelines"), UI_PASSWORD="")
        results["clients, idle store"] = clients(env, data_dir, args.clients, args.seconds / 2, busy=False)
        results["clients, busy store"] = clients(env, data_dir, args.clients, args.seconds, busy=True)
        if args.page_turns:
            results["page turns"] = page_turns(env, data_dir, args.page_turns, min(args.warmup, args.page_turns))
        if args.server_turns:
            results["local server turns"] = server_turns(env, args.server_turns,
                                                         min(args.warmup, args.server_turns))
        if args.scheduler_fires:
            results["scheduler fires"] = scheduler_fires(env, data_dir, args.scheduler_fires,
                                                         min(args.warmup, args.scheduler_fires))

    for name in ("child turns", "in-process"):
        r: Any = results[name]
        print(f"{name:12s} {r['turns']:5d} turns: after {r['warmup']} {r['after_warmup']}  end {r['end']}  "
              f"{r['seconds_per_turn']} s/turn")
    for name in ("clients, idle store", "clients, busy store"):
        r = results[name]
        print(f"{args.clients} {name}: {r['requests']} requests, p50 {r['p50']} s, p99 {r['p99']} s, "
              f"max {r['max']} s, {r['snapshots']} answered from the snapshot")
    if "page turns" in results:
        r = results["page turns"]
        print(f"page (./run.sh ui) {r['turns']} turns: after {r['warmup']} {r['after_warmup']}  end {r['end']}  "
              f"end / warm-up {r['end_vs_warmup']}  {r['seconds_per_turn']} s/turn")
    if "local server turns" in results:
        r = results["local server turns"]
        for side in ("server", "client"):
            print(f"local server, {side} {r[side]['turns']} turns: after {r[side]['warmup']} "
                  f"{r[side]['after_warmup']}  end {r[side]['end']}  end / warm-up {r[side]['end_vs_warmup']}")
    if "scheduler fires" in results:
        r = results["scheduler fires"]
        print(f"scheduler {r['turns']} fires: after {r['warmup']} {r['after_warmup']}  end {r['end']}  "
              f"end / warm-up {r['end_vs_warmup']}  chdb loaded: {r['chdb_loaded']}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "store_turns.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
