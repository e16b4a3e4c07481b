"""``./run.sh scheduler``: a foreground loop that starts due pipelines, for hosts without cron.

- At every minute boundary each enabled, scheduled pipeline whose schedule is due (croniter, in
  the pipeline's ``timezone``, else the system zone) is started as a NEW process (a ``fire``
  child of :mod:`runner.child_protocol`, trigger ``scheduler``) -- the same runner, lock, history
  and cascade as cron's ``cron_run`` (:mod:`runner.fire`). Never a fork of this process. The
  child processes the intervals that ended by the minute it was due (not by the time it got the
  store), so ``--once --now T`` and caught-up minutes use T.
- A pipeline whose previous process is still running is not started again (logged); the
  runner's lock would refuse it anyway, e.g. against a manual run.
- Runs missed while the scheduler was not running are not replayed (use backfill). Minutes
  missed while it ran but was stalled (suspend, clock jump) are caught up for at most
  ``CATCH_UP_MINUTES``; beyond that only the current minute counts.
- SIGTERM/SIGINT: no new runs start; running children get ``grace`` seconds to finish, then
  SIGTERM (they record themselves as failed/killed), then SIGKILL 10 s later. The schedule is
  read at start: restart the scheduler after changing pipelines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from types import FrameType

from core.config import Settings
from core.logging import get_logger
from pipelines.pipeline_registry import PipelineSpec, Registry
from runner.child_protocol import ChildRequest, start_child
from runner.schedule import ScheduleError, cron_fields, is_due, pipeline_zone

log = get_logger("scheduler")

CATCH_UP_MINUTES = 5
KILL_AFTER_TERM = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    minute: datetime


class Clock:
    """Wall-clock time; for tests, a scaled clock where a minute lasts ``tick`` real seconds."""

    def __init__(self, tick: float = 60.0, start: datetime | None = None) -> None:
        self.scale = 60.0 / tick
        self.start = start or datetime.now(UTC)
        self.t0 = time.monotonic()
        self.real = tick == 60.0 and start is None

    def now(self) -> datetime:
        if self.real:
            return datetime.now(UTC)
        return self.start + timedelta(seconds=(time.monotonic() - self.t0) * self.scale)

    def real_seconds(self, scheduler_seconds: float) -> float:
        return scheduler_seconds / self.scale


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Scheduler:
    def __init__(self, settings: Settings, registry: Registry, grace: float = 30.0,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.grace = grace
        self.clock = clock or Clock()
        self.children: dict[str, Child] = {}
        self.stopping = False
        self.results: list[tuple[str, int]] = []
        self.specs: list[tuple[PipelineSpec, tzinfo]] = []
        for spec in registry.pipelines.values():
            if not spec.entry.schedule or not spec.entry.enabled:
                continue
            try:
                cron_fields(spec.entry.schedule)
            except ScheduleError as exc:
                log.error("Not scheduling '%s': %s", spec.name, exc)
                continue
            zone = pipeline_zone(spec)
            self.specs.append((spec, zone))
        for broken in registry.broken:
            log.error("Not scheduling pipelines of broken module %s: %s", broken.source, broken.error)

    # ---- firing ------------------------------------------------------------------------------

    def due(self, minute: datetime) -> list[PipelineSpec]:
        return [spec for spec, zone in self.specs if is_due(spec.entry.schedule or "", zone, minute)]

    def fire(self, spec: PipelineSpec, minute: datetime) -> bool:
        running = self.children.get(spec.name)
        if running is not None and running.process.poll() is None:
            log.warning("Not starting %s for %s: its previous run (pid %d, started for %s) is still running",
                        spec.name, f"{minute:%Y-%m-%d %H:%M}", running.process.pid, f"{running.minute:%H:%M}")
            return False
        process = start_child(ChildRequest("fire", "scheduler", spec.name, minute.astimezone(UTC)))
        self.children[spec.name] = Child(spec.name, process, minute)
        log.info("Started %s (pid %d), due at %s", spec.name, process.pid, f"{minute:%Y-%m-%d %H:%M} UTC")
        return True

    def reap(self) -> None:
        for name, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            del self.children[name]
            self.results.append((name, code))
            outcome = {0: "succeeded", 75: "was already running elsewhere (lock held)"}.get(
                code, f"failed (exit {code})")
            (log.info if code in (0, 75) else log.error)("%s (pid %d) %s", name, child.process.pid, outcome)

    # ---- loop --------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # second signal: do not wait for the grace period
            self.grace = 0
        self.stopping = True

    def run(self) -> int:
        """Loop until SIGTERM/SIGINT; returns 0 after a clean stop."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            names = ", ".join(f"{s.name} ({s.entry.schedule}{' ' + s.entry.timezone if s.entry.timezone else ''})"
                              for s, _ in self.specs) or "none"
            log.info("Scheduler started (pid %d): %d scheduled pipeline(s): %s", os.getpid(), len(self.specs), names)
            last = _minute(self.clock.now())  # the current minute is already under way: start with the next
            while not self.stopping:
                self.reap()
                now = self.clock.now()
                if now < last + timedelta(minutes=1):
                    remaining = (last + timedelta(minutes=1) - now).total_seconds()
                    time.sleep(min(0.5, max(0.01, self.clock.real_seconds(remaining))))
                    continue
                current = _minute(now)
                behind = int((current - last).total_seconds() // 60)
                if behind > CATCH_UP_MINUTES:
                    log.warning("The clock moved %d minutes at once (suspend or clock change); not replaying "
                                "them, only %s counts (use backfill for missed intervals)", behind,
                                f"{current:%H:%M}")
                    minutes = [current]
                else:
                    minutes = [last + timedelta(minutes=i) for i in range(1, behind + 1)]
                last = current
                for minute in minutes:
                    for spec in self.due(minute):
                        self.fire(spec, minute)
            log.info("Stopping: no new runs; waiting up to %g s for %d running pipeline(s)",
                     self.grace, len(self.children))
            self.shutdown()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def once(self, moment: datetime) -> int:
        """Start what is due at ``moment``'s minute, wait for it; the worst exit code (0 if none)."""
        minute = _minute(moment.astimezone(UTC))
        due = self.due(minute)
        for spec in due:
            self.fire(spec, minute)
        while self.children:
            self.reap()
            time.sleep(0.05)
        return max((code for _, code in self.results), default=0)

    def shutdown(self) -> None:
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        self.reap()
        for child in self.children.values():
            log.warning("Stopping %s (pid %d) with SIGTERM: it is recorded as failed (killed)",
                        child.name, child.process.pid)
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER_TERM
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for child in self.children.values():
            log.error("Killing %s (pid %d) with SIGKILL: it did not stop on SIGTERM", child.name, child.process.pid)
            child.process.kill()
            child.process.wait()
        self.reap()
