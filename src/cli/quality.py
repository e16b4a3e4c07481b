"""Commands about data checks and alerts: checks, alert_test."""

from __future__ import annotations

import json
from datetime import UTC

import click
from rich.table import Table

from cli.app import EXIT_FAILED, EXIT_OK, App, cli, pass_app
from cli.output import json_option, print_json

_STATUS = {"pass": "green", "fail": "bold red", "error": "bold red"}


@cli.command("checks")
@click.argument("name", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000), help="How many results.")
@click.option("--failed", is_flag=True, help="Only checks that failed or could not run.")
@json_option("Print as JSON (with the failing-row samples).")
@pass_app
def checks(app: App, name: str | None, limit: int, failed: bool, as_json: bool) -> int:
    """Show data check results (newest first): status, failing rows, where failed rows were kept."""
    from audit.results import read_results
    from record.tables import ensure_framework_tables

    if name:
        app.registry.get(name)
    ensure_framework_tables(app.store)
    results = read_results(app.store, name, failed=failed, limit=limit)
    if as_json:
        return print_json([r.as_dict() for r in results])
    if not results:
        app.console.print("No check results" + (f" for '{name}'" if name else "") + (" that failed" if failed else ""))
        return EXIT_OK
    table = Table(title="data checks, newest first", title_justify="left")
    for column in ("checked", "pipeline", "interval", "check", "severity", "status", "failing", "detail", "run_id",
                   "kept staged rows"):
        table.add_column(column, overflow="fold")
    for r in results:
        checked = r.checked_at.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        sample = f"\nsample: {json.dumps(r.sample[0], default=str)[:200]}" if r.sample else ""
        table.add_row(checked, r.pipeline, f"{r.interval_start:%Y-%m-%d %H:%M}", r.check_name, r.severity,
                      f"[{_STATUS.get(r.status, 'white')}]{r.status}[/]", f"{r.failing:,}", r.detail + sample,
                      r.run_id, r.kept_table)
    app.console.print(table)
    return EXIT_OK


@cli.command("alert_test")
@click.argument("channel", required=False, type=click.Choice(["webhook", "email", "command"]))
@click.option("--pipeline", help="Use this pipeline's alert settings (its 'alerts' overrides).")
@pass_app
def alert_test(app: App, channel: str | None, pipeline: str | None) -> int:
    """Send a test alert to every configured channel (or CHANNEL); exit 1 if one fails."""
    from ops.alerts.config import for_pipeline
    from ops.alerts.dispatch import send_test

    settings = app.settings
    if pipeline:
        spec = app.registry.get(pipeline)
        settings = for_pipeline(settings, spec.entry.alerts)
        if settings is None:
            app.err.print(f"error: alerts are turned off for '{pipeline}' ('enabled': False)")
            return EXIT_FAILED
    outcome = send_test(settings, channel)
    if not outcome:
        which = f"the {channel} channel is not configured" if channel else "no alert channel is configured"
        app.err.print(f"error: {which}: set ALERT_WEBHOOK_URL, ALERT_SMTP_HOST with ALERT_EMAIL_TO, "
                      "or ALERT_COMMAND in .env (see docs/checks-and-alerts.md)")
        return EXIT_FAILED
    for _, (where, error) in outcome.items():
        if error:
            app.err.print(f"[bold red]failed[/] {error}")
        else:
            app.console.print(f"[green]sent[/] {where}")
    return EXIT_FAILED if any(error for _, error in outcome.values()) else EXIT_OK
