"""Commands about backfills: backfill, backfill_list, backfill_counts (and the internal backfill_run)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cli.app import EXIT_OK, App, cli, pass_app
from core.exceptions import UsageError
from core.logging import ROOT_LOGGER
from runner import backfill as bf
from runner.intervals import Interval, parse_date

if TYPE_CHECKING:
    from pipelines.pipeline_registry import PipelineSpec

WORKER_STORE_LINGER = 0.1
_ACTION_STYLE = {"run": "green", "skip": "dim"}
_OUTCOME_STYLE = {"success": "green", "failed": "bold red", "crashed": "bold red", "busy": "yellow"}


def split_days_and_jobs(args: Sequence[str]) -> tuple[int | None, list[str]]:
    """``[DAYS] [JOBS]...``: a leading whole number is DAYS, the rest are pipeline names."""
    if args and args[0].lstrip("-").isdigit():
        return int(args[0]), list(args[1:])
    return None, list(args)


@contextmanager
def _quiet_console(app: App) -> Iterator[None]:
    """During a backfill the progress display reports each run: console logs show warnings only."""
    handlers = [h for h in logging.getLogger(ROOT_LOGGER).handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in handlers]
    if not app.debug:
        for handler in handlers:
            handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def _label(step: bf.Step) -> str:
    return f"{step.pipeline} {step.interval.label}"


class _Lines(bf.Listener):
    """Plain lines (not a terminal: cron, CI, pipes)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.total = 0
        self.count = 0

    def started(self, total: int) -> None:
        self.total = total

    def finished(self, step: bf.Step, outcome: bf.Outcome) -> None:
        self.count += 1
        prefix = f"[{self.count}/{self.total}]"
        if outcome.status == "success":
            self.app.console.print(f"{prefix} success {_label(step)}: {outcome.rows_loaded:,} rows loaded "
                                   f"in {outcome.duration_seconds:.2f} s (run {outcome.run_id})")
        else:
            reason = f" ({outcome.reason})" if outcome.reason else ""
            self.app.console.print(f"{prefix} {outcome.status} {_label(step)}{reason}: {outcome.error}"
                                   + (f" (run {outcome.run_id})" if outcome.run_id else ""))


class _Bar(bf.Listener):
    """A live rich progress bar (on a terminal), failures printed above it."""

    def __init__(self, app: App) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.app = app
        self.rows = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=app.console, transient=False,
        )
        self.task: Any = None

    def started(self, total: int) -> None:
        self.task = self.progress.add_task("starting", total=total, rows=0)
        self.progress.start()
        # Warnings logged during the backfill go above the bar, not through it: while the bar
        # is live, sys.stderr is rich's proxy (the handlers still hold the real stderr).
        self.streams = [(h, h.setStream(sys.stderr)) for h in logging.getLogger(ROOT_LOGGER).handlers
                        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]

    def running(self, steps: Sequence[bf.Step]) -> None:
        text = ", ".join(_label(s) for s in steps[:3]) + (f" +{len(steps) - 3}" if len(steps) > 3 else "")
        self.progress.update(self.task, description=text)

    def finished(self, step: bf.Step, outcome: bf.Outcome) -> None:
        self.rows += outcome.rows_loaded
        self.progress.update(self.task, advance=1, rows=self.rows)
        if outcome.status != "success":
            reason = f" ({outcome.reason})" if outcome.reason else ""
            style = _OUTCOME_STYLE.get(outcome.status, "red")
            self.progress.console.print(f"[{style}]{outcome.status}[/] {_label(step)}{reason}: {outcome.error}")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, description="done")
        self.progress.stop()
        for handler, stream in getattr(self, "streams", []):
            if stream is not None:
                handler.setStream(stream)


def _print_plan(app: App, steps: Sequence[bf.Step]) -> None:
    table = Table(title="backfill plan (dry run: nothing was run or changed)", title_justify="left")
    for column in ("pipeline", "interval", "action", "why"):
        table.add_column(column, overflow="fold")
    for step in steps:
        style = _ACTION_STYLE[step.action]
        table.add_row(step.pipeline, step.interval.label, f"[{style}]{step.action}[/]", step.why)
    app.console.print(table)
    runs = sum(1 for s in steps if s.action == "run")
    app.console.print(f"{runs} interval(s) would run, {len(steps) - runs} would be skipped")


