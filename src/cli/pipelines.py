"""Commands about pipelines: list, cron_run, runs, state."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cli.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, App, cli, pass_app
from cli.output import json_option, print_json
from core.exceptions import DataProcessorError, UsageError
from core.intervals import Interval, day_interval, parse_date, parse_interval

if TYPE_CHECKING:  # pydantic-backed: imported by the commands that use them, not for `help`
    from core.models import RunRecord
    from pipelines.pipeline_registry import PipelineSpec
    from runner.cascade import Outlet

_STATUS_STYLE = {"success": "green", "failed": "bold red", "crashed": "bold red", "running": "cyan"}


def next_run(spec: PipelineSpec, now: datetime | None = None) -> datetime | None:
    """The next time the pipeline's schedule fires (in its time zone, returned in UTC)."""
    if not spec.entry.schedule:
        return None
    from runner.schedule import next_fire, pipeline_zone

    return next_fire(spec.entry.schedule, pipeline_zone(spec), now or datetime.now(UTC))


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _styled(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _history(app: App, reader: Any, *args: Any) -> Any:
    """Read run history; before setup_db (or with the store busy) there is simply none to show."""
    from record.tables import ensure_framework_tables

    try:
        ensure_framework_tables(app.store)
        return reader(app.store, *args)
    except DataProcessorError as exc:
        app.err.print(f"[yellow]warning:[/] run history unavailable: {exc}")
        return None


def replay_spool(app: App) -> None:
    """Runs that could not be recorded (the store was busy) are written first, with their alerts
    (``ops.spooled_runs``); nothing happens when there are none."""
    from ops.spooled_runs import replay_spooled_runs

    replay_spooled_runs(app.store, app.settings, app.registry)


@cli.command("list")
@json_option()
@pass_app
def list_pipelines(app: App, as_json: bool) -> int:
    """List discovered pipelines: schedule, next run, table, last run (and broken modules)."""
    from record.history import last_runs

    reg = app.registry
    last: dict[str, RunRecord] = (_history(app, last_runs) or {}) if reg.pipelines else {}
    if as_json:
        return print_json({
            "pipelines": [{
                "name": s.name, "description": s.entry.description, "schedule": s.entry.schedule,
                "next_run": (n.isoformat() if (n := next_run(s)) else None), "table": s.table_name,
                "source": s.source, "backfillable": s.pipeline.interval_aware, "depends_on": s.entry.depends_on,
                "last_run": last[s.name].model_dump(mode="json") if s.name in last else None,
            } for s in reg.pipelines.values()],
            "broken": [{"source": b.source, "name": b.name, "error": b.error} for b in reg.broken],
        })
    if not reg.pipelines and not reg.broken:
        app.console.print(f"No pipelines found: add a *_pipeline.py module to {app.settings.pipelines_dir}")
        return EXIT_OK
    table = Table(title=f"{len(reg.pipelines)} pipeline(s) in {app.settings.pipelines_dir}", title_justify="left")
    for column in ("name", "description", "schedule", "next run", "table", "depends on", "last run", "status", "rows"):
        table.add_column(column, overflow="fold")
    for spec in reg.pipelines.values():
        run = last.get(spec.name)
        schedule = spec.entry.schedule or "-"
        if spec.entry.timezone:
            schedule += f" ({spec.entry.timezone})"
        table.add_row(spec.name, spec.entry.description, schedule, _when(next_run(spec)), spec.table_name or "-",
                      ", ".join(spec.entry.depends_on) or "-",
                      _when(run.started_at) if run else "never", _styled(run.status) if run else "",
                      f"{run.rows_loaded:,}" if run else "")
    app.console.print(table)
    if reg.broken:
        broken = Table(title="broken (fix these; the pipelines above still run)", title_justify="left")
        broken.add_column("module")
        broken.add_column("error", overflow="fold")
        for b in reg.broken:
            broken.add_row(b.source, b.error)
        app.console.print(broken)
    return EXIT_OK


def resolve_interval(spec: PipelineSpec, date: str | None, start: str | None, end: str | None) -> Interval | None:
    if date and (start or end):
        raise UsageError("use either --date or --start/--end, not both")
    if bool(start) != bool(end):
        raise UsageError("--start and --end go together")
    if date:
        return day_interval(parse_date(date))
    if start and end:
        return parse_interval(start, end)
    return None


@cli.command("cron_run")
@click.argument("name")
@click.option("--date", help="Run for this day (YYYY-MM-DD).")
@click.option("--start", help="Interval start (ISO date or date-time, UTC unless a zone is given).")
@click.option("--end", help="Interval end, exclusive.")
@click.option("--trigger", type=click.Choice(["manual", "cron", "backfill", "scheduler", "upstream"]),
              default="manual", show_default=True, help="Recorded in the run history.")
@click.option("--no-downstream", is_flag=True, help="Do not run the pipelines that depend on this one afterwards.")
@click.option("--force", is_flag=True, help="Run even when an upstream (depends_on) is not complete for the interval.")
@click.option("--if-due", is_flag=True, hidden=True,
              help="Run only if the schedule is due (in the pipeline's zone) at the minute this process started.")
@click.option("--fired-at", "fired_at", hidden=True,
              help="The minute the schedule fired (the scheduler passes it); default for --trigger cron: "
                   "the minute this process started.")
@pass_app
def cron_run(app: App, name: str, date: str | None, start: str | None, end: str | None, trigger: str,
             no_downstream: bool, force: bool, if_due: bool, fired_at: str | None) -> int:
    """Run one pipeline for one data interval (default: the last complete day or hour).

    Fired by a schedule (cron, the scheduler) it runs every complete interval that ended since the
    previous fire instead (see docs/backfill.md). A pipeline with depends_on runs only intervals
    its upstreams are complete for (else exit 1, nothing recorded), unless --force. Afterwards,
    once its locks are released, the pipelines that depend on it run for the intervals it
    completed (unless --no-downstream).
    """
    from ops.cron import resync_after_fire
    from runner.fire import run_intervals, run_scheduled_fire
    from runner.scheduled import manual_interval

    spec = app.registry.get(name)
    if if_due:  # cron entries of pipelines in another time zone fire at candidate times (see runner.schedule)
        from runner.schedule import started_minute_due

        due, message = started_minute_due(spec)
        if not due:
            app.console.print(message)
            return EXIT_OK
    fire = _fire_time(fired_at, trigger)
    replay_spool(app)
    out = outlet(app)
    if fire is not None:
        if date or start or end:
            raise UsageError("--fired-at (or --trigger cron/scheduler) chooses the intervals from the schedule; "
                             "it does not go with --date or --start/--end")
        resync = (lambda: resync_after_fire(app.registry, app.settings)) if trigger == "cron" else None
        return run_scheduled_fire(spec, app.settings, app.store, app.registry, fire, trigger, out, force=force,
                                  downstream=not no_downstream, after_fire=resync)
    interval = resolve_interval(spec, date, start, end)
    if interval is None:
        interval, note = manual_interval(spec)
        if note:
            app.console.print(note)
    return run_intervals(app.settings, app.store, app.registry, [(name, interval)], trigger, out, force=force,
                         downstream=not no_downstream)


def outlet(app: App) -> Outlet:
    """How the runs of a command report: results and progress on stdout, problems on stderr, alerts."""
    from ops.alerts.dispatch import notify_run
    from runner.cascade import Outlet

    return Outlet(say=app.console.print, report=lambda result: _print_result(app, result), on_finish=notify_run,
                  warn=lambda line: app.err.print(line, markup=False, soft_wrap=True))


def _fire_time(fired_at: str | None, trigger: str) -> datetime | None:
    """The fire time of a scheduled run: ``--fired-at``, else the process start for cron/scheduler."""
    if fired_at:
        try:
            moment = datetime.fromisoformat(fired_at.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--fired-at must be an ISO date-time like 2026-03-02T03:00Z, got '{fired_at}'") from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    if trigger in ("cron", "scheduler"):
        from runner.schedule import process_fire_minute

        return process_fire_minute()
    return None


def _print_result(app: App, result: RunRecord) -> int:
    from runner.cascade import result_lines

    first, *rest = result_lines(app.settings, result)
    status, _, text = first.partition(" ")
    if result.status == "success":
        app.console.print(f"[green]{status}[/] {text}")
    else:
        app.err.print(f"[bold red]{status}[/] {text}")
        for line in rest:
            app.err.print(line)
    return int(result.exit_code)


@cli.command("runs")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="How many runs.")
@click.option("--status", type=click.Choice(["running", "success", "failed", "crashed"]), help="Only this status.")
@json_option()
@pass_app
def runs(app: App, name: str | None, limit: int, status: str | None, as_json: bool) -> int:
    """Show recent runs (newest first); runs whose process died are marked crashed."""
    from record.history import list_runs
    from runner.cleanup import reap_dead_runs

    replay_spool(app)
    if _history(app, reap_dead_runs, name) is None:
        return EXIT_FAILED
    records: list[RunRecord] = list_runs(app.store, name, status, limit)
    from audit.results import results_of_runs, summary

    checked = results_of_runs(app.store, [r.run_id for r in records])
    if as_json:
        return print_json([{**r.model_dump(mode="json"), "incomplete": r.incomplete,
                            "checks": summary(checked.get(r.run_id, []))} for r in records])
    if not records:
        app.console.print("No runs recorded" + (f" for '{name}'" if name else "")
                          + (f" with status {status}" if status else ""))
        return EXIT_OK
    table = Table(title="runs, newest first", title_justify="left")
    for column in ("run_id", "pipeline", "interval", "trigger", "status", "started", "duration", "rows", "checks",
                   "error"):
        table.add_column(column, overflow="fold")
    for r in records:
        interval = Interval(r.interval_start.replace(tzinfo=UTC), r.interval_end.replace(tzinfo=UTC)).label
        status_text = _styled(r.status) + (f" ({r.reason})" if r.reason and r.reason != "error" else "")
        if r.incomplete:  # started before its interval ended: loaded part of it at most
            status_text += " [yellow](incomplete)[/]"
        table.add_row(r.run_id, r.pipeline, interval, r.trigger, status_text, _when(r.started_at),
                      f"{r.duration_seconds:.1f} s" if r.finished_at else "", f"{r.rows_loaded:,}",
                      summary(checked.get(r.run_id, [])), r.error[:300])
    app.console.print(table)
    return EXIT_OK


@cli.command("state")
@click.argument("name")
@click.option("--reset", is_flag=True, help="Forget the pipeline's state (its next run starts from scratch).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required with --reset when not interactive).")
@pass_app
def state(app: App, name: str, reset: bool, yes: bool) -> int:
    """Show (or --reset) a pipeline's incremental state, e.g. its cursor."""
    from record.state import read_state_rows, reset_state
    from record.tables import ensure_framework_tables

    app.registry.get(name)
    ensure_framework_tables(app.store)
    if reset:
        if not yes:
            if not sys.stdin.isatty():
                app.err.print("error: --reset forgets the pipeline's cursor; not on a terminal, so pass --yes")
                return EXIT_USAGE
            click.confirm(f"Forget the state of '{name}' (its next run re-reads from the start)?", abort=True)
        count = reset_state(app.store, name)
        app.console.print(f"Reset {count} state value(s) of '{name}'")
        return EXIT_OK
    rows = read_state_rows(app.store, name)
    if not rows:
        app.console.print(f"'{name}' has no state")
        return EXIT_OK
    table = Table(title=f"state of {name}", title_justify="left")
    for column in ("key", "value", "updated", "run_id"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["key"], row["value"], _when(row["updated"]), row["run_id"])
    app.console.print(table)
    return EXIT_OK
