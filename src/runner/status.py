"""Pipeline status from the data: freshness, open failures and failing checks, computed once.

Every surface that says how a pipeline is doing (``check``, ``check --alert``, run alerts, the web
page, ``/metrics``) asks :func:`pipeline_statuses` and words its answer; none of them decides on
its own. Interface::

    pipeline_statuses(store, specs, now) -> dict[str, PipelineStatus]   # one entry per spec

    PipelineStatus: pipeline, freshness_basis ("data" | "last_success"), data_until, last_success,
                    expected_until, fresh, rule, behind_upstream, open_failures, failing_checks
    OpenFailure:    pipeline, start, end, kind, run_id, failed_at, message, runs, heal_command

The rules (docs/operations.md, "Freshness and open failures"):

- **Freshness on data.** For an interval-aware pipeline, ``data_until`` is the end of the newest
  interval a complete successful run loaded (``_dp_coverage``: a run of an interval still in
  progress is never complete, and a manual run of 2009 does not move the newest interval).
  ``expected_until`` is the end of the last complete interval at ``now - tolerance``
  (:func:`core.intervals.last_complete_interval`, the one definition), the tolerance being
  ``freshness_hours`` or two schedule periods: so an hourly-fired pipeline with daily intervals
  owes yesterday from two fires after midnight on, and one fired every minute owes the previous
  hour two minutes after it ended. Fresh when ``data_until >= expected_until``. A pipeline that
  is not interval-aware keeps ``freshness_basis = "last_success"``: its last successful run
  started at or after ``now - tolerance``. A pipeline without a schedule (or disabled) owes
  nothing: ``expected_until`` is None and ``fresh`` True. ``behind_upstream`` names the
  ``depends_on`` pipelines that are themselves behind what this one owes (the reason it is).
- **Open failures.** An interval whose run failed (kinds: :data:`FAILURE_KINDS`) stays open until
  a later complete success of that same interval is in the coverage, or a waiver
  (``_dp_waivers``) made after the failure covers it. For a pipeline that is not interval-aware,
  the failures since its last success are one open failure (the newest, with their count).
  Failures are read from the run history, so one older than ``RUN_HISTORY_TTL_DAYS`` is forgotten.
- **Failing checks.** The non-passing results of the runs of the open failures and of the
  pipeline's most recently checked run.

Read-only (a framework table not created yet counts as empty), so the web page may call it.

Cost: at most seven queries whatever the number of pipelines (which tables exist; newest covered
interval and last success per pipeline, both aggregates; open failures of interval-aware pipelines,
a join of the failed runs with the coverage; those of the others; the waivers; the check results
of the open failures' runs). Only aggregates and open failures reach Python, never the runs:
measured 32 ms for 50 pipelines and 20,000 runs (embedded store, best of 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from audit.results import CHECKS_TABLE, results_of_runs
from core.intervals import STEP, Interval, last_complete_interval
from core.models import as_utc
from record.coverage import COVERAGE_TABLE
from record.tables import RUNS_TABLE
from record.waivers import WAIVERS_TABLE, read_waivers

if TYPE_CHECKING:
    from audit.results import CheckResult
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec

FailureKind = Literal["error", "check_failed", "timeout", "crash", "killed", "store_busy"]
FAILURE_KINDS: tuple[FailureKind, ...] = ("error", "check_failed", "timeout", "crash", "killed", "store_busy")
_KIND_OF_REASON: dict[str, FailureKind] = {
    "check_failed": "check_failed", "timeout": "timeout", "killed": "killed", "interrupted": "killed",
    "store_lock_timeout": "store_busy",
}
MESSAGE_CHARS = 300  # of a failure's error, enough for a line in check and an alert


def failure_kind(status: str, reason: str, error: str = "") -> FailureKind:
    """The kind of a failed run from its recorded status and reason (runs recorded before the
    ``check_failed`` reason existed are recognised by their error text)."""
    if status == "crashed":
        return "crash"
    if reason in _KIND_OF_REASON:
        return _KIND_OF_REASON[reason]
    return "check_failed" if error.startswith("CheckFailed") else "error"


@dataclass(frozen=True)
class OpenFailure:
    """An interval that failed and was neither loaded since nor waived."""

    pipeline: str
    start: datetime
    end: datetime
    kind: FailureKind
    run_id: str  # the newest failed run of the interval
    failed_at: datetime  # when that run started
    message: str  # its error, first line
    runs: int = 1  # failed runs of the interval still open
    interval_aware: bool = True

    @property
    def label(self) -> str:
        """``2026-03-10`` (an interval), or ``runs since 2026-03-10 13:05 UTC`` (not interval-aware)."""
        if not self.interval_aware:
            return f"failed runs up to {self.failed_at:%Y-%m-%d %H:%M} UTC"
        return Interval(self.start, self.end).label

    @property
    def waive_command(self) -> str:
        """The command that closes this failure for good, to be completed with the reason."""
        if not self.interval_aware:
            return f"./run.sh waive {self.pipeline} --reason '...'"
        return f"./run.sh waive {self.pipeline} --date {self.start.date()} --reason '...'"

    @property
    def heal_command(self) -> str:
        """The command that loads this interval again (or runs the pipeline, when not interval-aware)."""
        if not self.interval_aware:
            return f"./run.sh cron_run {self.pipeline}"
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        hourly = " --hourly" if self.end - self.start < STEP["day"] else ""
        return f"./run.sh backfill {self.pipeline} --start {first} --end {last} --rerun failed{hourly}"


@dataclass(frozen=True)
class PipelineStatus:
    """What is true of one pipeline's data now (see the module docstring for the rules)."""

    pipeline: str
    freshness_basis: Literal["data", "last_success"]
    data_until: datetime | None  # end of the newest complete, successfully loaded interval
    last_success: datetime | None  # start of the newest successful run (any trigger, any interval)
    expected_until: datetime | None  # what should be loaded (data) / succeeded (last_success) by now
    fresh: bool
    rule: str  # how expected_until was derived, for people
    behind_upstream: tuple[str, ...] = ()
    open_failures: tuple[OpenFailure, ...] = ()
    failing_checks: tuple[CheckResult, ...] = field(default=())

    @property
    def freshness_mark(self) -> datetime | None:
        """The moment freshness is judged on: ``data_until`` or ``last_success``."""
        return self.data_until if self.freshness_basis == "data" else self.last_success


