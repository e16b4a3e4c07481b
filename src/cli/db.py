"""Commands about the installation and the store: check, setup_db, db_to_cluster, drop_db, test."""

from __future__ import annotations

import os
import sys

import click
from rich.table import Table

from cli.app import COMPLETE_VAR, EXIT_FAILED, EXIT_OK, EXIT_USAGE, App, cli, pass_app
from cli.output import json_option, print_json

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@cli.command("help")
@click.pass_context
def help_command(ctx: click.Context) -> None:
    """Show every command with its arguments."""
    click.echo(ctx.parent.get_help() if ctx.parent else ctx.get_help())


@cli.command("check")
@json_option("Print the results as JSON (for monitoring).")
@click.option("--alert", is_flag=True, help="Send alerts for stale data (and when it is fresh again).")
@click.option("--quiet", is_flag=True, help="Print only what is not OK (for cron).")
@pass_app
def check(app: App, as_json: bool, alert: bool, quiet: bool) -> int:
    """Check the set-up (Python, dependencies, config, directories, store, cron) and the data
    (freshness, open failures, data checks).

    Exit codes: 0 all OK; 1 the set-up is broken; 3 the set-up works but data needs attention
    (stale data, open failures, failing runs).
    """
    from ops.health import exit_code, run_checks

    results, settings = run_checks()
    code = exit_code(results)
    ok = code == EXIT_OK
    if alert and settings is not None:
        from ops.alerts.dispatch import notify_health
        from ops.spooled_runs import replay_spooled_runs

        replay_spooled_runs(app.store, settings, app.registry)  # runs not recorded yet, with their alerts
        notify_health(settings, app.store, app.registry, results)
    if quiet:
        for r in results:
            if r.status != "ok":
                app.console.print(f"{r.status.upper()} {r.name}: {r.detail}")
        return code
    if as_json:
        return print_json({"healthy": ok, "exit_code": code, "checks": [r.as_dict() for r in results]}, code)
    table = Table(title="data-processor health", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{_STYLE[r.status]}]{r.status.upper()}[/]", r.detail)
    app.console.print(table)
    if settings is not None:
        config = Table(title="configuration (secrets masked)", title_justify="left")
        config.add_column("variable")
        config.add_column("value", overflow="fold")
        for name, value in settings.display().items():
            config.add_row(name, value)
        app.console.print(config)
    # Off a terminal stdout is the TSV alone; the verdict (also the exit code) goes to stderr.
    (app.err if app.console.plain else app.console).print(
        "[green]healthy[/]" if ok else "[bold red]unhealthy[/]: fix the FAIL lines above" if code == EXIT_FAILED
        else "[yellow]set-up healthy, data needs attention[/]: stale data or open failures (FAIL lines above)")
    return code


@cli.command("setup_db")
@pass_app
def setup_db(app: App) -> None:
    """Create the database (safe to run again); on a cluster (CLICKHOUSE_CLUSTER) on every node."""
    cluster = app.settings.clickhouse_cluster
    if cluster and not app.settings.is_embedded:
        from core.topology import create_database_on_cluster

        created = create_database_on_cluster(app.store, cluster)
        where = f"every node of cluster '{cluster}' ({app.store.description})"
        app.console.print(f"{'Created' if created else 'Database already exists:'} '{app.store.database}' on {where}")
        return
    created = app.store.create_database()
    verb = "Created" if created else "Database already exists:"
    app.console.print(f"{verb} '{app.store.database}' in {app.store.description}")


@cli.command("db_to_cluster")
@pass_app
def db_to_cluster(app: App) -> int:
    """Move the framework tables a single server made (run history, coverage, state...) to the
    replicated layout of the cluster CLICKHOUSE_CLUSTER names, with their history. Stop the
    scheduler first; safe to run again."""
    from core.exceptions import StoreError
    from ops.cluster_tables import move_to_cluster

    try:
        moved = move_to_cluster(app.store)
    except StoreError as exc:
        app.err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_FAILED
    if not moved:
        app.console.print(f"Nothing to move: the framework tables of '{app.store.database}' are replicated already "
                          "(or not made yet)")
        return EXIT_OK
    for table, rows in moved:
        app.console.print(f"{table}: {rows:,} rows moved to the replicated layout")
    app.console.print(f"Moved {len(moved)} framework tables to cluster '{app.settings.clickhouse_cluster}'")
    return EXIT_OK


@cli.command("drop_db")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required when not interactive).")
@pass_app
def drop_db(app: App, yes: bool) -> int:
    """Drop the database and everything in it, then create it empty."""
    database = app.settings.database
    if not yes:
        if not sys.stdin.isatty():
            app.err.print(f"error: drop_db deletes every table in '{database}'; "
                          "not on a terminal, so pass --yes to confirm")
            return EXIT_USAGE
        click.confirm(f"Drop database '{database}' in {app.store.description} and all its tables?", abort=True)
    app.store.drop_database()
    app.store.create_database()
    app.console.print(f"Dropped and recreated '{database}'")
    return EXIT_OK


@cli.command("test", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                      "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def test(args: tuple[str, ...]) -> None:
    """Run the test suite: [unit|integration|performance] [--fast] [pytest args]."""
    from core.config import PROJECT_ROOT

    script = PROJECT_ROOT / "scripts" / "run_tests.py"
    # exec, not fork: this process may already have loaded chdb.
    os.execv(sys.executable, [sys.executable, str(script), *args])


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print a shell completion script: eval "$(./run.sh completion bash)" (or zsh, fish)."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    # Registered for "run.sh": bash and zsh then complete ./run.sh and /path/to/run.sh alike.
    click.echo(completer(cli, {}, "run.sh", COMPLETE_VAR).source())
    return EXIT_OK
