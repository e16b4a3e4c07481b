"""Turning outcomes into alerts: decide (in ClickHouse), release the store, send, record.

Called after a run has finished and recorded its outcome. The decision needs the store; the
sending does not, so the embedded store is released before any channel is contacted (another
process waiting for it is not held up by a slow webhook). A channel that fails is logged and
recorded in ``_dp_alert_log``; nothing here ever raises into the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.config import Settings
from core.exceptions import DataProcessorError
from core.intervals import Interval
from core.logging import get_logger
from core.models import RunRecord
from core.store import Store
from ops.alerts.channels import Channel, configured
from ops.alerts.config import for_pipeline
from ops.alerts.events import AlertEvent, Kind
from ops.alerts.state import decide, read_state, record_delivery
from record.tables import RUNS_TABLE
from runner.status import OpenFailure, failure_kind, pipeline_statuses

log = get_logger("alerts")
ALERT_LISTED = 20  # open failures named in one message (the rest are counted)


def _remind(settings: Settings) -> timedelta | None:
    return timedelta(hours=settings.alert_remind_hours) if settings.alert_remind_hours else None


def send(store: Store | None, channels: list[Channel], events: list[AlertEvent]) -> dict[str, str]:
    """Send every event to every channel; returns channel -> error ('' when delivered). Never raises."""
    if store is not None:
        store.close()  # release the embedded store before talking to the network
    errors: dict[str, str] = {}
    for event in events:
        for channel in channels:
            try:
                channel.send(event)
                errors[channel.name] = ""
                log.info("Alert %s for %s sent to %s", event.kind, event.pipeline, channel.describe())
            except Exception as exc:  # a channel never fails the run
                errors[channel.name] = str(exc)[:500]
                log.warning("Alert %s for %s not delivered: %s", event.kind, event.pipeline, exc)
            if store is not None:
                try:
                    record_delivery(store, event.key, event.pipeline, event.kind, channel.describe(),
                                    errors[channel.name])
                except DataProcessorError as exc:
                    log.warning("Could not record the alert delivery: %s", exc)
    if store is not None:
        store.close()
    return errors


def _condition(store: Store, settings: Settings, event: AlertEvent, firing: bool,
               recovery: AlertEvent | None = None) -> AlertEvent | None:
    """The event to send for this condition's new state, after de-duplication."""
    action = decide(store, event.key, event.pipeline, firing, event.kind, event.run_id, _remind(settings))
    if action == "alert":
        return event
    if action == "reminder":
        event.details["reminder"] = True
        event.summary = f"still failing: {event.summary}"
        return event
    if action == "recovered":
        return recovery
    return None


def notify_run(spec: Any, settings: Settings, store: Store, result: RunRecord) -> None:
    """Alerts for one finished run (not for backfill intervals: a backfill sends one summary).

    The runner's ``on_finish`` hook (``run_pipeline(..., on_finish=notify_run)``): called after the
    run released its locks; it releases the store before sending."""
    if result.trigger == "backfill":
        return
    pipeline_settings = for_pipeline(settings, spec.entry.alerts)
    channels = configured(pipeline_settings) if pipeline_settings else []
    if not channels or pipeline_settings is None:
        return
    from core.logging import attach_job_log, detach, run_context

    job_log = attach_job_log(settings, spec.name)  # deliveries and their failures go to the run's job log
    try:
        with run_context(spec.name, result.run_id):
            try:
                events = _run_events(store, pipeline_settings, spec, result)
            except Exception as exc:  # alerting must never fail a run
                log.warning("Alerts for run %s skipped: %s", result.run_id, exc)
                return
            if events:
                send(store, channels, events)
    finally:
        detach(job_log)


def _crash_events(store: Store, settings: Settings, name: str) -> list[AlertEvent]:
    """Runs of ``name`` marked crashed since its failing condition last changed (or the last day)."""
    key = f"{name}:failing"
    state = read_state(store, key)
    since = state.updated_at if state else datetime.now(UTC) - timedelta(days=1)
    events = []
    # ``version`` is when the row was written, i.e. when the run was found dead.
    for run_id, error in store.query_rows(
            f"SELECT run_id, error FROM {store.table(RUNS_TABLE)} FINAL WHERE pipeline = {{p:String}} "
            "AND status = 'crashed' AND version > {v:UInt64} ORDER BY started_at",
            {"p": name, "v": int(since.timestamp() * 1e9)}):
        crashed = AlertEvent("run_crashed", name, f"run {run_id} crashed: {error}", key=key, run_id=run_id)
        if found := _condition(store, settings, crashed, True):
            events.append(found)
    return events


def open_failures_text(failures: Sequence[OpenFailure]) -> str:
    """``2 open failure(s): 2026-03-10 (check_failed: ...); 2026-03-12 (error: ...)``: one message lists them all."""
    listed = [f"{f.label} ({f.kind}: {f.message[:200]})" for f in failures[:ALERT_LISTED]]
    more = f"; and {len(failures) - ALERT_LISTED} more" if len(failures) > ALERT_LISTED else ""
    return f"{len(failures)} open failure(s): " + "; ".join(listed) + more


def _failing_event(name: str, failures: Sequence[OpenFailure], result: RunRecord | None) -> AlertEvent:
    """The pipeline's failing condition: its open failures, in one message (never one per interval)."""
    newest = max(failures, key=lambda f: f.failed_at)
    kind: Kind = "check_failed" if newest.kind == "check_failed" else "run_failed"
    lead = ""
    if result is not None and result.status != "success":
        lead = f"{result.status} ({failure_kind(result.status, result.reason, result.error)}): {result.error[:1000]}\n"
    details = {"open_failures": [{"interval": f.label, "kind": f.kind, "run_id": f.run_id, "heal": f.heal_command}
                                 for f in failures[:ALERT_LISTED]]}
    return AlertEvent(kind, name, lead + open_failures_text(failures), key=f"{name}:failing",
                      run_id=newest.run_id, interval=newest.label, details=details)


