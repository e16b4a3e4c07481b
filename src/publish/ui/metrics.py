"""``/metrics``: the pipelines' state in Prometheus text format (``prometheus_client``).

Built per scrape from the same read model as the page (or its last snapshot when the store is
busy: ``dp_ui_snapshot_age_seconds`` then tells how old it is), in a registry of its own so
nothing is global. Freshness and open failures come from the one status computation
(:mod:`runner.status`), run counts and durations from the never-shrinking ``_dp_run_totals``
(:mod:`record.totals`), so the counters stay monotonic when the run history expires and when the
page restarts. Names follow the Prometheus conventions (base units, ``_total`` counters,
``_timestamp_seconds`` for Unix times) and ``promtool check metrics`` accepts the page.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from publish.ui.data import PipelineRow
from record.totals import DURATION_BUCKETS, FINAL_STATUSES

STATUSES = ("success", "failed", "crashed", "running")


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()


def _gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, labels=["pipeline", *labels])


class _Collector:
    def __init__(self, rows: Sequence[PipelineRow], as_of: datetime, store_busy: bool) -> None:
        self.rows, self.as_of, self.store_busy = rows, as_of, store_busy

    def collect(self) -> Iterator[Metric]:
        yield from self._status()
        yield from self._last_run()
        yield from self._totals()
        yield from self._checks()
        snapshot = GaugeMetricFamily("dp_ui_snapshot_age_seconds",
                                     "Age of the data behind these metrics (0 unless the store was busy)")
        snapshot.add_metric([], max(0.0, (datetime.now(UTC) - self.as_of).total_seconds()) if self.store_busy else 0.0)
        yield snapshot

    def _status(self) -> Iterator[Metric]:
        until = _gauge("dp_pipeline_data_until_timestamp_seconds",
                       "End of the newest complete, successfully loaded interval (Unix time)")
        expected = _gauge("dp_pipeline_expected_until_timestamp_seconds",
                          "Where the data should reach by now by the pipeline's schedule, Unix time")
        fresh = _gauge("dp_pipeline_fresh", "1 when the loaded data reaches what the schedule expects, else 0")
        success = _gauge("dp_pipeline_last_success_timestamp_seconds", "When the last successful run started")
        open_failures = _gauge("dp_pipeline_open_failures",
                               "Failed intervals not loaded by a later run (nor waived)")
        for row in self.rows:
            name, status = [row.name], row.status
            if status is None:
                continue
            for family, value in ((until, status.data_until), (expected, status.expected_until),
                                  (success, status.last_success)):
                if value is not None:
                    family.add_metric(name, _timestamp(value) or 0.0)
            if status.expected_until is not None:
                fresh.add_metric(name, 1.0 if status.fresh else 0.0)
            open_failures.add_metric(name, float(len(status.open_failures)))
        yield from (until, expected, fresh, success, open_failures)

    def _last_run(self) -> Iterator[Metric]:
        status = _gauge("dp_pipeline_last_run_status", "1 for the status of the pipeline's last run", "status")
        started = _gauge("dp_pipeline_last_run_timestamp_seconds", "When the last run started (Unix time)")
        rows = _gauge("dp_pipeline_last_run_rows_loaded", "Rows the last run loaded")
        duration = _gauge("dp_pipeline_last_run_duration_seconds", "How long the last run took")
        for row in self.rows:
            run, name = row.last_run, [row.name]
            if run is None:
                continue
            for value in STATUSES:
                status.add_metric([row.name, value], 1.0 if run.status == value else 0.0)
            started.add_metric(name, _timestamp(run.started_at) or 0.0)
            rows.add_metric(name, float(run.rows_loaded))
            duration.add_metric(name, float(run.duration_seconds))
        yield from (status, started, rows, duration)

    def _totals(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("dp_pipeline_runs", "Finished runs by final status, ever recorded",
                                   labels=["pipeline", "status"])
        loaded = CounterMetricFamily("dp_pipeline_rows_loaded", "Rows loaded by successful runs, ever recorded",
                                     labels=["pipeline"])
        durations = HistogramMetricFamily("dp_pipeline_run_duration_seconds", "Durations of finished runs",
                                          labels=["pipeline"])
        for row in self.rows:
            totals = row.totals
            for value in FINAL_STATUSES:
                runs.add_metric([row.name, value], float(totals.runs.get(value, 0)))
            loaded.add_metric([row.name], float(totals.rows_loaded))
            buckets = [(f"{bound:g}", float(n)) for bound, n in zip(DURATION_BUCKETS, totals.duration_buckets,
                                                                   strict=True)]
            durations.add_metric([row.name], [*buckets, ("+Inf", float(totals.count))], totals.duration_sum)
        yield from (runs, loaded, durations)

    def _checks(self) -> Iterator[Metric]:
        passing = GaugeMetricFamily("dp_check_passing", "0 when the check failed on the pipeline's most recently "
                                    "checked run or on the run of an open failure, else 1",
                                    labels=["pipeline", "check", "severity"])
        failing = GaugeMetricFamily("dp_check_failing_rows", "Rows the check found failing there",
                                    labels=["pipeline", "check"])
        for row in self.rows:
            # a failure of a still-open interval outweighs a later pass (the day is still not published)
            results = {r.check_name: r for r in row.checks}
            for result in getattr(row.status, "failing_checks", ()):
                if result.status != "pass":
                    results[result.check_name] = result
            for name, result in sorted(results.items()):
                passing.add_metric([row.name, name, result.severity], 1.0 if result.status == "pass" else 0.0)
                failing.add_metric([row.name, name], float(result.failing))
        yield from (passing, failing)


def render(rows: Sequence[PipelineRow], as_of: datetime, store_busy: bool) -> bytes:
    """The metrics page for these pipelines."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(rows, as_of, store_busy))  # type: ignore[arg-type]
    return generate_latest(registry)
