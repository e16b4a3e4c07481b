"""Commands about coverage: backfill_list (which intervals are loaded) and backfill_counts (rows per day)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from cli.app import EXIT_OK, App, cli, pass_app
from cli.backfill import split_days_and_jobs
from cli.output import json_option, print_json
from core.exceptions import UsageError
from core.intervals import Interval, parse_date
from pipelines.pipeline_registry import PipelineSpec
from runner import backfill as bf
from runner import coverage as cov
from runner.counts import count_rows


def _interval_text(interval: Interval | None) -> str:
    return interval.label if interval else "never"


def _window(days: int | None, start: str | None, end: str | None, default_days: int) -> tuple[Any, Any]:
    """The days a coverage command looks at: DAYS back from today or --start/--end (no cap)."""
    return bf.day_window(days if days is not None or start else default_days,
                         parse_date(start, "--start") if start else None,
                         parse_date(end, "--end") if end else None, max_days=None)


@cli.command("backfill_list")
@click.option("--days", type=click.IntRange(1), help="Coverage of the DAYS complete days before today (UTC; "
                                                      "default 30).")
@click.option("--start", help="First day (YYYY-MM-DD, UTC) instead of --days.")
@click.option("--end", help="Last day, INCLUSIVE (default: yesterday).")
@json_option()
@pass_app
def backfill_list(app: App, days: int | None, start: str | None, end: str | None, as_json: bool) -> int:
    """Pipelines that can be backfilled, and how much of the window (last --days days) they have loaded.

    Without --days/--start a pipeline with a ``start_date`` is shown from that day.
    """
    reg = app.registry
    first, last = _window(days, start, end, 30)
    window_given = days is not None or start is not None
    days = (last - first).days + 1
    able = [s for s in reg.pipelines.values() if bf.why_not_backfillable(s) is None]
    rows = []
    for spec in able:
        own_first = first if window_given else spec.entry.start_date or first
        own_first = max(own_first, spec.entry.start_date or own_first)
        history = cov.read_history(app.store, spec.name, create=False, first=own_first, last=last)
        intervals = bf.intervals_for(spec, own_first, last, hourly=True)
        summary = cov.summarize_coverage(history, intervals)
        rows.append((spec, own_first, len(intervals), summary, cov.last_done_interval(history)))
    others = [(s, bf.why_not_backfillable(s)) for s in reg.pipelines.values() if s not in able]
    if as_json:
        return print_json({
            "first_day": first.isoformat(), "last_day": last.isoformat(),
            "pipelines": [{
                "name": spec.name, "granularity": spec.entry.granularity, "table": spec.table_name,
                "enabled": spec.entry.enabled, "first_day": own_first.isoformat(), "intervals": total,
                "done": s.done, "failed": s.failed, "running": s.running, "incomplete": s.incomplete,
                "missing": s.missing, "last_done": last_done.label if last_done else None,
            } for spec, own_first, total, s, last_done in rows],
            "not_backfillable": [{"name": spec.name, "reason": why} for spec, why in others],
        })
    if not rows:
        app.console.print("No pipeline can be backfilled" + ("." if others else " (no pipelines found)."))
    else:
        table = Table(title=f"backfillable pipelines: coverage of {first}..{last} ({days} days, UTC)",
                      title_justify="left")
        numbers = ("intervals", "done", "failed", "incomplete", "missing")
        for column in ("pipeline", "granularity", "table", *numbers, "last done"):
            table.add_column(column, overflow="fold", justify="right" if column in numbers else "left")
        for spec, own_first, total, s, last_done in rows:
            missing = s.missing + s.running
            table.add_row(
                spec.name + ("" if spec.entry.enabled else " (disabled)")
                + (f" (from {own_first})" if own_first != first else ""), spec.entry.granularity,
                spec.table_name or "-", str(total), f"[green]{s.done}[/]" if s.done == total else str(s.done),
                f"[bold red]{s.failed}[/]" if s.failed else "0",
                f"[yellow]{s.incomplete}[/]" if s.incomplete else "0", f"[yellow]{missing}[/]" if missing else "0",
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
            if not spec.pipeline.loader.table:
                raise UsageError(f"Pipeline '{spec.name}' does not load a ClickHouse table "
                                 f"(its loader is {type(spec.pipeline.loader).__name__}): nothing to count")
        return specs
    return [s for s in reg.pipelines.values() if s.pipeline.loader.table]


_DAY_STYLE = {"ok": "green", "no data": "yellow", "mismatch": "bold red", "no run": "yellow", "n/a": "dim",
              "incomplete": "yellow"}


MONTHLY_AFTER_DAYS = 62  # longer ranges are summarised per month on the terminal (--json: every day)
FLAGGED_SHOWN = 20


def _days_table(days: Sequence[dict[str, Any]]) -> Table:
    table = Table(title_justify="left", show_edge=False)
    for column in ("day", "rows in table", "rows loaded by runs", "status"):
        table.add_column(column, justify="left" if column in ("day", "status") else "right")
    for day in days:
        style = _DAY_STYLE[day["status"]]
        reported = "-" if day["reported"] is None else f"{day['reported']:,}"
        table.add_row(day["date"], f"{day['rows']:,}", reported, f"[{style}]{day['status']}[/]")
    return table


def _months_table(days: Sequence[dict[str, Any]]) -> Table:
    """One row per month: days, rows in the table and reported by runs, days per status."""
    months: dict[str, list[dict[str, Any]]] = {}
    for day in days:
        months.setdefault(day["date"][:7], []).append(day)
    table = Table(title="per month (--json for every day)", title_justify="left", show_edge=False)
    for column in ("month", "days", "rows in table", "rows loaded by runs", "days by status"):
        table.add_column(column, justify="left" if column in ("month", "days by status") else "right")
    for month, items in months.items():
        statuses: dict[str, int] = {}
        for day in items:
            statuses[day["status"]] = statuses.get(day["status"], 0) + 1
        reported = sum(d["reported"] or 0 for d in items)
        table.add_row(month, str(len(items)), f"{sum(d['rows'] for d in items):,}", f"{reported:,}",
                      ", ".join(f"[{_DAY_STYLE[k]}]{n} {k}[/]" for k, n in sorted(statuses.items())))
    return table


@cli.command("backfill_counts")
@click.argument("days_and_jobs", nargs=-1, metavar="[DAYS] [JOBS]...")
@click.option("--start", help="First day (YYYY-MM-DD, UTC) instead of DAYS.")
@click.option("--end", help="Last day, INCLUSIVE (default: yesterday).")
@json_option()
@pass_app
def backfill_counts(app: App, days_and_jobs: tuple[str, ...], start: str | None, end: str | None,
                    as_json: bool) -> int:
    """Rows per day in each pipeline's table (last DAYS complete days, default 7) beside what runs loaded.

    Days with no data, or whose rows differ from what the successful run(s) reported loading,
    are highlighted (only interval-mode tables can be compared: their runs own whole days).
    """
    days, names = split_days_and_jobs(days_and_jobs)
    first, last = _window(days, start, end, bf.DEFAULT_DAYS)
    specs = _count_pipelines(app, names)
    result = []
    for spec in specs:
        counts = count_rows(app.store, spec, first, last)
        result.append({"pipeline": counts.pipeline, "table": counts.table, "time_column": counts.time_column,
                       "mode": counts.mode, "exists": counts.exists, "total_rows": counts.total,
                       "rows_without_time": counts.without_time,
                       "days": [{"date": d.day.isoformat(), "rows": d.rows, "reported": d.reported,
                                 "status": d.status} for d in counts.days]})
    if as_json:
        return print_json({"first_day": first.isoformat(), "last_day": last.isoformat(), "pipelines": result})
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
        if item["rows_without_time"]:
            app.console.print(f"  {item['rows_without_time']:,} rows have no {item['time_column']} (NULL): they "
                              "belong to no day and no interval (every interval run keeps them)")
        app.console.print(_days_table(item["days"]) if len(item["days"]) <= MONTHLY_AFTER_DAYS
                          else _months_table(item["days"]))
        flagged = [d for d in item["days"] if d["status"] in ("no data", "mismatch", "incomplete")]
        if flagged:
            shown = ", ".join(f"{d['date']} ({d['status']})" for d in flagged[:FLAGGED_SHOWN])
            more = f" ... and {len(flagged) - FLAGGED_SHOWN} more (--json lists every day)" \
                if len(flagged) > FLAGGED_SHOWN else ""
            app.console.print(f"  [yellow]{len(flagged)} day(s) need a look[/]: {shown}{more}")
    return EXIT_OK

