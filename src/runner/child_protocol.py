"""Child processes of the runner: the typed request they read and how they are started.

Whatever starts a pipeline run in another process (the scheduler's fires, a parallel backfill's
workers) starts ``python -m runner.child`` (never a fork: chdb hangs in forked children) and
writes one :class:`ChildRequest` as a JSON line on its stdin, so no part of the runner depends on
the CLI's syntax. The request kinds:

- ``fire``: a scheduled fire of ``pipeline`` at ``fired_at`` (what ``cron_run`` does when cron
  fires it: its intervals, then its downstream pipelines, see :mod:`runner.fire`).
- ``runs``: the listed (pipeline, intervals) in order, then their downstream pipelines unless
  ``downstream`` is false.
- ``worker``: a parallel backfill's worker; further lines on stdin are its intervals
  (:mod:`runner.backfill.worker`).

The child inherits the parent's environment, umask and working directory; only ``PYTHONPATH``
gains the framework's ``src`` (:func:`child_env`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from core.config import PROJECT_ROOT
from core.exceptions import UsageError
from core.intervals import Interval, parse_moment

CHILD_MODULE = "runner.child"
Kind = Literal["fire", "runs", "worker"]
Trigger = Literal["manual", "cron", "backfill", "scheduler", "upstream"]


@dataclass(frozen=True)
class Work:
    """Intervals of one pipeline, run oldest first."""

    pipeline: str
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class ChildRequest:
    """What a child process is asked to do (see the module doc)."""

    kind: Kind
    trigger: Trigger = "manual"
    pipeline: str = ""                  # fire: the pipeline fired
    fired_at: datetime | None = None    # fire: the minute its schedule fired (UTC)
    work: tuple[Work, ...] = field(default=())  # runs
    downstream: bool = True

    def to_json(self) -> str:
        """The request as one JSON line (without the newline)."""
        return json.dumps({
            "kind": self.kind, "trigger": self.trigger, "pipeline": self.pipeline,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "work": [{"pipeline": w.pipeline, "intervals": [[i.start.isoformat(), i.end.isoformat()]
                                                            for i in w.intervals]} for w in self.work],
            "downstream": self.downstream,
        })


def _moment(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise UsageError(f"bad child request: {what} must be an ISO date-time string, got {value!r}")
    return parse_moment(value, f"bad child request: {what}")


def _work(item: Any, index: int) -> Work:
    if not isinstance(item, dict) or not isinstance(item.get("pipeline"), str) or not item["pipeline"]:
        raise UsageError(f"bad child request: work[{index}] needs a pipeline name")
    spans = item.get("intervals")
    if not isinstance(spans, list) or not spans:
        raise UsageError(f"bad child request: work[{index}] ({item['pipeline']}) needs a list of [start, end] "
                         "intervals")
    intervals = []
    for n, span in enumerate(spans):
        where = f"work[{index}].intervals[{n}]"
        if not isinstance(span, list) or len(span) != 2:
            raise UsageError(f"bad child request: {where} must be [start, end], got {span!r}")
        start, end = _moment(span[0], f"{where} start"), _moment(span[1], f"{where} end")
        if end <= start:
            raise UsageError(f"bad child request: {where} ends at or before its start ({span[0]} .. {span[1]})")
        intervals.append(Interval(start, end))
    return Work(item["pipeline"], tuple(intervals))


def parse_request(line: str) -> ChildRequest:
    """The request in ``line``; a bad one raises :class:`UsageError` with one line saying what."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"bad child request: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"bad child request: expected a JSON object, got {type(data).__name__}")
    kind, trigger = data.get("kind"), data.get("trigger", "manual")
    if kind not in get_args(Kind):
        raise UsageError(f"bad child request: kind must be one of {', '.join(get_args(Kind))}, got {kind!r}")
    if trigger not in get_args(Trigger):
        raise UsageError(f"bad child request: trigger must be one of {', '.join(get_args(Trigger))}, got {trigger!r}")
    downstream = data.get("downstream", True)
    if not isinstance(downstream, bool):
        raise UsageError(f"bad child request: downstream must be true or false, got {downstream!r}")
    pipeline, fired_at, work = data.get("pipeline") or "", None, ()
    if kind == "fire":
        if not isinstance(pipeline, str) or not pipeline:
            raise UsageError("bad child request: a fire needs the pipeline's name")
        fired_at = _moment(data.get("fired_at"), "fired_at")
    elif kind == "runs":
        items = data.get("work")
        if not isinstance(items, list) or not items:
            raise UsageError("bad child request: runs need a non-empty work list of {pipeline, intervals}")
        work = tuple(_work(item, i) for i, item in enumerate(items))
    return ChildRequest(kind, trigger, pipeline, fired_at, work, downstream)  # type: ignore[arg-type]


def child_env() -> dict[str, str]:
    """The parent's environment with the framework's ``src`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def child_argv(request: ChildRequest) -> list[str]:
    """The child's command line: the module, then a label for ``ps`` (the request is on stdin)."""
    label = [request.kind, request.pipeline] if request.pipeline else [request.kind]
    return [sys.executable, "-m", CHILD_MODULE, *label]


def is_child_command(cmdline: Sequence[str]) -> bool:
    """Is ``cmdline`` (a process's argv) a child started by :func:`start_child`?"""
    return any(cmdline[i:i + 2] == ["-m", CHILD_MODULE] for i in range(len(cmdline) - 1))


def start_child(request: ChildRequest, **popen: Any) -> subprocess.Popen[str]:
    """Start a child for ``request`` (a new process, never a fork) and send it the request.

    ``popen`` goes to :class:`subprocess.Popen` (stdout, stderr, ...). A ``worker`` keeps its
    stdin open for the intervals that follow; the others get EOF after the request.
    """
    process = subprocess.Popen(child_argv(request), stdin=subprocess.PIPE, text=True, bufsize=1, env=child_env(),
                               cwd=PROJECT_ROOT, **popen)
    assert process.stdin is not None
    process.stdin.write(request.to_json() + "\n")
    process.stdin.flush()
    if request.kind != "worker":
        process.stdin.close()
        process.stdin = None  # (so that communicate() does not flush it)
    return process
