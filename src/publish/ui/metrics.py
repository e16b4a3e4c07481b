"""``/metrics``: the pipelines page's facts in Prometheus text format (``prometheus_client``).

Built per scrape from the same read model as the page (or its last snapshot when the store is
busy: ``dp_ui_snapshot_age_seconds`` then tells how old it is), in a registry of its own so
nothing is global.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from publish.ui.data import PipelineRow

STATUSES = ("success", "failed", "crashed", "running")


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()


class _Collector:
    def __init__(self, rows: Sequence[PipelineRow], as_of: datetime, store_busy: bool) -> None:
        self.rows, self.as_of, self.store_busy = rows, as_of, store_busy

    def collect(self) -> Iterator[Metric]:
        label = ["pipeline"]
        status = GaugeMetricFamily("dp_pipeline_last_run_status", "1 for the status of the pipeline's last run",
                                   labels=["pipeline", "status"])
        started = GaugeMetricFamily("dp_pipeline_last_run_timestamp_seconds", "When the last run started (Unix time)",
                                    labels=label)
        rows = GaugeMetricFamily("dp_pipeline_last_run_rows_loaded", "Rows the last run loaded", labels=label)
        duration = GaugeMetricFamily("dp_pipeline_last_run_duration_seconds", "How long the last run took",
                                     labels=label)
        failures = CounterMetricFamily("dp_pipeline_failures", "Failed or crashed runs in the kept run history",
                                       labels=label)
        age = GaugeMetricFamily("dp_pipeline_freshness_age_seconds", "Age of the last successful run",
                                labels=label)
        stale = GaugeMetricFamily("dp_pipeline_stale", "1 when the last success is older than the freshness rule",
                                  labels=label)
        checks = GaugeMetricFamily("dp_pipeline_failing_checks", "Checks whose latest result failed", labels=label)
        for row in self.rows:
            name = [row.name]
            run = row.last_run
            if run is not None:
                for value in STATUSES:
                    status.add_metric([row.name, value], 1.0 if run.status == value else 0.0)
                started.add_metric(name, _timestamp(run.started_at) or 0.0)
                rows.add_metric(name, float(run.rows_loaded))
                duration.add_metric(name, float(run.duration_seconds))
            failures.add_metric(name, float(row.failures_total))
            if row.freshness.age_seconds is not None:
                age.add_metric(name, row.freshness.age_seconds)
            stale.add_metric(name, 1.0 if row.freshness.state in ("stale", "never") else 0.0)
            checks.add_metric(name, float(len(row.failing_checks)))
        yield from (status, started, rows, duration, failures, age, stale, checks)
        snapshot = GaugeMetricFamily("dp_ui_snapshot_age_seconds",
                                     "Age of the data behind these metrics (0 unless the store was busy)")
        snapshot.add_metric([], max(0.0, (datetime.now(UTC) - self.as_of).total_seconds()) if self.store_busy else 0.0)
        yield snapshot


def render(rows: Sequence[PipelineRow], as_of: datetime, store_busy: bool) -> bytes:
    """The metrics page for these pipelines."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(rows, as_of, store_busy))  # type: ignore[arg-type]
    return generate_latest(registry)
