"""Operational checks for ``./run.sh check``: pipeline modules, the cron block, data freshness,
failing data checks.

:func:`run_checks` is the one list of checks: core's leaf checks (Python, packages, directories,
store, migrations), then these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from core import health
from core.config import Settings, env_file_path, load_settings
from core.exceptions import DataProcessorError
from core.health import CheckResult
from core.models import RunRecord
from ops.discovery import get_registry
from pipelines.pipeline_registry import PipelineSpec, Registry

if TYPE_CHECKING:
    from core.store import Store

FRESHNESS_STORE_WAIT = 10.0  # seconds check waits for a busy embedded store before giving up


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


def freshness_limit(spec: PipelineSpec, now: datetime) -> tuple[datetime, str]:
    """The oldest acceptable start of the last successful run, and how it was derived.

    Default: two schedule periods before now, the period being the gap between the schedule's
    last two fire times (croniter, in the pipeline's zone), so one missed or failed run is
    tolerated and two are not; ``freshness_hours`` overrides it.
    """
    if spec.entry.freshness_hours:
        hours = spec.entry.freshness_hours
        return now - timedelta(hours=hours), f"freshness_hours {hours:g}"
    from croniter import croniter

    from core.validators import cron_expression
    from runner.schedule import pipeline_zone

    zone = pipeline_zone(spec)
    fires = croniter(cron_expression(spec.entry.schedule or ""), now.astimezone(zone))
    last = fires.get_prev(datetime)
    period = last - fires.get_prev(datetime)
    return now - 2 * period, f"two periods of '{spec.entry.schedule}' = {_age(2 * period)}"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def _patient_store(settings: Settings) -> Store:
    """A store that waits at most FRESHNESS_STORE_WAIT for a busy embedded engine, then gives up."""
    from core.store import Store

    return Store(settings.model_copy(update={"store_lock_timeout": min(settings.store_lock_timeout,
                                                                       FRESHNESS_STORE_WAIT)}), linger=0)


FAILED_STATES = ("failed", "crashed")
STREAK_LIMIT = 10  # newest runs per pipeline looked at for a failure streak


@dataclass
class History:
    """What check reads from the run history in one visit to the store."""

    last_success: dict[str, Any]  # pipeline -> its last (complete) success: a run or a coverage row
    failures: dict[str, list[RunRecord]]  # pipeline -> its newest runs while they are failures


def _read_history(settings: Settings, registry: Registry) -> History | None:
    """The run history in one visit to the store; None when there is no database yet."""
    from record.coverage import last_loads
    from record.history import last_success, recent_runs
    from record.tables import ensure_framework_tables

    store = _patient_store(settings)
    try:
        with store.session():  # one engine open for all the queries (each open reads every table's parts)
            if not store.database_exists():
                return None
            ensure_framework_tables(store)
            newest: dict[str, list[RunRecord]] = {}
            for run in recent_runs(store, STREAK_LIMIT):
                if run.status != "running":
                    newest.setdefault(run.pipeline, []).append(run)
            failures = {name: list(takewhile(lambda r: r.status in FAILED_STATES, runs))
                        for name, runs in newest.items()}
            last: dict[str, Any] = last_success(store)
            # Interval-aware pipelines: what the coverage remembers (it outlives the run history).
            last |= {name: load for name, load in last_loads(store).items()
                     if name in registry.pipelines and registry.pipelines[name].pipeline.interval_aware}
            return History(last, {name: runs for name, runs in failures.items() if runs})
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


def check_freshness(registry: Registry, history: History, now: datetime | None = None) -> list[CheckResult]:
    """Per scheduled pipeline: its last success is recent enough (see :func:`freshness_limit`)."""
    specs = [s for s in registry.pipelines.values() if s.entry.schedule and s.entry.enabled]
    now = now or datetime.now(UTC)
    results = []
    for spec in sorted(specs, key=lambda s: s.name):
        name = f"fresh:{spec.name}"
        limit, rule = freshness_limit(spec, now)
        run = history.last_success.get(spec.name)
        if run is None:
            results.append(CheckResult(name, "warn", f"never ran successfully (freshness: {rule})"))
            continue
        started = run.started_at.replace(tzinfo=UTC) if run.started_at.tzinfo is None else run.started_at
        if started < limit:
            results.append(CheckResult(
                name, "fail", f"stale: last success {started:%Y-%m-%d %H:%M} UTC ({_age(now - started)} ago, "
                              f"run {run.run_id}); expected one since {limit:%Y-%m-%d %H:%M} UTC (freshness: {rule}); "
                              f"see ./run.sh runs {spec.name}"))
        else:
            results.append(CheckResult(name, "ok", f"last success {_age(now - started)} ago "
                                                   f"({started:%Y-%m-%d %H:%M} UTC, {run.rows_loaded:,} rows)"))
    return results


def check_data_checks(settings: Settings) -> list[CheckResult]:
    """One line per pipeline whose latest checked run had a failing data check (``./run.sh checks``)."""
    from audit.results import latest_by_pipeline, summary

    store = _patient_store(settings)
    try:
        if not store.database_exists():
            return []
        latest = latest_by_pipeline(store)
    except DataProcessorError as exc:
        return [CheckResult("data checks", "warn", f"results unavailable: {exc}")]
    finally:
        store.close()
    results = []
    for pipeline, found in sorted(latest.items()):
        if any(r.status != "pass" for r in found):
            results.append(CheckResult(f"checks:{pipeline}", "warn",
                                       f"{summary(found)} (run {found[0].run_id}; ./run.sh checks {pipeline})"))
    return results


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

    return results + [check_failed_runs(registry, history), *check_freshness(registry, history),
                      *check_materialized_views(registry, settings), *check_data_checks(settings)]


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
    results.extend(store_results)
    if store_results[0].status == "ok":
        results.append(health.check_migrations(settings))
    results.extend(operations_checks(settings, store_ok=all(r.status != "fail" for r in store_results)))
    return results, settings
