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
- ``cascade``: what is left of a cascade (:class:`Cascade`), continued in a worker that exits
  when the embedded store changes hands (:mod:`runner.cascade`).

The child inherits the parent's environment, umask and working directory; only ``PYTHONPATH``
gains the framework's ``src`` (:func:`child_env`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TextIO, get_args

from core.config import PROJECT_ROOT
from core.exceptions import UsageError
from core.intervals import Interval, parse_moment

CHILD_MODULE = "runner.child"
Kind = Literal["fire", "runs", "worker", "cascade"]
Trigger = Literal["manual", "cron", "backfill", "scheduler", "upstream"]


@dataclass(frozen=True)
class Work:
    """Intervals of one pipeline, run oldest first."""

    pipeline: str
    intervals: tuple[Interval, ...]


@dataclass
class Cascade:
    """Where a cascade stands (:mod:`runner.cascade`): what it may still run and what it did."""

    order: tuple[str, ...]  # the downstream pipelines, in dependency order
    now: datetime
    touched: dict[str, list[Interval]] = field(default_factory=dict)  # succeeded, upstream runs included
    decided: set[tuple[str, Interval]] = field(default_factory=set)   # ran, reported not ready, or excluded
    failed: dict[str, list[Interval]] = field(default_factory=dict)
    stopped: bool = False  # a run was stopped by a signal: nothing else starts

    def to_dict(self) -> dict[str, Any]:
        def spans(pairs: Iterable[tuple[str, Interval]]) -> list[list[str]]:
            return sorted([name, i.start.isoformat(), i.end.isoformat()] for name, i in pairs)

        def flat(by_name: dict[str, list[Interval]]) -> list[tuple[str, Interval]]:
            return [(name, i) for name, intervals in by_name.items() for i in intervals]
        return {"order": list(self.order), "now": self.now.isoformat(), "touched": spans(flat(self.touched)),
                "decided": spans(self.decided), "failed": spans(flat(self.failed)), "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: Any) -> Cascade:
        """The cascade in ``data`` (:meth:`to_dict`'s); a bad one raises :class:`UsageError`."""
        if not isinstance(data, dict) or not isinstance(data.get("order"), list) or not all(
                isinstance(n, str) and n for n in data["order"]):
            raise UsageError("bad child request: a cascade needs its order, a list of pipeline names")
        cascade = cls(tuple(data["order"]), _moment(data.get("now"), "cascade.now"),
                      stopped=data.get("stopped") is True)
        for key in ("touched", "decided", "failed"):
            for name, interval in _triples(data.get(key, []), f"cascade.{key}"):
                if key == "decided":
                    cascade.decided.add((name, interval))
                else:
                    getattr(cascade, key).setdefault(name, []).append(interval)
        return cascade

    def failures(self) -> int:
        """How many downstream runs failed so far."""
        return sum(len(v) for v in self.failed.values())


@dataclass(frozen=True)
class ChildRequest:
    """What a child process is asked to do (see the module doc)."""

    kind: Kind
    trigger: Trigger = "manual"
    pipeline: str = ""                  # fire: the pipeline fired
    fired_at: datetime | None = None    # fire: the minute its schedule fired (UTC)
    work: tuple[Work, ...] = field(default=())  # runs
    downstream: bool = True
    cascade: Cascade | None = None      # cascade: where it stands

    def to_json(self) -> str:
        """The request as one JSON line (without the newline)."""
        return json.dumps({
            "kind": self.kind, "trigger": self.trigger, "pipeline": self.pipeline,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "work": [{"pipeline": w.pipeline, "intervals": [[i.start.isoformat(), i.end.isoformat()]
                                                            for i in w.intervals]} for w in self.work],
            "downstream": self.downstream,
            **({"cascade": self.cascade.to_dict()} if self.cascade else {}),
        })


def _moment(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise UsageError(f"bad child request: {what} must be an ISO date-time string, got {value!r}")
    return parse_moment(value, f"bad child request: {what}")


def _interval(span: Any, where: str) -> Interval:
    if not isinstance(span, list) or len(span) != 2:
        raise UsageError(f"bad child request: {where} must be [start, end], got {span!r}")
    start, end = _moment(span[0], f"{where} start"), _moment(span[1], f"{where} end")
    if end <= start:
        raise UsageError(f"bad child request: {where} ends at or before its start ({span[0]} .. {span[1]})")
    return Interval(start, end)


def _triples(items: Any, where: str) -> list[tuple[str, Interval]]:
    if not isinstance(items, list):
        raise UsageError(f"bad child request: {where} must be a list of [pipeline, start, end]")
    found = []
    for n, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
            raise UsageError(f"bad child request: {where}[{n}] must be [pipeline, start, end], got {item!r}")
        found.append((item[0], _interval(item[1:], f"{where}[{n}]")))
    return found


def _work(item: Any, index: int) -> Work:
    if not isinstance(item, dict) or not isinstance(item.get("pipeline"), str) or not item["pipeline"]:
        raise UsageError(f"bad child request: work[{index}] needs a pipeline name")
    spans = item.get("intervals")
    if not isinstance(spans, list) or not spans:
        raise UsageError(f"bad child request: work[{index}] ({item['pipeline']}) needs a list of [start, end] "
                         "intervals")
    intervals = tuple(_interval(span, f"work[{index}].intervals[{n}]") for n, span in enumerate(spans))
    return Work(item["pipeline"], intervals)


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
    pipeline, fired_at, work, cascade = data.get("pipeline") or "", None, (), None
    if kind == "fire":
        if not isinstance(pipeline, str) or not pipeline:
            raise UsageError("bad child request: a fire needs the pipeline's name")
        fired_at = _moment(data.get("fired_at"), "fired_at")
    elif kind == "runs":
        items = data.get("work")
        if not isinstance(items, list) or not items:
            raise UsageError("bad child request: runs need a non-empty work list of {pipeline, intervals}")
        work = tuple(_work(item, i) for i, item in enumerate(items))
    elif kind == "cascade":
        cascade = Cascade.from_dict(data.get("cascade"))
    return ChildRequest(kind, trigger, pipeline, fired_at, work, downstream, cascade)  # type: ignore[arg-type]


def answer_stream() -> TextIO:
    """A child's channel to its parent: the real stdout, while anything user code prints (to
    ``sys.stdout``) goes to stderr instead, so it cannot break the protocol's lines."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answers


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
