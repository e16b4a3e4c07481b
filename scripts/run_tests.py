"""Test runner behind ``./run.sh test [unit|integration|performance] [--fast] [--server] [pytest args]``.

``--server`` (or ``DP_TEST_SERVER=1``) runs the tests against a real ClickHouse server process
started for the session (``clickhouse_server``), each test in its own database; results then go
to ``tests/results/server/``.

Runs pytest with coverage and writes, under ``tests/results/``:
``junit.xml``, ``coverage/`` (HTML), ``coverage.json`` and ``latest_test_results.json``
(counts, duration, failing test ids). The exit code is pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tests" / "results"
SUITES = ("unit", "integration", "performance")


def summarize(junit: Path, exit_code: int, duration: float, command: list[str]) -> dict[str, object]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None:
                counts["failed"] += 1
                failing.append(test_id)
            elif case.find("error") is not None:
                counts["errors"] += 1
                failing.append(test_id)
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exit_code": exit_code,
        "duration_seconds": round(duration, 2),
        **counts,
        "total": sum(counts.values()),
        "failing": failing,
        "command": command,
    }


def main(argv: list[str]) -> int:
    args = list(argv)
    targets = []
    while args and args[0] in SUITES:
        targets.append(f"tests/{args.pop(0)}")
    marker = []
    if "--fast" in args:
        args.remove("--fast")
        marker = ["-m", "not slow"]
    env = dict(os.environ)
    results = RESULTS
    if "--server" in args:
        args.remove("--server")
        env["DP_TEST_SERVER"] = "1"
    if env.get("DP_TEST_SERVER") == "1":
        results = RESULTS / "server"
    results.mkdir(parents=True, exist_ok=True)
    junit = results / "junit.xml"
    junit.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pytest",
        *(targets or ["tests"]),
        *marker,
        f"--junitxml={junit}",
        "--cov=src", "--cov=migrations", "--cov=scripts",
        f"--cov-report=html:{results / 'coverage'}",
        f"--cov-report=json:{results / 'coverage.json'}",
        "--cov-report=term:skip-covered",
        *args,
    ]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    started = time.monotonic()
    exit_code = subprocess.call(command, cwd=ROOT, env=env)
    summary = summarize(junit, exit_code, time.monotonic() - started, command[1:])
    (results / "latest_test_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, "
          f"{summary['skipped']} skipped in {summary['duration_seconds']} s -> {results.relative_to(ROOT)}/",
          file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