def _run_events(store: Store, settings: Settings, spec: Any, result: RunRecord) -> list[AlertEvent]:
    """The failing condition of a pipeline is "it has open failures" (runner.status): a later day's
    success does not end it, loading (or waiving) the failed intervals does."""
    name = spec.name
    interval = Interval(result.interval_start, result.interval_end).label
    events = _crash_events(store, settings, name)
    failures = pipeline_statuses(store, [spec])[name].open_failures
    if not failures and result.status != "success":  # recorded, but not read back yet (or no interval)
        failures = (OpenFailure(name, result.interval_start, result.interval_end,
                                failure_kind(result.status, result.reason, result.error), result.run_id,
                                result.started_at, result.error[:300]),)
    recovery = AlertEvent("recovered", name, f"run {result.run_id} loaded {interval} ({result.rows_loaded:,} rows): "
                          "no open failures left", key=f"{name}:failing", run_id=result.run_id, interval=interval)
    event = _failing_event(name, failures, result) if failures else recovery
    if found := _condition(store, settings, event, bool(failures), recovery):
        events.append(found)
    if settings.alert_on_warn:
        events.extend(_warn_events(store, settings, name, result.run_id, interval))
    return events


def _warn_events(store: Store, settings: Settings, pipeline: str, run_id: str, interval: str) -> list[AlertEvent]:
    from audit.results import results_of_runs

    events = []
    for result in results_of_runs(store, [run_id]).get(run_id, []):
        if result.severity != "warn":
            continue
        key = f"{pipeline}:warn:{result.check_name}"
        warned = AlertEvent("check_warned", pipeline, f"check {result.check_name}: {result.detail}", key=key,
                            run_id=run_id, interval=interval)
        passed = AlertEvent("recovered", pipeline, f"check {result.check_name} passes again", key=key,
                            run_id=run_id, interval=interval)
        if found := _condition(store, settings, warned, result.status != "pass", passed):
            events.append(found)
    return events


def notify_backfill(settings: Settings, store: Store, report: Any) -> None:
    """One summary when a backfill had failed intervals (never one alert per interval)."""
    try:
        channels = configured(settings)
        if not channels or not report.failed:
            return
        lines = []
        for pipeline, tally in report.tallies.items():
            for step, outcome in tally.failed[:20]:
                lines.append(f"{pipeline} {step.interval.label}: {outcome.error[:200]}")
        names = ", ".join(p for p, t in report.tallies.items() if t.failed)
        event = AlertEvent("backfill_failed", names, f"{report.failed} interval(s) failed, {report.ran} ran:\n"
                           + "\n".join(lines), key=f"backfill:{names}", details={"failed": report.failed})
    except Exception as exc:
        log.warning("Backfill alert skipped: %s", exc)
        return
    send(store, channels, [event])


def notify_health(settings: Settings, store: Store, registry: Any, results: list[Any]) -> list[AlertEvent]:
    """``check --alert``: runs found crashed, open failures (alerted once, then reminded every
    ALERT_REMIND_HOURS, recovered when none is left) and stale / fresh-again data (``fresh:<pipeline>``)."""
    from record.tables import ensure_framework_tables
    from runner.cleanup import reap_dead_runs

    freshness = {r.name.removeprefix("fresh:"): r for r in results if r.name.startswith("fresh:")}
    events: list[tuple[list[Channel], AlertEvent]] = []
    try:
        if not store.database_exists():
            return []
        ensure_framework_tables(store)
        reap_dead_runs(store)
        statuses = pipeline_statuses(store, registry.pipelines.values())
        for name, spec in registry.pipelines.items():
            pipeline_settings = for_pipeline(settings, spec.entry.alerts)
            channels = configured(pipeline_settings) if pipeline_settings else []
            if not channels or pipeline_settings is None:
                continue
            found = _crash_events(store, pipeline_settings, name)
            failures = statuses[name].open_failures
            recovered = AlertEvent("recovered", name, "no open failures left (loaded again or waived)",
                                   key=f"{name}:failing")
            failing = _failing_event(name, failures, None) if failures else recovered
            found += filter(None, [_condition(store, pipeline_settings, failing, bool(failures), recovered)])
            if name in freshness:
                result, key = freshness[name], f"{name}:stale"
                stale, fresh = (AlertEvent(kind, name, result.detail, key=key) for kind in ("stale", "fresh"))
                found += filter(None, [_condition(store, pipeline_settings, stale, result.status == "fail", fresh)])
            events.extend((channels, event) for event in found)
    except Exception as exc:  # the health check itself must still report
        log.warning("Health alerts skipped: %s", exc)
    for channels, event in events:
        send(store, channels, [event])
    return [event for _, event in events]


def send_test(settings: Settings, channel: str | None = None) -> dict[str, tuple[str, str]]:
    """Send a test event to every configured channel (or one); channel -> (description, error)."""
    channels = [c for c in configured(settings) if channel in (None, c.name)]
    event = AlertEvent("test", "alert_test", "a test alert from ./run.sh alert_test: this channel works",
                       key="test")
    errors = send(None, channels, [event])
    return {c.name: (c.describe(), errors.get(c.name, "")) for c in channels}
