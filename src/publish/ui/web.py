"""The status page: a read-only Flask application over the read model (:mod:`publish.ui.data`).

Pages are rendered on the server (tables work with JavaScript off; Jinja escapes every value);
the only script draws the rows-per-day charts with uPlot, served from this package like every
other asset. Served by waitress: one process, a few threads (chdb hangs in a forked child).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, abort, render_template, request, url_for

from core.config import Settings
from pipelines.pipeline_registry import Registry
from publish.ui import data, metrics
from publish.ui.access import Reading, StoreBusy, StoreGate
from publish.ui.history_pages import DEFAULT_GRID_DAYS, MAX_GRID_DAYS, history_routes, window
from publish.ui.joblog import run_log
from publish.ui.throttle import AuthThrottle

MAX_HOURLY_DAYS = 14
DEFAULT_CHART_DAYS = 14
REFRESH_CHOICES = (0, 10, 30, 60, 300)


class StatusPage:
    """State shared by the requests: the gate to the store, the registry, the counts cache."""

    def __init__(self, settings: Settings, registry: Callable[[], Registry]) -> None:
        self.settings = settings
        self.registry = registry
        self.gate = StoreGate(settings)
        self.counts = data.CountsCache()
        self.password = settings.ui_password.get_secret_value()
        self.throttle = AuthThrottle()

    def redact(self, text: Any) -> str:
        """``text`` as the logs show it: configured secrets, secret URL parameters and headers
        masked (:mod:`core.redaction`, through the process's one redactor)."""
        from core.logging import redact

        return redact("" if text is None else str(text), self.settings)

    def overview(self) -> Reading:
        registry = self.registry()
        return self.gate.read("overview", lambda store: data.overview(store, registry))

    def busy_text(self, reading: Reading) -> str:
        """``store busy (run X)``: the run holding the store when it is one we know."""
        if not reading.busy:
            return ""
        pid = self.gate.holder_pid()
        last = self.gate.last("overview")
        for row in (last.value if last else []):
            run = row.last_run
            if run is not None and run.status == "running" and pid and run.pid == pid:
                return f"store busy (run {run.run_id} of {row.name})"
        if reading.busy.startswith("unavailable"):
            return f"store {self.redact(reading.busy)}"
        return f"store busy ({self.redact(reading.busy)})"


def _refused(page: StatusPage) -> Response | None:
    """401 without the right password, 429 while this address is throttled (None: go on)."""
    if not page.password:
        return None
    address = request.remote_addr or ""
    wait = page.throttle.blocked_for(address)
    if wait:
        return Response(f"too many wrong passwords from {address}: retry in {wait} s\n", 429,
                        {"Retry-After": str(wait)})
    auth = request.authorization
    given = (auth.password or "") if auth is not None else ""
    if hmac.compare_digest(given.encode(), page.password.encode()):
        page.throttle.succeeded(address)
        return None
    if auth is not None:  # a browser's first request carries no credentials: not a failure
        page.throttle.failed(address)
    return Response("authentication required (UI_PASSWORD)\n", 401,
                    {"WWW-Authenticate": 'Basic realm="data-processor", charset="UTF-8"'})


def create_app(page: StatusPage) -> Flask:
    """The Flask application of the status page."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    app.jinja_env.filters.update(when=_when, hhmm=_hhmm, age=_age, num=_num, seconds=_seconds, redact=page.redact)
    app.jinja_env.globals.update(STATES=data.STATES, REFRESH_CHOICES=REFRESH_CHOICES)

    @app.before_request
    def _guard() -> Response | None:
        if request.method not in ("GET", "HEAD"):
            abort(405)
        return _refused(page)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                       "style-src 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store" if not request.path.startswith("/static/") else "max-age=3600"
        return response

    @app.errorhandler(StoreBusy)
    def _busy(exc: StoreBusy) -> tuple[str, int, dict[str, str]]:
        html = render_template("busy.html", holder=page.redact(exc.holder), refresh=5)
        return html, 503, {"Retry-After": "5"}

    _routes(app, page)
    _detail_routes(app, page)
    history_routes(app, page, _view)
    return app


def _view(template: str, page: StatusPage, reading: Reading, **context: Any) -> str:
    refresh = request.args.get("refresh", "")
    return render_template(template, reading=reading, busy=page.busy_text(reading),
                           refresh=int(refresh) if refresh.isdigit() and int(refresh) in REFRESH_CHOICES else 0,
                           args=request.args, **context)


def _routes(app: Flask, page: StatusPage) -> None:
    @app.get("/")
    def pipelines() -> str:
        from publish.ui.graph import dependency_svg

        registry = page.registry()
        reading = page.overview()
        graph = dependency_svg(reading.value, url_for("pipelines") + "pipelines/")
        return _view("pipelines.html", page, reading, broken=registry.broken, graph=graph)

    @app.get("/coverage")
    def coverage() -> str:
        hourly = request.args.get("hourly") == "1"
        span = window(3 if hourly else DEFAULT_GRID_DAYS, MAX_HOURLY_DAYS if hourly else MAX_GRID_DAYS)
        registry = page.registry()
        reading = page.gate.read(f"coverage:{span.query()}:{hourly}",
                                 lambda store: data.coverage_grid(store, registry, span.first, span.last, hourly))
        return _view("coverage.html", page, reading, window=span, hourly=hourly, first=span.first, last=span.last)

    @app.get("/rows")
    def rows() -> str:
        span = window(DEFAULT_CHART_DAYS, MAX_GRID_DAYS)
        first, last = span.first, span.last
        registry = page.registry()
        wanted = request.args.get("pipeline", "")
        specs = [s for s in data.counted_specs(registry) if not wanted or s.name == wanted]
        if wanted and not specs:
            abort(404, f"no pipeline named {wanted!r} loads a ClickHouse table")

        def read(store: Any) -> list[data.RowCounts]:
            from record.history import last_runs

            newest = last_runs(store) if data.has_history(store) else {}
            return [page.counts.get(store, spec, first, last, newest.get(spec.name)) for spec in specs]

        reading = page.gate.read(f"rows:{span.query()}:{wanted}", read)
        return _view("rows.html", page, reading, window=span, days=span.days, wanted=wanted,
                     charts=_chart_data(reading.value))



def _detail_routes(app: Flask, page: StatusPage) -> None:
    @app.get("/runs/<run_id>")
    def run(run_id: str) -> str:
        from record.history import get_run

        def read(store: Any) -> tuple[Any, list[dict[str, Any]]]:
            if not data.has_history(store):
                return None, []
            return get_run(store, run_id), data.run_checks(store, run_id)

        reading = page.gate.read(f"run:{run_id}", read)
        record, checks = reading.value
        if record is None:
            abort(404, f"no run {run_id!r} in the run history")
        tail = run_log(page.settings, record.pipeline, record.run_id, record.started_at)
        return _view("run.html", page, reading, run=record, checks=checks, log=tail)

    @app.get("/metrics")
    def metrics_page() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        reading = page.overview()
        return Response(metrics.render(reading.value, reading.as_of, reading.stale), 200,
                        {"Content-Type": CONTENT_TYPE_LATEST})


def _chart_data(counts: list[data.RowCounts]) -> list[dict[str, Any]]:
    """Per chart, the series uPlot draws (x: day as Unix seconds)."""
    charts = []
    for item in counts:
        if not item.days:
            continue
        charts.append({
            "pipeline": item.pipeline,
            "x": [datetime(d.day.year, d.day.month, d.day.day, tzinfo=UTC).timestamp() for d in item.days],
            "table": [d.rows for d in item.days],
            "reported": [d.reported for d in item.days],
        })
    return charts


# ---- formatting (Jinja filters) ------------------------------------------------------------

def _when(moment: datetime | None) -> str:
    return "" if moment is None else data.as_utc(moment).strftime("%Y-%m-%d %H:%M")


def _hhmm(moment: datetime) -> str:
    return data.as_utc(moment).strftime("%H:%M")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} days"


def _seconds(value: float | None) -> str:
    return "" if value is None else (f"{value:.2f} s" if value < 60 else _age(value))


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
