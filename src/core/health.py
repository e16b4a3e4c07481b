"""The leaf health checks behind ``./run.sh check`` (Python, packages, directories, store,
migrations): each returns one line a person can act on. :func:`ops.health.run_checks` combines
them with the operational checks of the layers above."""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from core.config import PROJECT_ROOT, Settings, unwritable_directory
from core.exceptions import DataProcessorError
from core.topology import detect

Status = Literal["ok", "warn", "fail"]
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return CheckResult("python", "fail", f"Python {version}; 3.11 or newer is required")
    return CheckResult("python", "ok", f"Python {version} ({sys.executable})")


def _pins(requirements: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def check_dependencies(requirements: Path = PROJECT_ROOT / "requirements.txt") -> CheckResult:
    problems = []
    pins = _pins(requirements)
    for name, wanted in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} missing")
            continue
        if installed != wanted:
            problems.append(f"{name} {installed} (requirements.txt pins {wanted})")
    if problems:
        return CheckResult("dependencies", "fail",
                           "; ".join(problems) + " -- run ./run.sh again or pip install -r requirements.txt")
    return CheckResult("dependencies", "ok", f"{len(pins)} pinned packages installed")


def check_directories(settings: Settings) -> list[CheckResult]:
    results = []
    for var, path in (("LOG_DIR", settings.log_dir), ("DATA_DIR", settings.data_dir), ("RUN_DIR", settings.run_dir)):
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
                pass
        except OSError as exc:
            results.append(CheckResult(var.lower(), "fail", f"{var} {path} is not writable ({exc.strerror})"))
        else:
            results.append(CheckResult(var.lower(), "ok", f"{path} writable"))
    return results


def check_store(settings: Settings) -> list[CheckResult]:
    from core.store import Store

    store = Store(settings, linger=0)
    try:
        version = store.server_version()
        exists = store.database_exists()
        where = store.description  # after a query: the project's running clickhouse_server is named as such
        topology = detect(store)
    except DataProcessorError as exc:
        return [CheckResult("store", "fail", str(exc))]
    except OSError as exc:  # DATA_DIR or RUN_DIR cannot be written: a FAIL line, not a traceback
        problem = unwritable_directory(exc, settings)
        if problem is None:
            raise
        return [CheckResult("store", "fail", str(problem))]
    finally:
        store.close()
    results = [CheckResult("store", "ok", f"ClickHouse {version}, {where}")]
    problems = topology.problems()
    if problems:
        results += [CheckResult("topology", "fail", problem) for problem in problems]
    else:
        every = ", every node answers" if topology.kind == "cluster" else ""
        results.append(CheckResult("topology", "ok", topology.describe() + every))
    if exists:
        results.append(CheckResult("database", "ok", f"database '{settings.database}' exists"))
    else:
        results.append(CheckResult("database", "warn",
                                   f"database '{settings.database}' not created yet: run ./run.sh setup_db"))
    return results


def check_migrations(settings: Settings) -> CheckResult:
    """Pending migrations warn ("run ./run.sh migrate"); failed or edited applied ones fail."""
    from core.migrations import Migrator, summarize
    from core.store import Store

    store = Store(settings, linger=0)
    try:
        status, detail = summarize(Migrator(settings, store).status())
    except DataProcessorError as exc:
        return CheckResult("migrations", "fail", str(exc))
    finally:
        store.close()
    return CheckResult("migrations", status, detail)  # type: ignore[arg-type]


def healthy(results: list[CheckResult]) -> bool:
    return all(r.status != "fail" for r in results)