def _print_summary(app: App, report: bf.Report) -> None:
    table = Table(title=f"backfill summary ({report.seconds:.1f} s)", title_justify="left")
    for column in ("pipeline", "intervals", "done", "skipped", "failed", "not run", "rows loaded", "failed intervals"):
        table.add_column(column, overflow="fold", justify="right" if column not in ("pipeline", "failed intervals")
                         else "left")
    for name, tally in report.tallies.items():
        failed = ", ".join(f"{step.interval.label} ({outcome.reason or outcome.status})"
                           for step, outcome in tally.failed)
        table.add_row(name, str(tally.planned), str(tally.done), str(tally.skipped),
                      f"[bold red]{len(tally.failed)}[/]" if tally.failed else "0",
                      str(tally.not_run + len(tally.busy)), f"{tally.rows:,}", failed)
    app.console.print(table)
    if report.stopped == "interrupted":
        app.err.print("[yellow]interrupted[/]: the interrupted run was recorded as failed (interrupted) and "
                      "rolled back; run the same command again to resume (done intervals are skipped)")
    elif report.stopped == "killed":
        app.err.print("[yellow]stopped (SIGTERM)[/]: run the same command again to resume")
    elif report.stopped == "failure":
        step, outcome = next(f for t in report.tallies.values() for f in t.failed)
        app.err.print(f"[bold red]stopped at the first failure[/]: {_label(step)} ({outcome.reason}): {outcome.error}")
        app.err.print("fix it and run the same command again (done intervals are skipped), or pass "
                      "--continue-on-error to go on past failed intervals")
    elif report.failed:
        app.err.print(f"[bold red]{report.failed} interval(s) failed[/]; after fixing the cause, the same command "
                      "with --rerun failed retries only those")
    if report.busy:
        busy = [_label(s) for t in report.tallies.values() for s in t.busy]
        app.err.print(f"[yellow]{len(busy)} interval(s) were running in another process and were left to it[/]: "
                      + ", ".join(busy[:10]) + (" ..." if len(busy) > 10 else ""))
    if report.failed:
        app.err.print("details: the job logs in " + str(app.settings.log_dir / "jobs"))


@cli.command("backfill")
@click.argument("days_and_jobs", nargs=-1, metavar="[DAYS] [JOBS]...")
@click.option("--start", help="First day to backfill (YYYY-MM-DD, UTC).")
@click.option("--end", help="Last day to backfill, INCLUSIVE (YYYY-MM-DD; default: yesterday).")
@click.option("--hourly", is_flag=True, help="Run hourly pipelines hour by hour (others still by day).")
@click.option("--rerun", type=click.Choice(["failed", "all"]),
              help="Which intervals to run again: 'failed' only failed or crashed ones; 'all' every one. "
                   "Default: every interval without a successful run.")
@click.option("--force", is_flag=True, help="Same as --rerun all.")
@click.option("--dry-run", is_flag=True, help="Print the plan (pipeline, interval, run/skip and why); change nothing.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Run up to N intervals at once, each in a new process (helps when extraction dominates; "
                   "see docs/backfill.md).")
@click.option("--continue-on-error", is_flag=True, help="Go on past a failed interval (default: stop at it).")
@pass_app
def backfill(app: App, days_and_jobs: tuple[str, ...], start: str | None, end: str | None, hourly: bool,
             rerun: str | None, force: bool, dry_run: bool, parallel: int, continue_on_error: bool) -> int:
    """Run pipelines over past days (default: the 7 complete days before today, UTC), oldest first.

    Without JOBS: every pipeline that supports intervals. Intervals with a successful run are
    skipped, so running the same command again resumes where it stopped.
    Exit codes: 0 all done, 1 an interval failed, 75 an interval was running elsewhere, 130 interrupted.
    """
    days, names = split_days_and_jobs(days_and_jobs)
    if force and rerun and rerun != "all":
        raise UsageError(f"--force means --rerun all; it contradicts --rerun {rerun}")
    policy: bf.Policy = "all" if force else (rerun or "default")  # type: ignore[assignment]
    first, last = bf.day_window(days, parse_date(start, "--start") if start else None,
                                parse_date(end, "--end") if end else None)
    reg = app.registry
    specs = bf.select_pipelines(reg, names)
    if not specs:
        app.console.print("No pipeline can be backfilled" + (":" if reg.pipelines else " (no pipelines found)"))
        for spec in reg.pipelines.values():
            app.console.print(f"  {spec.name}: " + (bf.why_not_backfillable(spec) or "disabled (enabled=False)"))
        return EXIT_OK
    store = app.store
    steps = bf.plan(store, specs, first, last, policy=policy, hourly=hourly, dry_run=dry_run)
    if dry_run:
        _print_plan(app, steps)
        return EXIT_OK
    to_run = sum(1 for s in steps if s.action == "run")
    app.err.print(f"backfill {first}..{last} ({', '.join(s.name for s in specs)}): {to_run} interval(s) to run, "
                  f"{len(steps) - to_run} skipped" + (f", up to {parallel} at a time" if parallel > 1 else ""))
    if parallel > 1 and app.settings.is_embedded and to_run > 1:
        app.err.print("note: the embedded store admits one process at a time, so --parallel pays off only when "
                      "extracting an interval takes seconds (remote APIs, databases); see docs/backfill.md")
    listener: bf.Listener = _Bar(app) if app.console.is_terminal else _Lines(app)
    started = time.monotonic()
    with _quiet_console(app):
        try:
            report = bf.execute(steps, app.settings, store, parallel=parallel, continue_on_error=continue_on_error,
                                listener=listener)
        finally:
            if isinstance(listener, _Bar):
                listener.stop()
    report.seconds = time.monotonic() - started
    _print_summary(app, report)
    return report.exit_code


