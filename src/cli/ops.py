"""Operations commands: setup_cron, remove_cron, cron_status, scheduler, ps, kill, clean."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from cli.app import EXIT_FAILED, EXIT_OK, App, cli, pass_app
from cli.output import json_option, print_json
from core.exceptions import UsageError


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ---- cron -----------------------------------------------------------------------------------

@cli.command("setup_cron")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Sync every scheduled pipeline (and remove entries of removed ones).")
@pass_app
def setup_cron(app: App, name: str | None, all_: bool) -> int:
    """Install or update crontab entries: one pipeline (NAME) or all (--all)."""
    from core.config import PROJECT_ROOT
    from ops import cron

    if bool(name) == all_:
        raise UsageError("give a pipeline NAME or --all")
    registry = app.registry
    result = cron.sync_all(registry, app.settings) if all_ else cron.install_one(registry.get(name or ""), app.settings)
    for label, names in (("added", result.added), ("updated", result.updated), ("removed", result.removed)):
        for n in names:
            app.console.print(f"{label} {n}")
    for n in result.kept:
        app.err.print(f"[yellow]warning:[/] kept the entry of '{n}': it is not in the registry while modules are "
                      "broken (fix them and run setup_cron --all again)" if n not in result.errors else
                      f"[yellow]warning:[/] kept the old entry of '{n}': {result.errors[n]}")
    for n, error in result.errors.items():
        if n not in result.kept:
            app.err.print(f"error: {error}")
    for broken in registry.broken:
        app.err.print(f"error: broken pipeline module {broken.source}: {broken.error}")
    pipelines = [n for n in result.entries if n not in cron.HOUSEKEEPING]
    if result.changed:
        app.console.print(f"crontab updated: {len(pipelines)} pipeline(s) in the block for {PROJECT_ROOT}")
    else:
        app.console.print(f"crontab unchanged: {len(pipelines)} pipeline(s) already in sync")
    return EXIT_FAILED if (result.errors or registry.broken) and all_ else EXIT_OK


@cli.command("remove_cron")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Remove this project's whole block.")
@pass_app
def remove_cron(app: App, name: str | None, all_: bool) -> int:
    """Remove the crontab entry of one pipeline (NAME) or of all (--all); other entries stay."""
    from ops import cron

    if bool(name) == all_:
        raise UsageError("give a pipeline NAME or --all")
    result = cron.remove(None if all_ else name)
    if name and not result.removed:
        app.console.print(f"'{name}' has no cron entry; nothing removed")
        return EXIT_OK
    for n in result.removed:
        app.console.print(f"removed {n}")
    app.console.print("crontab updated" if result.changed else "crontab unchanged: no block installed")
    return EXIT_OK


@cli.command("cron_status")
@json_option()
@pass_app
def cron_status(app: App, as_json: bool) -> int:
    """Show installed versus wanted crontab entries (exit 1 when out of sync)."""
    from core.config import PROJECT_ROOT
    from ops import cron

    registry = app.registry
    state = cron.status(registry, app.settings)
    if as_json:
        return print_json({
            "in_sync": state.in_sync, "block_installed": state.block_installed,
            "entries": [{"name": n, "state": s, "wanted": w, "installed": i} for n, s, w, i in state.rows],
            "errors": state.errors,
        }, EXIT_OK if state.in_sync else EXIT_FAILED)
    if not state.rows and not state.errors:
        app.console.print("No scheduled pipelines and no cron block: nothing to do")
        return EXIT_OK
    table = Table(title=f"cron entries for {PROJECT_ROOT}", title_justify="left")
    for column in ("name", "state", "wanted", "installed"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "missing": "yellow", "changed": "yellow", "extra": "bold red"}
    for n, s, wanted, installed in state.rows:
        short = [line.split(" cd ", 1)[0] for line in wanted]
        have = [line.split(" cd ", 1)[0] for line in installed]
        table.add_row(n, f"[{style[s]}]{s}[/]", "\n".join(short) or "-", "\n".join(have) or "-")
    app.console.print(table)
    for error in state.errors.values():
        app.err.print(f"error: {error}")
    if state.in_sync:
        app.console.print("[green]in sync[/]")
        return EXIT_OK
    app.console.print(f"[bold red]out of sync[/]: {state.how_to_sync}")
    return EXIT_FAILED


# ---- scheduler ------------------------------------------------------------------------------

@cli.command("scheduler")
@click.option("--grace", default=30.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM, seconds running pipelines get to finish before they are stopped.")
@click.option("--once", is_flag=True, help="Start what is due this minute (or at --now), wait for it, exit.")
@click.option("--now", "now_text",
              help="With --once: the moment to evaluate (ISO date-time, UTC unless a zone is given).")
@click.option("--tick", type=click.FloatRange(0.1), default=60.0, hidden=True,
              help="Testing: a scheduler minute lasts this many real seconds.")
@pass_app
def scheduler(app: App, grace: float, once: bool, now_text: str | None, tick: float) -> int:
    """Run scheduled pipelines from a foreground loop (for hosts without cron); stops on SIGTERM."""
    from ops.scheduler import Clock, Scheduler

    if now_text and not once:
        raise UsageError("--now goes with --once")
    registry = app.registry
    sched = Scheduler(app.settings, registry, grace=grace, clock=Clock(tick=tick))
    if once:
        moment = datetime.now(UTC)
        if now_text:
            try:
                moment = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(f"--now must be a date-time like 2026-01-15T02:00, got '{now_text}'") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        due = sched.due(moment.replace(second=0, microsecond=0).astimezone(UTC))
        if not due:
            app.console.print(f"Nothing due at {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
            return EXIT_OK
        code = sched.once(moment)
        for name, exit_code in sched.results:
            app.console.print(f"{name}: exit {exit_code}")
        return code
    return sched.run()


# ---- processes ------------------------------------------------------------------------------

@cli.command("ps")
@click.argument("name", required=False)
@json_option()
@pass_app
def ps(app: App, name: str | None, as_json: bool) -> int:
    """List running pipeline processes (and stale pid files, which clean removes)."""
    from ops.processes import list_runs

    runs = list_runs(app.settings, name)
    if as_json:
        return print_json([r.as_dict() for r in runs])
    live = [r for r in runs if r.alive]
    if not runs:
        app.console.print("No pipeline is running" + (f" for '{name}'" if name else ""))
        return EXIT_OK
    if live:
        table = Table(title=f"{len(live)} running", title_justify="left")
        for column in ("pipeline", "pid", "run_id", "interval", "trigger", "started", "elapsed"):
            table.add_column(column, overflow="fold")
        for r in live:
            started = r.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if r.started_at else ""
            table.add_row(r.pipeline, str(r.pid), r.run_id, r.interval, r.trigger, started, _elapsed(r.elapsed))
        app.console.print(table)
    else:
        app.console.print("No pipeline is running" + (f" for '{name}'" if name else ""))
    for r in runs:
        if not r.alive:
            app.err.print(f"[yellow]stale[/] {r.path.name}: {r.pipeline or '?'} run {r.run_id}: {r.problem} "
                          "(./run.sh clean removes it)")
    return EXIT_OK


@cli.command("kill")
@click.argument("name", required=False)
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between SIGTERM and SIGKILL.")
@pass_app
def kill(app: App, name: str | None, grace: float) -> int:
    """Stop running pipeline processes (all, or NAME's): SIGTERM, then SIGKILL after --grace."""
    from ops.processes import RunProcess, kill_runs


    def announce(run: RunProcess, how: str) -> None:
        app.console.print(f"{how} {run.pipeline} (pid {run.pid}, run {run.run_id})")

    outcomes, stale = kill_runs(app.settings, name, grace, on_signal=announce)
    for r in stale:
        app.err.print(f"[yellow]skipped[/] stale pid file {r.path.name}: {r.problem} (./run.sh clean removes it)")
    if not outcomes:
        unknown = bool(name) and name not in app.registry.pipelines  # a typo deserves a hint
        app.console.print("No pipeline is running" + (f" for '{name}'" if name else "")
                          + (" (no pipeline has that name)" if unknown else ""))
        return EXIT_OK
    for o in outcomes:
        verb = {"SIGTERM": "stopped", "SIGKILL": "killed (SIGKILL after grace)", "gone": "already gone"}[o.how]
        app.console.print(f"{verb}: {o.run.pipeline} run {o.run.run_id}, recorded as failed (killed)")
    return EXIT_OK


@cli.command("clean")
@click.option("--days", type=click.FloatRange(0),
              help="Delete log files not written for this many days (default 30); bounds --logs too.")
@click.option("--logs", is_flag=True,
              help="Also clear every log file (truncate current, delete rotated); with --days only the older ones.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@click.option("--quiet", is_flag=True, help="Print only when something was removed (for cron).")
@pass_app
def clean(app: App, days: float | None, logs: bool, dry_run: bool, quiet: bool) -> int:
    """Remove stale pid files, leftover staging tables, temporary files and old logs (never data or .env)."""
    from ops.processes import clean as do_clean

    # --logs --days N clears only what --days N removes anyway: never today's logs.
    logs, days = logs and days is None, 30.0 if days is None else days
    report = do_clean(app.settings, days=days, logs=logs, dry_run=dry_run)
    labels = {
        "stale_pid_files": "stale pid file", "staging_tables": "staging table",
        "loader_leftovers": "loader leftover", "crashed_runs": "marked crashed",
        "temp_files": "temporary file", "old_logs": f"log older than {days:g} days", "rotated_logs": "rotated",
        "cleared_logs": "cleared log",
    }
    prefix = "would remove" if dry_run else "removed"
    for key, label in labels.items():
        for item in getattr(report, key):
            verb = label if key in ("crashed_runs", "rotated_logs") else f"{prefix} {label}"
            app.console.print(f"{verb}: {item}")
    for note in report.notes:
        app.err.print(f"note: {note}")
    if report.total or not quiet:
        when = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        app.console.print(f"{when} clean: {report.total} item(s)" + (" (dry run)" if dry_run else ""))
    return EXIT_OK