def tolerance(spec: PipelineSpec, now: datetime) -> tuple[timedelta, str]:
    """How far behind ``now`` a scheduled pipeline may be, and how that was derived:
    ``freshness_hours``, else two periods of its schedule (the gap between its last two fire
    times, in its zone), so one missed or failed run is tolerated and two are not."""
    if spec.entry.freshness_hours:
        hours = spec.entry.freshness_hours
        return timedelta(hours=hours), f"freshness_hours {hours:g}"
    from croniter import croniter

    from core.validators import cron_expression
    from runner.schedule import pipeline_zone

    fires = croniter(cron_expression(spec.entry.schedule or ""), now.astimezone(pipeline_zone(spec)))
    last = fires.get_prev(datetime)
    period = last - fires.get_prev(datetime)
    return 2 * period, f"two periods of '{spec.entry.schedule}' = {age(2 * period)}"


def age(delta: timedelta) -> str:
    """``5.0 h`` or ``3.2 days``."""
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def expectation(spec: PipelineSpec, now: datetime) -> tuple[datetime | None, str]:
    """What a pipeline owes by ``now`` (None: nothing, unscheduled or disabled) and the rule."""
    entry = spec.entry
    if not entry.schedule or not entry.enabled:
        return None, "no schedule"
    allowed, rule = tolerance(spec, now)
    if not spec.pipeline.interval_aware:
        return now - allowed, rule
    owed = last_complete_interval(entry.granularity, now - allowed)
    if entry.start_date is not None and owed.start.date() < entry.start_date:
        return None, f"{rule}; nothing owed before start_date {entry.start_date}"
    return owed.end, f"{rule}, {'daily' if entry.granularity == 'day' else 'hourly'} intervals"