@cli.command("backfill_worker", hidden=True)
@pass_app
def backfill_worker(app: App) -> int:
    """A worker of a parallel backfill (internal): runs the intervals it reads on stdin."""
    from core.store import Store

    # Sibling workers wait for the embedded store while this one holds it: hand it over 0.1 s
    # after each burst of statements (e.g. while extracting) instead of the default 0.5 s.
    store = Store(app.settings, linger=WORKER_STORE_LINGER)
    return bf.serve_worker(app.settings, app.registry, store)


def _interval_text(interval: Interval | None) -> str:
    return interval.label if interval else "never"


@cli.command("backfill_list")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, bf.MAX_DAYS),
              help="Coverage of the DAYS complete days before today (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def backfill_list(app: App, days: int, as_json: bool) -> int:
    """Pipelines that can be backfilled, and how much of the last --days days they have loaded."""
    reg = app.registry
    first, last = bf.day_window(days, None, None)
    able = [s for s in reg.pipelines.values() if bf.why_not_backfillable(s) is None]
    rows = []
    for spec in able:
        history = bf.read_history(app.store, spec.name, create=False)
        intervals = bf.intervals_for(spec, first, last, hourly=True)
        summary = bf.summarize_coverage(history, intervals)
        rows.append((spec, len(intervals), summary, bf.last_done_interval(history)))
    others = [(s, bf.why_not_backfillable(s)) for s in reg.pipelines.values() if s not in able]
    if as_json:
        click.echo(json.dumps({
            "first_day": first.isoformat(), "last_day": last.isoformat(),
            "pipelines": [{
                "name": spec.name, "granularity": spec.entry.granularity, "table": spec.table_name,
                "enabled": spec.entry.enabled, "intervals": total, "done": s.done, "failed": s.failed,
                "running": s.running, "missing": s.missing,
                "last_done": last_done.label if last_done else None,
            } for spec, total, s, last_done in rows],
            "not_backfillable": [{"name": spec.name, "reason": why} for spec, why in others],
        }, indent=2))
        return EXIT_OK
    if not rows:
        app.console.print("No pipeline can be backfilled" + ("." if others else " (no pipelines found)."))
    else:
        table = Table(title=f"backfillable pipelines: coverage of {first}..{last} ({days} days, UTC)",
                      title_justify="left")
        for column in ("pipeline", "granularity", "table", "intervals", "done", "failed", "missing", "last done"):
            table.add_column(column, overflow="fold", justify="right" if column in ("intervals", "done", "failed",
                                                                                    "missing") else "left")
        for spec, total, s, last_done in rows:
            missing = s.missing + s.running
            table.add_row(
                spec.name + ("" if spec.entry.enabled else " (disabled)"), spec.entry.granularity,
                spec.table_name or "-", str(total), f"[green]{s.done}[/]" if s.done == total else str(s.done),
                f"[bold red]{s.failed}[/]" if s.failed else "0", f"[yellow]{missing}[/]" if missing else "0",
                _interval_text(last_done))
        app.console.print(table)
    if others:
        table = Table(title="not backfillable", title_justify="left")
        table.add_column("pipeline")
        table.add_column("why", overflow="fold")
        for spec, why in others:
            table.add_row(spec.name, why or "")
        app.console.print(table)
    return EXIT_OK


