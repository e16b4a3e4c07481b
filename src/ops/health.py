"""Operational checks for ``./run.sh check``: pipeline modules, the cron block, data freshness,
failing data checks.

:func:`run_checks` is the one list of checks: core's leaf checks (Python, packages, directories,
store, migrations), then these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import takewhile
from typing import TYPE_CHECKING

from core import health
from core.config import Settings, env_file_path, load_settings
from core.exceptions import DataProcessorError
from core.health import CheckResult
from core.models import RunRecord
from ops.discovery import get_registry
from pipelines.pipeline_registry import PipelineSpec, Registry
from runner.status import PipelineStatus
from runner.status import age as _age

if TYPE_CHECKING:
    from core.store import Store

FRESHNESS_STORE_WAIT = 10.0  # seconds check waits for a busy embedded store before giving up
#: check's exit codes: the set-up is broken (a FAIL line about Python, config, the store, cron...);
#: the set-up works but the data needs attention (stale data, open failures, failing runs).
EXIT_BROKEN, EXIT_DATA = 1, 3


def check_pipelines(registry: Registry) -> CheckResult:
    if registry.broken:
        detail = "; ".join(b.error for b in registry.broken)
        return CheckResult("pipelines", "fail", f"{len(registry.broken)} broken: {detail}")
    scheduled = sum(1 for s in registry.pipelines.values() if s.entry.schedule and s.entry.enabled)
    return CheckResult("pipelines", "ok", f"{len(registry.pipelines)} pipeline(s) import, {scheduled} scheduled")


def check_cron(registry: Registry, settings: Settings) -> CheckResult:
    from ops import cron

    if cron.crontab_command() is None:
        return CheckResult("cron", "warn", "no crontab command (apt-get install cron), so nothing is scheduled "
                                           "by cron; use ./run.sh scheduler on this host")
    try:
        state = cron.status(registry, settings)
    except DataProcessorError as exc:
        return CheckResult("cron", "fail", str(exc))
    wanted = [name for name, st, _, _ in state.rows if st != "extra" and name not in cron.HOUSEKEEPING]
    if not state.block_installed:
        if not wanted and not state.errors:
            return CheckResult("cron", "ok", "no scheduled pipelines, no cron block")
        return CheckResult("cron", "warn", f"no cron block installed yet for {len(wanted)} scheduled pipeline(s): "
                                           "run ./run.sh setup_cron --all (or use ./run.sh scheduler)")
    problems = [f"{name} {st}" for name, st, _, _ in state.rows if st != "ok"]
    problems += [f"{name}: {error}" for name, error in state.errors.items()]
    if problems:
        return CheckResult("cron", "fail", "cron block out of sync with the pipelines (" + "; ".join(problems)
                           + "): " + state.how_to_sync)
    return CheckResult("cron", "ok", f"cron block in sync: {len(wanted)} pipeline(s)")


def _patient_store(settings: Settings) -> Store:
    """A store that waits at most FRESHNESS_STORE_WAIT for a busy embedded engine, then gives up."""
    from core.store import Store

    return Store(settings.model_copy(update={"store_lock_timeout": min(settings.store_lock_timeout,
                                                                       FRESHNESS_STORE_WAIT)}), linger=0)


FAILED_STATES = ("failed", "crashed")
STREAK_LIMIT = 10  # newest runs per pipeline looked at for a failure streak
OPEN_LISTED = 10  # open failures named per pipeline in check's line (the rest are counted)
#: Check lines about the data rather than the set-up: their FAIL exits with EXIT_DATA, not 1.
DATA_LINES = ("fresh:", "open:", "checks:", "runs")


@dataclass
class History:
    """What check reads from the store in one visit: the status of every pipeline (one source of
    truth, :mod:`runner.status`), the store it read, and the newest runs while they are failures."""

    statuses: dict[str, PipelineStatus]
    failures: dict[str, list[RunRecord]]  # pipeline -> its newest runs while they are failures
    store: str = ""  # where the store was read (the running clickhouse_server named as such)


def _read_history(settings: Settings, registry: Registry) -> History | None:
    """The status and run history in one visit to the store; None when there is no database yet."""
    from record.history import recent_runs
    from record.tables import ensure_framework_tables
    from runner.cleanup import reap_dead_runs
    from runner.status import pipeline_statuses

    store = _patient_store(settings)
    try:
        with store.session():  # one engine open for all the queries (each open reads every table's parts)
            if not store.database_exists():
                return None
            ensure_framework_tables(store)
            # A run whose process is gone is a crash, hence an open failure: say so now, not at
            # the next run (check --alert sends its run_crashed alert, found by its row version).
            reap_dead_runs(store)
            statuses = pipeline_statuses(store, registry.pipelines.values())
            newest: dict[str, list[RunRecord]] = {}
            for run in recent_runs(store, STREAK_LIMIT):
                if run.status != "running":
                    newest.setdefault(run.pipeline, []).append(run)
            failures = {name: list(takewhile(lambda r: r.status in FAILED_STATES, runs))
                        for name, runs in newest.items()}
            return History(statuses, {name: runs for name, runs in failures.items() if runs}, store.description)
    finally:
        store.close()


def check_failed_runs(registry: Registry, history: History) -> CheckResult:
    """Pipelines whose newest runs failed: one failure warns (the next run may fix it), two or
    more in a row fail the check (a schedule that keeps failing is not healthy)."""
    problems, worst = [], "ok"
    names = sorted(set(history.failures) & set(registry.pipelines))
    for name in names:
        runs = history.failures[name]
        last = runs[0]
        count = f"{len(runs)}{'+' if len(runs) >= STREAK_LIMIT else ''}"
        what = "last run failed" if len(runs) == 1 else f"last {count} runs failed"
        error = (last.error or last.status).strip().splitlines()[0][:200]
        problems.append(f"{name}: {what} (newest {last.started_at:%Y-%m-%d %H:%M} UTC, run {last.run_id}: {error})")
        worst = "fail" if len(runs) >= 2 or worst == "fail" else "warn"
    if not problems:
        return CheckResult("runs", "ok", "no pipeline's last run failed")
    hint = f" -- see ./run.sh runs {names[0]}" if len(names) == 1 else " -- see ./run.sh runs NAME"
    return CheckResult("runs", worst, "; ".join(problems) + hint)  # type: ignore[arg-type]


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def freshness_line(spec: PipelineSpec, status: PipelineStatus, now: datetime) -> CheckResult:
    """``fresh:<pipeline>``: its data (or last success) against what its schedule owes by now."""
    name, rule = f"fresh:{spec.name}", status.rule
    mark = status.freshness_mark
    if status.freshness_basis == "data":
        if mark is None:
            return CheckResult(name, "warn", f"no complete interval loaded yet (freshness: {rule})")
        have = f"data loaded up to {_utc(mark)}"
    else:
        if mark is None:
            return CheckResult(name, "warn", f"never ran successfully (freshness: {rule})")
        have = f"last success {_age(now - mark)} ago ({_utc(mark)}; not interval-aware, so freshness is " \
               "the last success)"
    if status.fresh:
        return CheckResult(name, "ok", have)
    owed = f"expected up to {_utc(status.expected_until)}" if status.freshness_basis == "data" else \
        f"expected one since {_utc(status.expected_until)}"  # type: ignore[arg-type]
    upstream = f"; behind because upstream {', '.join(status.behind_upstream)} is behind" \
        if status.behind_upstream else ""
    see = f"./run.sh backfill_list {spec.name}" if status.freshness_basis == "data" else f"./run.sh runs {spec.name}"
    return CheckResult(name, "fail", f"stale: {have}; {owed} (freshness: {rule}){upstream}; see {see}")


def check_freshness(registry: Registry, history: History, now: datetime | None = None) -> list[CheckResult]:
    """Per scheduled pipeline: its data is as recent as its schedule owes (:mod:`runner.status`)."""
    specs = [s for s in registry.pipelines.values() if s.entry.schedule and s.entry.enabled]
    now = now or datetime.now(UTC)
    return [freshness_line(spec, history.statuses[spec.name], now)
            for spec in sorted(specs, key=lambda s: s.name) if spec.name in history.statuses]


def open_failures_line(status: PipelineStatus) -> CheckResult | None:
    """``open:<pipeline>``: its failed intervals not healed nor waived, each with the command that heals it."""
    found = status.open_failures
    if not found:
        return None
    parts = [f"{f.label} ({f.kind}, run {f.run_id}{f', {f.runs} failed runs' if f.runs > 1 else ''}: "
             f"{f.message}) -> {f.heal_command}" for f in found[:OPEN_LISTED]]
    more = f"; and {len(found) - OPEN_LISTED} more (./run.sh backfill_list {status.pipeline})" \
        if len(found) > OPEN_LISTED else ""
    return CheckResult(f"open:{status.pipeline}", "fail",
                       f"{len(found)} open failure(s): " + "; ".join(parts) + more
                       + f"; or to close one for good: {found[0].waive_command}")


def check_open_failures(history: History) -> list[CheckResult]:
    return [line for name in sorted(history.statuses) if (line := open_failures_line(history.statuses[name]))]


def check_data_checks(history: History) -> list[CheckResult]:
    """One line per pipeline with a failing data check on an open failure or its newest checked run."""
    from audit.results import summary

    results = []
    for name in sorted(history.statuses):
        failing = list(history.statuses[name].failing_checks)
        if failing:
            runs = sorted({r.run_id for r in failing})
            results.append(CheckResult(f"checks:{name}", "warn",
                                       f"{summary(failing)} (run {', '.join(runs)}; ./run.sh checks {name})"))
    return results


def exit_code(results: list[CheckResult]) -> int:
    """``check``'s exit code: 1 when the set-up is broken (a FAIL line about it), else
    :data:`EXIT_DATA` when only the data needs attention (stale, open failures), else 0."""
    failing = [r for r in results if r.status == "fail"]
    if any(not r.name.startswith(DATA_LINES) for r in failing):
        return EXIT_BROKEN
    return EXIT_DATA if failing else 0


def operations_checks(settings: Settings, store_ok: bool = True) -> list[CheckResult]:
    """Pipelines, cron, freshness and data checks (the last two need the store: skipped without it)."""
    registry = get_registry(settings.pipelines_dir)
    results = [check_pipelines(registry), check_cron(registry, settings)]
    if not store_ok or not registry.pipelines:
        return results
    scheduled = any(s.entry.schedule and s.entry.enabled for s in registry.pipelines.values())
    try:
        history = _read_history(settings, registry)
    except DataProcessorError as exc:
        return results + [CheckResult("freshness", "warn", f"run history unavailable: {exc}")]
    if history is None:
        if scheduled:
            results.append(CheckResult("freshness", "warn", "no database yet, so no runs: run ./run.sh setup_db"))
        return results
    from ops.materialized_views import check_materialized_views

    return results + [CheckResult("status", "ok", f"read from {history.store}"), check_failed_runs(registry, history),
                      *check_freshness(registry, history), *check_open_failures(history),
                      *check_materialized_views(registry, settings), *check_data_checks(history)]


def check_framework_layout(settings: Settings) -> list[CheckResult]:
    """On a self-managed cluster: the framework tables are replicated (else one history per node)."""
    if not settings.clickhouse_cluster or settings.is_embedded:
        return []
    from core.store import Store
    from ops.cluster_tables import check_layout

    store = Store(settings, linger=0)
    try:
        problem = check_layout(store) if store.database_exists() else None
    except DataProcessorError as exc:
        problem = str(exc)
    finally:
        store.close()
    return [CheckResult("framework tables", "fail" if problem else "ok",
                        problem or f"in the replicated layout of cluster '{settings.clickhouse_cluster}'")]


def run_checks() -> tuple[list[CheckResult], Settings | None]:
    """Every check, in order; a configuration error still reports the checks that need none."""
    results = [health.check_python(), health.check_dependencies()]
    try:
        settings = load_settings()
    except DataProcessorError as exc:
        results.append(CheckResult("config", "fail", str(exc)))
        return results, None
    env_file = env_file_path()
    source = f"environment and {env_file}" if env_file.is_file() else "environment only, no .env file"
    results.append(CheckResult("config", "ok", f"valid ({source})"))
    results.extend(health.check_directories(settings))
    store_results = health.check_store(settings)
    if all(r.status != "fail" for r in store_results):
        store_results += check_framework_layout(settings)
    results.extend(store_results)
    if store_results[0].status == "ok":
        results.append(health.check_migrations(settings))
    results.extend(operations_checks(settings, store_ok=all(r.status != "fail" for r in store_results)))
    return results, settings
