"""Commands about backfills: backfill; coverage commands are in cli/coverage.py."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cli.app import EXIT_OK, App, cli, pass_app
from cli.pipelines import outlet, replay_spool
from core.exceptions import UsageError
from core.intervals import parse_date
from core.logging import ROOT_LOGGER
from runner import backfill as bf
from runner import cascade
from runner import dependencies as deps

if TYPE_CHECKING:
    from core.models import RunRecord

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

    def finished(self, step: bf.Step, outcome: RunRecord) -> None:
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
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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

    def finished(self, step: bf.Step, outcome: RunRecord) -> None:
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
    app.console.print(f"{runs} interval(s) would run{_in_runs(steps)}, {len(steps) - runs} would be skipped")


def _in_runs(steps: Sequence[bf.Step]) -> str:
    """`` in 3 run(s)`` when contiguous intervals run as batches (``batch_size``, hourly pipelines by day)."""
    todo = [s for s in steps if s.action == "run"]
    runs = len(bf.group(todo))
    return f" in {runs} run(s)" if runs != len(todo) else ""


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
@click.option("--hourly", is_flag=True, help="Run hourly pipelines hour by hour, not a day of hours per run "
              "(a pipeline's batch_size still applies).")
@click.option("--rerun", type=click.Choice(["failed", "all"]),
              help="Which intervals to run again: 'failed' only failed or crashed ones; 'all' every one. "
                   "Default: every interval without a successful run.")
@click.option("--force", is_flag=True, help="Same as --rerun all, and run intervals whose upstreams (depends_on) "
              "are not ready too.")
@click.option("--dry-run", is_flag=True, help="Print the plan (pipeline, interval, run/skip and why); change nothing.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Run up to N intervals at once, each in a new process, on a ClickHouse server (on the embedded "
                   "store backfills run sequentially; see docs/backfill.md).")
@click.option("--continue-on-error", is_flag=True, help="Go on past a failed interval (default: stop at it).")
@click.option("--no-downstream", is_flag=True, help="Do not re-run the pipelines that depend on the re-loaded ones.")
@pass_app
def backfill(app: App, days_and_jobs: tuple[str, ...], start: str | None, end: str | None, hourly: bool,
             rerun: str | None, force: bool, dry_run: bool, parallel: int, continue_on_error: bool,
             no_downstream: bool) -> int:
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
    if not dry_run:  # (a dry run writes nothing) runs not recorded yet count before planning
        replay_spool(app)
    steps = bf.plan(store, specs, first, last, policy=policy, hourly=hourly, dry_run=dry_run)
    # depends_on: dependency order; intervals whose upstreams are not ready are refused (run with --force)
    steps, refused = deps.prepare_backfill(store, reg, steps, force=force)
    for line in refused:
        app.err.print(f"[yellow]{'forced' if force else 'refused'}[/] {line}", soft_wrap=True)
    if dry_run:
        _print_plan(app, steps)
        return EXIT_OK
    to_run = sum(1 for s in steps if s.action == "run")
    app.err.print(f"backfill {first}..{last} ({', '.join(s.name for s in specs)}): {to_run} interval(s) to run"
                  f"{_in_runs(steps)}, {len(steps) - to_run} skipped"
                  + (f", up to {parallel} at a time" if parallel > 1 and not app.settings.is_embedded else ""))
    if parallel > 1 and app.settings.is_embedded:
        # Workers would only take turns on the store's lock: measured 1.6-1.75x slower than one process.
        app.err.print(f"note: --parallel {parallel} runs sequentially on the embedded store (it admits one process "
                      "at a time); point CLICKHOUSE_HOST at a server to run intervals in parallel")
        parallel = 1
    listener: bf.Listener = _Bar(app) if app.console.is_terminal else _Lines(app)
    recorder = deps.SuccessRecorder(listener)
    started = time.monotonic()
    with _quiet_console(app):
        try:
            report = bf.execute(steps, app.settings, store, parallel=parallel, continue_on_error=continue_on_error,
                                listener=recorder)
        finally:
            if isinstance(listener, _Bar):
                listener.stop()
    report.seconds = time.monotonic() - started
    _print_summary(app, report)
    if not no_downstream and not report.stopped:  # reported, never folded into the exit code (as cron_run)
        cascade.run_downstream(store, reg, app.settings, recorder.succeeded, outlet(app), already=recorder.ran)
    from ops.alerts.dispatch import notify_backfill

    notify_backfill(app.settings, store, report)  # one summary alert when intervals failed
    return report.exit_code or (1 if refused and not force else 0)
