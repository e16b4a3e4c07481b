"""A project with real runs and a running status page, shared by the UI tests.

The project is built once per test module (runs take seconds): its own DATA_DIR, LOG_DIR and
PIPELINES_DIR in a temporary directory, every other framework variable cleared, the CLI in new
processes. ``UiServer`` starts ``./run.sh ui --port 0`` and reads its address from start-up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from conftest import _FRAMEWORK_VARS, ROOT, SRC, cli_env

MODULE = textwrap.dedent('''
    import os, time
    from datetime import timedelta
    import pyarrow as pa
    from audit import row_count
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Days(Extractor):
        """6 rows per day; fails on FAIL_DAY; sleeps SLOW_SECONDS (outside the store) when set."""
        interval_aware = True
        def extract(self, context):
            if context.start_date == os.environ.get("FAIL_DAY"):
                raise ValueError("bad input <script>alert('x')</script> for " + context.start_date)
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            ts = [context.start + timedelta(hours=4 * i) for i in range(6)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(6))})

    class Snap(Extractor):
        """The same 3 rows every run: a replace pipeline, its runs own no interval."""
        def extract(self, context):
            yield pa.table({"v": [1, 2, 3]})

    def loader(table):
        return create_clickhouse_loader(table, time_column="ts")

    PIPELINE_REGISTRY = {
        "days": {"pipeline": create_el_pipeline(Days(), loader("days_t"), "days"), "schedule": "0 2 * * *",
                 "description": "six rows a day & <b>not bold</b>"},
        "flaky": {"pipeline": create_el_pipeline(Days(), loader("flaky_t"), "flaky"), "schedule": "0 3 * * *",
                  "checks": [row_count(max=3, severity="warn", name="few_rows")]},  # fails, publishes
        "never": {"pipeline": create_el_pipeline(Days(), loader("never_t"), "never"), "depends_on": ["days"]},
        "snap": {"pipeline": create_el_pipeline(Snap(), create_clickhouse_loader("snap_t", mode="replace"), "snap"),
                 "schedule": "0 4 * * *"},
    }
''')


def day(offset: int) -> str:
    """The UTC date ``offset`` days before today."""
    return (datetime.now(UTC).date() - timedelta(days=offset)).isoformat()


class Project:
    """A temporary project: the environment of its CLI processes and helpers to run them."""

    def __init__(self, root: Path, **extra: str) -> None:
        self.root = root
        (root / "pipelines").mkdir(parents=True, exist_ok=True)
        (root / "pipelines" / "ui_test_pipeline.py").write_text(MODULE)
        (root / ".env").write_text("")
        self.env = {name: "" for name in _FRAMEWORK_VARS}
        self.env.update({
            "ENV_FILE": str(root / ".env"), "DATA_DIR": str(root / "data"), "LOG_DIR": str(root / "logs"),
            "RUN_DIR": str(root / "run"), "PIPELINES_DIR": str(root / "pipelines"), "STORE_LOCK_TIMEOUT": "60",
            **extra,
        })

    def cli(self, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SRC / "main.py"), *args], env=cli_env({**self.env, **extra}),
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def runs(self) -> list[dict[str, object]]:
        import json

        result = self.cli("runs", "--json", "--limit", "100")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def build_runs(project: Project) -> None:
    """Real runs: 5 days of ``days`` (a backfill, ``never`` left alone), a success (its warn check
    ``few_rows`` failing) then a failure of ``flaky``, one run of ``snap`` (no interval)."""
    done = project.cli("backfill", "--start", day(5), "--end", day(1), "--no-downstream", "days")
    assert done.returncode == 0, done.stdout + done.stderr
    ok = project.cli("cron_run", "flaky", "--date", day(2))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = project.cli("cron_run", "flaky", "--date", day(1), FAIL_DAY=day(1))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    snap = project.cli("cron_run", "snap")
    assert snap.returncode == 0, snap.stdout + snap.stderr


class UiServer:
    """``./run.sh ui`` in a new process; ``url`` once it listens; stopped with SIGTERM."""

    def __init__(self, project: Project, *args: str, **extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SRC / "main.py"), "ui", "--port", "0", *args],
            env=cli_env({**project.env, **extra}), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.startup: list[str] = []
        self.url = ""
        deadline = time.monotonic() + 60
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.startup.append(line.rstrip())
            found = re.search(r"http://(\S+?)/ ", line)
            if found:
                host, _, port = found.group(1).rpartition(":")
                self.url = f"http://127.0.0.1:{port}"
            if line.startswith("Ctrl-C"):
                break
        assert self.url, "the status page did not start:\n" + "\n".join(self.startup)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            _, err = self.process.communicate()
        return err
