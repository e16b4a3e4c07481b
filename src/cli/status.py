"""Commands about pipeline status: waive (close open failures that will never be loaded)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import click

from cli.app import EXIT_OK, App, cli, pass_app
from core.exceptions import UsageError
from core.intervals import parse_date


def _span(interval_aware: bool, name: str, day: str | None, start: str | None,
          end: str | None) -> tuple[datetime, datetime]:
    """The span a waiver covers: whole UTC days for an interval-aware pipeline, else everything so far."""
    if not interval_aware:
        if day or start or end:
            raise UsageError(f"Pipeline '{name}' is not interval-aware: waive it without --date/--start/--end "
                             "(the waiver closes its failures since its last success)")
        return datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC)
    if day and (start or end):
        raise UsageError("Give --date, or --start and --end, not both")
    if not day and not start:
        raise UsageError(f"Which interval of '{name}'? Give --date YYYY-MM-DD (or --start and --end, inclusive)")
    first = parse_date(day or start or "", "--date" if day else "--start")
    last = parse_date(end, "--end") if end else first
    if last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return datetime.combine(first, time(), UTC), datetime.combine(last, time(), UTC) + timedelta(days=1)


@cli.command("waive")
@click.argument("name")
@click.option("--date", "day", help="The day whose open failures to close (YYYY-MM-DD, UTC; every hour of it).")
@click.option("--start", help="First day of a span to waive (YYYY-MM-DD, UTC).")
@click.option("--end", help="Last day of the span, INCLUSIVE (default: --start).")
@click.option("--reason", required=True, help="Why these intervals will not be loaded (recorded, shown by check).")
@pass_app
def waive(app: App, name: str, day: str | None, start: str | None, end: str | None, reason: str) -> int:
    """Close open failures of NAME that will never be healed (a source day gone for good), with a reason.

    The waiver is recorded in _dp_waivers; a later failure of the same interval opens it again.
    A pipeline that is not interval-aware is waived without a date (its failures so far).
    """
    from record.tables import ensure_framework_tables
    from record.waivers import record_waiver
    from runner.status import pipeline_statuses

    spec = app.registry.get(name)
    if not reason.strip():
        raise UsageError("--reason must say why (it is recorded with the waiver)")
    first, after = _span(spec.pipeline.interval_aware, name, day, start, end)
    store = app.store
    ensure_framework_tables(store)
    open_now = pipeline_statuses(store, [spec])[name].open_failures
    closing = [f for f in open_now if first <= f.start and f.end <= after]
    if not closing:
        listed = ", ".join(f.label for f in open_now) or "none"
        raise UsageError(f"No open failure of '{name}' in {first:%Y-%m-%d}..{after - timedelta(days=1):%Y-%m-%d}"
                         f" to waive (open failures: {listed})")
    record_waiver(store, name, first, after, reason.strip())
    for failure in closing:
        app.console.print(f"waived {name} {failure.label} ({failure.kind}, run {failure.run_id}): {reason.strip()}")
    left = len(open_now) - len(closing)
    app.console.print(f"{len(closing)} open failure(s) waived; {left} still open" if left else
                      f"{len(closing)} open failure(s) waived; none left")
    return EXIT_OK
