"""Commands for versioned SQL migrations: migrate, migrate_status, migrate_down.

The logic is in :mod:`core.migrations`; these commands only parse options and print.
"""

from __future__ import annotations

import click
from rich.table import Table

from cli.app import EXIT_FAILED, EXIT_OK, App, cli, pass_app
from cli.output import json_option, print_json
from core.migrations import DEFAULT_LOCK_TIMEOUT, MigrateResult, Migrator, display_path

_STYLE = {
    "applied": "green", "pending": "yellow", "running": "cyan", "failed": "bold red",
    "interrupted": "bold red", "modified": "bold red", "missing": "yellow",
}

_lock_timeout = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=DEFAULT_LOCK_TIMEOUT, show_default=True,
    metavar="SECONDS", help="How long to wait for another migrate to finish.",
)
_force_unlock = click.option(
    "--force-unlock", is_flag=True,
    help="Break a migration lock left behind by a process that died on another host.",
)


def _migrator(app: App) -> Migrator:
    return Migrator(app.settings, app.store)


def _print_plan(result: MigrateResult, verb: str) -> None:
    if not result.planned:
        click.echo(f"-- nothing to {verb}")
        return
    for item in result.planned:
        m = item.migration
        source = display_path(m.down_path) if verb == "roll back" and m.down_path else m.source
        total = len(item.statements)
        note = f"resuming at statement {item.start + 1} of {total}" if item.start else \
            f"{total} statement{'s' if total != 1 else ''}"
        click.echo(f"-- {source} ({note})")
        for statement in item.remaining:
            click.echo(f"{statement.sql};\n")


@cli.command("migrate")
@click.option("--to", "target", type=int, metavar="VERSION", help="Apply migrations up to this version only.")
@click.option("--dry-run", is_flag=True,
              help="Print the SQL that would run (placeholders substituted); change nothing.")
@click.option("--allow-modified", is_flag=True,
              help="Accept applied migrations whose file was edited (records the new checksum; does not re-run them).")
@_force_unlock
@_lock_timeout
@pass_app
def migrate(app: App, target: int | None, dry_run: bool, allow_modified: bool, force_unlock: bool,
            lock_timeout: float) -> int:
    """Apply pending SQL migrations from MIGRATIONS_DIR, resuming a failed one where it stopped."""
    migrator = _migrator(app)
    result = migrator.migrate(target, dry_run=dry_run, allow_modified=allow_modified, force_unlock=force_unlock,
                              lock_timeout=lock_timeout,
                              on_wait=lambda holder: app.err.print(f"Waiting for another migrate: {holder}"))
    if dry_run:
        _print_plan(result, "apply")
        return EXIT_OK
    for item in result.applied:
        resumed = f", resumed at statement {item.resumed_at}" if item.resumed_at > 1 else ""
        app.console.print(f"Applied {item.file} ({item.statements_run} of {item.statements_total} "
                          f"statement{'s' if item.statements_total != 1 else ''}{resumed}) "
                          f"in {item.duration_seconds:.2f} s", markup=False, soft_wrap=True)
    for file in result.accepted:
        app.console.print(f"Accepted the edited {file} (new checksum recorded)", markup=False, soft_wrap=True)
    if not result.applied:
        app.console.print(f"Database '{app.settings.database}' is up to date: no migration to apply",
                          markup=False, soft_wrap=True)
    return EXIT_OK


@cli.command("migrate_status")
@json_option("Print the status as JSON.")
@pass_app
def migrate_status(app: App, as_json: bool) -> int:
    """Show every migration's status (exit 1 when any is pending, failed, modified or missing)."""
    statuses = _migrator(app).status()
    # An applied migration whose file is gone does not block migrate, but the files no longer
    # describe the database: not "up to date".
    missing = [s.file for s in statuses if s.state == "missing"]
    up_to_date = not missing and not any(s.problem for s in statuses)
    if as_json:
        return print_json({"up_to_date": up_to_date, "database": app.settings.database,
                           "migrations": [s.as_dict() for s in statuses]}, EXIT_OK if up_to_date else EXIT_FAILED)
    table = Table(title=f"migrations of '{app.settings.database}' ({display_path(app.settings.migrations_dir)})",
                  title_justify="left")
    for column in ("version", "name", "status", "applied at (UTC)", "duration"):
        table.add_column(column, justify="right" if column in ("version", "duration") else "left")
    for s in statuses:
        table.add_row(
            str(s.version), s.name, f"[{_STYLE.get(s.state, 'white')}]{s.label}[/]",
            s.applied_at.strftime("%Y-%m-%d %H:%M:%S") if s.applied_at else "",
            f"{s.duration_seconds:.2f} s" if s.duration_seconds is not None and s.record else "",
        )
    app.console.print(table)
    for s in statuses:
        if s.error and s.state in ("failed", "interrupted"):
            app.console.print(f"{s.file}: {s.error}", markup=False, soft_wrap=True)
    if not statuses:
        app.console.print("No migrations.")
    elif up_to_date:
        app.console.print("[green]up to date[/]")
    elif any(s.problem for s in statuses):
        app.console.print("[bold red]not up to date[/]: run ./run.sh migrate")
    else:
        app.console.print(f"[bold red]not up to date[/]: applied but missing from MIGRATIONS_DIR: {', '.join(missing)} "
                          "(restore the file from version control)")
    return EXIT_OK if up_to_date else EXIT_FAILED


@cli.command("migrate_down")
@click.option("--to", "target", type=int, metavar="VERSION",
              help="Roll back every migration above this version (0: all); default: only the newest.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@_force_unlock
@_lock_timeout
@pass_app
def migrate_down(app: App, target: int | None, dry_run: bool, force_unlock: bool, lock_timeout: float) -> int:
    """Roll back migrations with their .down.sql files (refuses if one is missing)."""
    result = _migrator(app).down(target, dry_run=dry_run, force_unlock=force_unlock, lock_timeout=lock_timeout,
                                 on_wait=lambda holder: app.err.print(f"Waiting for another migrate: {holder}"))
    if dry_run:
        _print_plan(result, "roll back")
        return EXIT_OK
    for file in result.rolled_back:
        app.console.print(f"Rolled back {file}", markup=False, soft_wrap=True)
    if not result.rolled_back:
        app.console.print("Nothing to roll back")
    return EXIT_OK
