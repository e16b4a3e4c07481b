"""Test runner behind ``./run.sh test [unit|integration|performance|PATH...] [--fast] [--server] [pytest args]``.

Leading arguments that are not options choose what runs: a suite name (``unit`` is
``tests/unit``), a path (``tests/pipelines``, ``tests/unit/test_config.py::test_x``) or a path
under ``tests/`` (``pipelines`` is ``tests/pipelines``); nothing chosen runs ``tests``. The first
option ends the list: it and everything after it go to pytest unchanged (``--fast`` and
``--server`` are ours wherever they stand).

``--server`` (or ``DP_TEST_SERVER=1``) runs the tests against a real ClickHouse server process
started for the session (``clickhouse_server``), each test in its own database; results then go
to ``<results>/server/``.

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
# TEST_RESULTS_DIR moves the results (the runner's own tests run it without touching tests/results).
RESULTS = Path(os.environ.get("TEST_RESULTS_DIR") or ROOT / "tests" / "results")
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


def display(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


class UsageError(Exception):
    """A test target that names nothing."""


def test_target(arg: str) -> str:
    """The pytest target for one leading argument of ``./run.sh test``."""
    if arg in SUITES:
        return f"tests/{arg}"
    path = arg.split("::", 1)[0]
    for candidate in (Path(path), ROOT / path, ROOT / "tests" / path):
        if candidate.exists():
            return display(candidate.resolve()) + arg[len(path):]
    raise UsageError(f"no test suite or path '{arg}' (suites: {', '.join(SUITES)}; or a path such as "
                     f"tests/pipelines or tests/unit/test_config.py)")


def split_targets(args: list[str]) -> tuple[list[str], list[str]]:
    """(pytest targets from the leading non-option arguments, the remaining pytest arguments)."""
    targets: list[str] = []
    while args and not args[0].startswith("-"):
        targets.append(test_target(args.pop(0)))
    return targets, args


def main(argv: list[str]) -> int:
    args = list(argv)
    fast = "--fast" in args
    server = "--server" in args
    args = [a for a in args if a not in ("--fast", "--server")]
    try:
        targets, args = split_targets(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    marker = []
    if fast:
        marker = ["-m", "not slow"]
    env = dict(os.environ)
    results = RESULTS
    if server:
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
    # Coverage data next to the results: two runs (embedded and --server) may go on at once.
    env.setdefault("COVERAGE_FILE", str(results / ".coverage"))
    started = time.monotonic()
    exit_code = subprocess.call(command, cwd=ROOT, env=env)
    summary = summarize(junit, exit_code, time.monotonic() - started, command[1:])
    (results / "latest_test_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, "
          f"{summary['skipped']} skipped in {summary['duration_seconds']} s -> {display(results)}/",
          file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