def _count_pipelines(app: App, names: Sequence[str]) -> list[PipelineSpec]:
    reg = app.registry
    if names:
        specs = [reg.get(n) for n in dict.fromkeys(names)]
        for spec in specs:
            if not getattr(spec.pipeline.loader, "table", None):
                raise UsageError(f"Pipeline '{spec.name}' does not load a ClickHouse table "
                                 f"(its loader is {type(spec.pipeline.loader).__name__}): nothing to count")
        return specs
    return [s for s in reg.pipelines.values() if getattr(s.pipeline.loader, "table", None)]


def day_status(rows: int, reported: int | None, has_run: bool, comparable: bool) -> str:
    """ok, no data, mismatch, no run (rows but no successful run recorded) or n/a."""
    if comparable and has_run and reported is not None and reported != rows:
        return "mismatch"
    if rows == 0:
        return "no data"
    if comparable and not has_run:
        return "no run"
    if comparable and reported is None:
        return "n/a"
    return "ok"


_DAY_STYLE = {"ok": "green", "no data": "yellow", "mismatch": "bold red", "no run": "yellow", "n/a": "dim"}


@cli.command("backfill_counts")
@click.argument("days_and_jobs", nargs=-1, metavar="[DAYS] [JOBS]...")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def backfill_counts(app: App, days_and_jobs: tuple[str, ...], as_json: bool) -> int:
    """Rows per day in each pipeline's table (last DAYS complete days, default 7) beside what runs loaded.

    Days with no data, or whose rows differ from what the successful run(s) reported loading,
    are highlighted (only interval-mode tables can be compared: their runs own whole days).
    """
    days, names = split_days_and_jobs(days_and_jobs)
    first, last = bf.day_window(days, None, None)
    specs = _count_pipelines(app, names)
    store = app.store
    result = []
    for spec in specs:
        loader = spec.pipeline.loader
        table_name: str = loader.table  # type: ignore[assignment]
        time_column = getattr(loader, "time_column", None)
        comparable = bool(getattr(loader, "interval_scoped", False))
        total, per_day = bf.table_counts(store, table_name, time_column, first, last)
        reported = bf.reported_rows_by_day(bf.read_history(store, spec.name, create=False), first, last) \
            if comparable else {}
        day_rows = []
        if time_column:
            for day in bf.days_between(first, last):
                rows = per_day.get(day, 0)
                has_run = day in reported
                status = day_status(rows, reported.get(day), has_run, comparable)
                day_rows.append({"date": day.isoformat(), "rows": rows,
                                 "reported": reported.get(day) if comparable else None, "status": status})
        result.append({"pipeline": spec.name, "table": table_name, "time_column": time_column,
                       "mode": getattr(loader, "mode", None), "exists": total is not None,
                       "total_rows": total or 0, "days": day_rows})
    if as_json:
        click.echo(json.dumps({"first_day": first.isoformat(), "last_day": last.isoformat(), "pipelines": result},
                              indent=2))
        return EXIT_OK
    if not result:
        app.console.print("No pipeline loads a ClickHouse table")
        return EXIT_OK
    for item in result:
        head = f"[bold]{item['pipeline']}[/] -> {item['table']}: "
        if not item["exists"]:
            app.console.print(head + "[yellow]table does not exist yet[/] (no run has loaded it)")
            continue
        app.console.print(head + f"{item['total_rows']:,} rows in total")
        if not item["time_column"]:
            app.console.print("  (no time column: rows per day are not known)")
            continue
        table = Table(title_justify="left", show_edge=False)
        for column in ("day", "rows in table", "rows loaded by runs", "status"):
            table.add_column(column, justify="left" if column in ("day", "status") else "right")
        for day in item["days"]:
            style = _DAY_STYLE[day["status"]]
            reported = "-" if day["reported"] is None else f"{day['reported']:,}"
            table.add_row(day["date"], f"{day['rows']:,}", reported, f"[{style}]{day['status']}[/]")
        app.console.print(table)
        flagged = [d for d in item["days"] if d["status"] in ("no data", "mismatch")]
        if flagged:
            app.console.print(f"  [yellow]{len(flagged)} day(s) need a look[/]: "
                              + ", ".join(f"{d['date']} ({d['status']})" for d in flagged))
    return EXIT_OK

