"""What a backfill did: per-pipeline tallies, why it stopped, progress events for the CLI.

Each step's outcome is a :class:`core.models.RunRecord`: the run's final record, or for an
interval that did not run (another process runs it, a worker died, the run could not start) a
record with no run id that is never stored (:func:`not_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from runner.backfill.planning import Step

if TYPE_CHECKING:
    from core.intervals import Interval
    from core.models import RunRecord, RunStatus


def not_run(pipeline: str, interval: Interval, status: RunStatus, reason: str, error: str,
            duration_seconds: float = 0.0) -> RunRecord:
    """The outcome of an interval that did not run: ``busy`` (already running elsewhere),
    ``crashed`` (its worker process died) or ``failed`` (the run could not start)."""
    from core.models import RunRecord

    now = datetime.now(UTC)
    return RunRecord(run_id="", pipeline=pipeline, interval_start=interval.start, interval_end=interval.end,
                     trigger="backfill", status=status, reason=reason, error=error, started_at=now, finished_at=now,
                     duration_seconds=duration_seconds)


@dataclass
class PipelineTally:
    planned: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Step, RunRecord]] = field(default_factory=list)
    busy: list[Step] = field(default_factory=list)
    not_run: int = 0
    rows: int = 0


@dataclass
class Report:
    """What a backfill did, per pipeline, and why it stopped early (if it did)."""

    tallies: dict[str, PipelineTally] = field(default_factory=dict)
    stopped: Literal["", "failure", "interrupted", "killed"] = ""
    seconds: float = 0.0

    def tally(self, step: Step) -> PipelineTally:
        return self.tallies.setdefault(step.pipeline, PipelineTally())

    def add(self, step: Step, outcome: RunRecord, continue_on_error: bool) -> None:
        """Count a step's outcome; a failure stops the backfill unless ``continue_on_error``."""
        tally = self.tally(step)
        if outcome.status == "success":
            tally.done += 1
            tally.rows += outcome.rows_loaded
        elif outcome.status == "busy":
            tally.busy.append(step)
        else:
            tally.failed.append((step, outcome))
            if outcome.reason in ("interrupted", "killed"):
                self.stopped = self.stopped or outcome.reason  # type: ignore[assignment]
            elif not continue_on_error:
                self.stopped = self.stopped or "failure"

    @property
    def failed(self) -> int:
        return sum(len(t.failed) for t in self.tallies.values())

    @property
    def busy(self) -> int:
        return sum(len(t.busy) for t in self.tallies.values())

    @property
    def ran(self) -> int:
        return sum(t.done + len(t.failed) for t in self.tallies.values())

    @property
    def exit_code(self) -> int:
        if self.stopped == "interrupted":
            return 130
        if self.failed or self.stopped:
            return 1
        return 75 if self.busy else 0


class Listener:
    """Receives progress events (the CLI draws a progress bar or prints lines)."""

    def started(self, total: int) -> None: ...

    def running(self, steps: Sequence[Step]) -> None: ...

    def finished(self, step: Step, outcome: RunRecord) -> None: ...