def pipeline_statuses(store: Store, specs: Iterable[PipelineSpec], now: datetime | None = None
                      ) -> dict[str, PipelineStatus]:
    """The status of each pipeline in ``specs`` (one store visit, seven queries at most).

    Read-only: a framework table that does not exist yet (a store made by older code, before the
    first run) counts as empty, so the web page can call it too; writers create the tables.
    """
    now = now or datetime.now(UTC)
    specs = list(specs)
    aware = {s.name for s in specs if s.pipeline.interval_aware}
    with store.session():  # one engine open for all the queries
        present = _present(store)
        data_until = _data_until(store) if COVERAGE_TABLE in present else {}
        successes = _last_successes(store) if RUNS_TABLE in present else {}
        steps = {s.name: int(STEP[s.entry.granularity].total_seconds()) for s in specs if s.name in aware}
        failures = _open_failures(store, steps, {s.name for s in specs} - aware, present) \
            if RUNS_TABLE in present else {}
        checks = _failing_checks(store, [f.run_id for found in failures.values() for f in found]) \
            if CHECKS_TABLE in present else {}
    result = {}
    for spec in specs:
        name = spec.name
        expected, rule = expectation(spec, now)
        basis: Literal["data", "last_success"] = "data" if name in aware else "last_success"
        mark = data_until.get(name) if basis == "data" else successes.get(name)
        fresh = expected is None or (mark is not None and mark >= expected)
        result[name] = PipelineStatus(
            name, basis, data_until.get(name), successes.get(name), expected, fresh, rule,
            open_failures=tuple(failures.get(name, ())), failing_checks=tuple(checks.get(name, ())))
    return {name: _with_upstream(status, specs, result) for name, status in result.items()}


def _present(store: Store) -> set[str]:
    """Which of the tables status reads exist (none before setup_db)."""
    if not store.database_exists():
        return set()
    return set(store.adapter.create_statements([RUNS_TABLE, COVERAGE_TABLE, CHECKS_TABLE, WAIVERS_TABLE]))


def _with_upstream(status: PipelineStatus, specs: list[PipelineSpec],
                   statuses: dict[str, PipelineStatus]) -> PipelineStatus:
    if status.fresh or status.expected_until is None:
        return status
    spec = next(s for s in specs if s.name == status.pipeline)
    behind = []
    for upstream in spec.entry.depends_on:
        found = statuses.get(upstream)
        mark = found.freshness_mark if found else None
        if found is not None and (not found.fresh or mark is None or mark < status.expected_until):
            behind.append(upstream)
    if not behind:
        return status
    from dataclasses import replace

    return replace(status, behind_upstream=tuple(behind))


def _data_until(store: Store) -> dict[str, datetime]:
    # No FINAL: a replaced row has the same interval, so max() is the same and the read is cheaper.
    return {p: as_utc(end) for p, end in store.query_rows(
        f"SELECT pipeline, max(interval_end) FROM {store.table(COVERAGE_TABLE)} GROUP BY pipeline")}


def _last_successes(store: Store) -> dict[str, datetime]:
    # A run's 'success' row is its final version: no FINAL needed for the newest start.
    return {p: as_utc(at) for p, at in store.query_rows(
        f"SELECT pipeline, max(started_at) FROM {store.table(RUNS_TABLE)} WHERE status = 'success' GROUP BY pipeline")}


# Aliases differ from the columns: an alias named like a column would replace it in WHERE.
# A failed run of several intervals (a batch, or a day of an hourly pipeline recorded by older
# code) fails each of its intervals: its span is cut into intervals of the pipeline's granularity.
_FAILED_INTERVALS = """SELECT pipeline, run_id, started_at, status, reason, error, step,
        dateDiff('second', interval_start, interval_end) AS span,
        if(span > step AND span % step = 0, intDiv(span, step), 1) AS pieces,
        arrayJoin(range(toUInt32(pieces))) AS piece,
        if(pieces = 1, interval_start, interval_start + toIntervalSecond(piece * step)) AS piece_start,
        if(pieces = 1, interval_end, interval_start + toIntervalSecond((piece + 1) * step)) AS piece_end
    FROM (SELECT *, {seconds:Array(UInt32)}[indexOf({aware:Array(String)}, pipeline)] AS step FROM {runs} FINAL
          WHERE status IN ('failed', 'crashed') AND pipeline IN {aware:Array(String)})"""

