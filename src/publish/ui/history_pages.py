"""The pages over any date range: the coverage window (``?start=&end=``, previous/next) and a page
per pipeline (settings, open failures, coverage, runs newest first, paged and filtered)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask, abort, request

MAX_GRID_DAYS = 366
DEFAULT_GRID_DAYS = 30
RUNS_PER_PAGE = 50
RUN_STATUSES = ("success", "failed", "crashed", "running")


@dataclass(frozen=True)
class Window:
    """Days ``first..last`` (UTC) and the windows of the same length before and after it."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def shifted(self, windows: int) -> Window:
        step = timedelta(days=self.days * windows)
        return Window(self.first + step, self.last + step)

    def query(self) -> str:
        return f"start={self.first.isoformat()}&end={self.last.isoformat()}"


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query argument within ``low..high`` (400 otherwise)."""
    raw = request.args.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        abort(400, f"{name} must be a whole number, got {raw[:40]!r}")
    if not low <= value <= high:
        abort(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date like 2015-01-31, got {raw[:40]!r}")


def window(default_days: int, max_days: int) -> Window:
    """The window asked for: ``start``/``end`` (either alone: the default length from or up to
    it), else ``days`` up to today, else the last ``default_days`` days."""
    start, end = _date_arg("start"), _date_arg("end")
    if start is None and end is None:
        days = int_arg("days", default_days, 1, max_days)
        today = datetime.now(UTC).date()
        return Window(today - timedelta(days=days - 1), today)
    if start is None:
        start = end - timedelta(days=default_days - 1)  # type: ignore[operator]
    if end is None:
        end = start + timedelta(days=default_days - 1)
    if end < start:
        abort(400, f"end {end} is before start {start}")
    if (end - start).days + 1 > max_days:
        abort(400, f"a window of at most {max_days} days, got {(end - start).days + 1} ({start} .. {end})")
    return Window(start, end)


def history_routes(app: Flask, page: Any, view: Callable[..., str]) -> None:
    """``/pipelines/<name>``: one pipeline's settings, open failures, coverage and runs (``view``:
    how the application renders a template with a reading)."""
    from publish.ui import data

    @app.get("/pipelines/<name>")
    def pipeline(name: str) -> str:
        from record.history import list_runs

        registry = page.registry()
        spec = registry.pipelines.get(name)
        if spec is None:
            abort(404, f"no pipeline named {name!r}")
        span = window(DEFAULT_GRID_DAYS, MAX_GRID_DAYS)
        status = request.args.get("status", "")
        if status and status not in RUN_STATUSES:
            abort(400, f"status must be one of {', '.join(RUN_STATUSES)}, got {status[:40]!r}")
        number = int_arg("page", 1, 1, 100_000)
        size = int_arg("per_page", RUNS_PER_PAGE, 1, 500)

        def read(store: Any) -> dict[str, Any]:
            rows = data.overview(store, registry, only=name)
            runs = list_runs(store, name, status or None, limit=size + 1,
                             offset=(number - 1) * size) if data.has_history(store) else []
            grid = data.coverage_grid(store, registry, span.first, span.last, only=name)
            return {"row": rows[0], "runs": runs, "grid": grid}

        reading = page.gate.read(f"pipeline:{name}:{span.query()}:{status}:{number}:{size}", read)
        found = reading.value
        return view("pipeline.html", page, reading, spec=spec, row=found["row"], grid=found["grid"],
                     runs=found["runs"][:size], more=len(found["runs"]) > size,
                     number=number, status=status, window=span, statuses=RUN_STATUSES)