_FAILED_RUNS = f"""SELECT pipeline, piece_start AS interval_start, piece_end AS interval_end,
        argMax(run_id, started_at) AS last_run, max(started_at) AS failed_at, argMax(status, started_at) AS last_status,
        argMax(reason, started_at) AS last_reason, argMax(substring(error, 1, 2000), started_at) AS last_error,
        count() AS runs
    FROM ({_FAILED_INTERVALS})
    GROUP BY pipeline, piece_start, piece_end"""

# Interval-aware: a failed interval is open while no complete success of that interval started after it.
_OPEN_INTERVALS = f"""SELECT f.pipeline, f.interval_start, f.interval_end, f.last_run, f.failed_at, f.last_status,
        f.last_reason, f.last_error, f.runs
    FROM ({_FAILED_RUNS}) AS f
    LEFT JOIN (SELECT pipeline, interval_start, interval_end, max(started_at) AS loaded_at FROM {{coverage}}
               WHERE pipeline IN {{aware:Array(String)}} GROUP BY pipeline, interval_start, interval_end) AS c
        ON f.pipeline = c.pipeline AND f.interval_start = c.interval_start AND f.interval_end = c.interval_end
    WHERE c.loaded_at < f.failed_at
    ORDER BY f.pipeline, f.interval_start"""

# Not interval-aware: the failures since the pipeline's last success, as one.
_OPEN_RUNS = """SELECT r.pipeline, min(r.interval_start), max(r.interval_end), argMax(r.run_id, r.started_at),
        max(r.started_at), argMax(r.status, r.started_at), argMax(r.reason, r.started_at),
        argMax(substring(r.error, 1, 2000), r.started_at), count()
    FROM {runs} AS r FINAL
    LEFT JOIN (SELECT pipeline, max(started_at) AS ok_at FROM {runs} WHERE status = 'success'
               AND pipeline IN {others:Array(String)} GROUP BY pipeline) AS s ON r.pipeline = s.pipeline
    WHERE r.status IN ('failed', 'crashed') AND r.pipeline IN {others:Array(String)} AND r.started_at > s.ok_at
    GROUP BY r.pipeline ORDER BY r.pipeline"""


def _open_failures(store: Store, aware: dict[str, int], others: set[str], present: set[str]
                   ) -> dict[str, list[OpenFailure]]:
    """``aware``: the interval-aware pipelines with the seconds of their intervals."""
    def sql(text: str) -> str:
        return text.replace("{runs}", store.table(RUNS_TABLE)).replace("{coverage}", store.table(COVERAGE_TABLE))

    rows: list[tuple[bool, Any]] = []
    if aware:
        names = sorted(aware)
        rows += [(True, r) for r in store.query_rows(sql(_OPEN_INTERVALS),
                                                     {"aware": names, "seconds": [aware[n] for n in names]})]
    if others:
        rows += [(False, r) for r in store.query_rows(sql(_OPEN_RUNS), {"others": sorted(others)})]
    waivers = read_waivers(store) if WAIVERS_TABLE in present else {}
    found: dict[str, list[OpenFailure]] = {}
    for interval_aware, (pipeline, start, end, run_id, failed_at, status, reason, error, runs) in rows:
        failure = OpenFailure(pipeline, as_utc(start), as_utc(end), failure_kind(status, reason, error), run_id,
                              as_utc(failed_at), _first_line(error or status), int(runs), interval_aware)
        if interval_aware:
            waived = any(w.covers(failure.start, failure.end, failure.failed_at) for w in waivers.get(pipeline, ()))
        else:  # a waiver of a pipeline that is not interval-aware closes every failure before it
            waived = any(failure.failed_at <= w.waived_at for w in waivers.get(pipeline, ()))
        if not waived:
            found.setdefault(pipeline, []).append(failure)
    return found


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:MESSAGE_CHARS] if lines else ""


def _failing_checks(store: Store, run_ids: list[str]) -> dict[str, list[CheckResult]]:
    """Non-passing check results of the open failures' runs and of each pipeline's newest checked run."""
    newest = [run_id for (run_id,) in store.query_rows(
        f"SELECT argMax(run_id, checked_at) FROM {store.table(CHECKS_TABLE)} GROUP BY pipeline")]
    found: dict[str, list[CheckResult]] = {}
    for results in results_of_runs(store, sorted(set(run_ids) | set(newest))).values():
        for result in results:
            if result.status != "pass":
                found.setdefault(result.pipeline, []).append(result)
    return found
