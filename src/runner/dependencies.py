"""Dependencies between pipelines (``depends_on``): the graph, readiness and downstream runs.

A pipeline lists in ``depends_on`` the pipelines that write the tables it reads. Then:

- **Readiness.** An interval of the downstream pipeline is *ready* when every upstream is complete
  for it (:func:`upstream_complete`): an interval-aware upstream has successful runs covering the
  interval, each *complete* (it started at or after the end of its own interval, so it saw all
  of it); an upstream that is not interval-aware (e.g. a cursor-appended raw table) has a success
  that started at or after the interval's end. A success that started before its interval ended
  (today's run) never makes a downstream interval ready.
- **Downstream runs.** When upstream runs succeed, :func:`runner.cascade.run_downstream` runs the
  downstream pipelines' ready intervals (:func:`candidates`) in dependency order, in the process
  that holds the store. Several upstream intervals touching one downstream interval give one run
  of it (coalesced); a downstream that is not interval-aware (it recomputes everything) runs once,
  for its newest interval.
- **The graph.** Discovery (:func:`pipelines.pipeline_registry.check_graph`) turns unknown names
  and cycles into broken entries naming the modules; here the graph is walked in dependency order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING

from core.intervals import Interval, current_interval, split
from core.logging import get_logger
from core.models import as_utc
from runner.backfill import Listener, Step

if TYPE_CHECKING:
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry
    from runner.coverage import History

log = get_logger("dependencies")


# ---- the graph ------------------------------------------------------------------------------

def downstream_of(registry: Registry, name: str) -> list[str]:
    """The pipelines that list ``name`` in ``depends_on`` (sorted)."""
    return sorted(n for n, s in registry.pipelines.items() if name in s.entry.depends_on)


def in_dependency_order(registry: Registry, names: Iterable[str]) -> list[str]:
    """``names`` ordered so that every pipeline comes after its upstreams (``graphlib``; discovery
    already refused cycles): each is placed as soon as its upstreams are, ties in the given order."""
    given = list(dict.fromkeys(names))
    rank = {name: i for i, name in enumerate(given)}
    graph: dict[str, list[str]] = {}
    todo = list(given)
    while todo:  # the pipelines asked for and all their upstreams
        name = todo.pop()
        if name not in graph:
            graph[name] = [up for up in registry.pipelines[name].entry.depends_on if up in registry.pipelines]
            todo.extend(graph[name])
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    ready: list[str] = []
    order = []
    while sorter.is_active():
        ready.extend(sorter.get_ready())
        ready.sort(key=lambda n: (rank.get(n, -1), n))  # upstreams not asked for first, they only unblock
        name = ready.pop(0)
        sorter.done(name)
        if name in rank:
            order.append(name)
    return order


def all_downstream(registry: Registry, roots: Iterable[str]) -> list[str]:
    """Every pipeline downstream of ``roots`` (transitively), in dependency order."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        for down in downstream_of(registry, todo.pop()):
            if down not in seen:
                seen.add(down)
                todo.append(down)
    return in_dependency_order(registry, sorted(seen))


def tree_lines(registry: Registry, name: str | None = None) -> list[str]:
    """The dependency tree as text: every root and what runs after it, or one pipeline's
    upstreams and downstreams."""

    def describe(spec: PipelineSpec) -> str:
        mode = spec.pipeline.loader.mode or type(spec.pipeline.loader).__name__
        return f"{spec.name}  ({spec.entry.granularity}, {mode}, {spec.source})"

    def walk(current: str, prefix: str, nexts: Callable[[str], list[str]], lines: list[str]) -> None:
        children = nexts(current)
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + describe(registry.pipelines[child]))
            walk(child, prefix + ("    " if last else "│   "), nexts, lines)

    def upstreams(n: str) -> list[str]:
        return sorted(u for u in registry.pipelines[n].entry.depends_on if u in registry.pipelines)

    lines: list[str] = []
    if name is not None:
        spec = registry.get(name)
        lines.append(describe(spec))
        if upstreams(name):
            lines.append("  reads from (depends_on):")
            walk(name, "  ", upstreams, lines)
        lines.append("  runs after it:" if downstream_of(registry, name) else "  nothing depends on it")
        walk(name, "  ", lambda n: downstream_of(registry, n), lines)
        return lines
    for root in sorted(n for n in registry.pipelines if not upstreams(n)):
        lines.append(describe(registry.pipelines[root]))
        walk(root, "", lambda n: downstream_of(registry, n), lines)
    return lines


# ---- readiness ------------------------------------------------------------------------------

def upstream_complete(store: Store, upstream: PipelineSpec, interval: Interval,
                      history: History | None = None) -> tuple[bool, str]:
    """Is ``upstream`` complete for ``interval``? (and why not, for the user).

    The one place readiness is decided: interval-aware upstreams by their coverage
    (``_dp_coverage``: complete successes only, kept as long as the data; ``history``: already
    read for days including the interval's), others by the run history.
    """
    from record.history import list_runs
    from runner.coverage import read_history

    if not upstream.pipeline.interval_aware:
        from record.tables import RUNS_TABLE

        has_history = store.database_exists() and store.table_exists(RUNS_TABLE)
        last = list_runs(store, upstream.name, status="success", limit=1) if has_history else []
        if last and as_utc(last[0].started_at) >= interval.end:
            return True, ""
        seen = (f"its last success started {as_utc(last[0].started_at):%Y-%m-%d %H:%M} UTC" if last
                else "it never succeeded")
        return False, (f"upstream '{upstream.name}' (not interval-aware) has no success started at or after "
                       f"{interval.end:%Y-%m-%d %H:%M} UTC ({seen})")
    if history is None:
        history = read_history(store, upstream.name, create=False, first=interval.start.date(),
                               last=_last_day(interval))
    if history.is_covered(interval):
        return True, ""
    return False, f"upstream '{upstream.name}' has no complete successful run covering {interval.label}"


def _last_day(interval: Interval) -> date:
    return (interval.end - timedelta(microseconds=1)).date()


def unready_reasons(store: Store, registry: Registry, spec: PipelineSpec, interval: Interval,
                    histories: dict[str, History] | None = None) -> list[str]:
    """Why ``interval`` of ``spec`` is not ready (empty: ready); ``histories``: upstreams'
    coverage already read (see :func:`readiness`)."""
    reasons = []
    for name in spec.entry.depends_on:
        ready, why = upstream_complete(store, registry.get(name), interval, (histories or {}).get(name))
        if not ready:
            reasons.append(why)
    return reasons


def readiness(store: Store, registry: Registry, spec: PipelineSpec,
              intervals: Sequence[Interval]) -> Callable[[Interval], list[str]]:
    """:func:`not_ready`'s reasons for each of ``intervals``, with the coverage of each
    interval-aware upstream read once for all of them instead of once per interval (a cascade's
    upstreams do not change while ``spec`` runs: they come before it in dependency order)."""
    checked = [readiness_interval(spec, i) for i in intervals]
    histories: dict[str, History] = {}
    if spec.entry.depends_on and checked:
        from runner.coverage import read_history

        first, last = min(c.start for c in checked).date(), max(_last_day(c) for c in checked)
        histories = {name: read_history(store, name, create=False, first=first, last=last)
                     for name in spec.entry.depends_on if registry.get(name).pipeline.interval_aware}

    def reasons(interval: Interval) -> list[str]:
        if not spec.entry.depends_on:
            return []
        return unready_reasons(store, registry, spec, readiness_interval(spec, interval), histories)
    return reasons


def readiness_interval(spec: PipelineSpec, interval: Interval) -> Interval:
    """The interval whose upstreams must be complete before ``spec`` runs for ``interval``: the
    interval itself; for a pipeline that is not interval-aware (it recomputes everything, its
    interval ends "now") the last complete interval of its granularity by the interval's end."""
    if spec.pipeline.interval_aware:
        return interval
    return _last_complete(spec.entry.granularity, interval.end)


def not_ready(store: Store, registry: Registry, spec: PipelineSpec, interval: Interval) -> tuple[Interval, list[str]]:
    """Whether a run of ``spec`` for ``interval`` may start, whatever its trigger: the interval
    readiness was decided for, and why it is not ready (empty: ready, or no ``depends_on``)."""
    checked = readiness_interval(spec, interval)
    if not spec.entry.depends_on:
        return checked, []
    return checked, unready_reasons(store, registry, spec, checked)


# ---- downstream runs ------------------------------------------------------------------------

@dataclass(frozen=True)
class Succeeded:
    """An upstream run that succeeded (what triggers its downstream)."""

    pipeline: str
    interval: Interval


def _last_complete(granularity: str, now: datetime) -> Interval:
    current = current_interval(granularity, now)  # type: ignore[arg-type]
    return split(current.start - timedelta(seconds=1), current.start, granularity)[-1]  # type: ignore[arg-type]


def candidates(registry: Registry, spec: PipelineSpec, touched: dict[str, list[Interval]],
                now: datetime) -> list[Interval]:
    """The intervals of ``spec`` that its upstreams' runs in this cascade may have made ready."""
    granularity = spec.entry.granularity
    found: set[Interval] = set()
    for name in spec.entry.depends_on:
        interval_aware = registry.pipelines[name].pipeline.interval_aware
        for interval in touched.get(name, []):
            if interval_aware:  # (an interval not ended yet is reported as not ready)
                found.update(split(interval.start, interval.end, granularity))
            else:  # it re-read everything up to now: the intervals that ended since its interval began
                found.update(i for i in split(interval.start, now, granularity) if i.end <= now)
                found.add(_last_complete(granularity, now))
    ordered = sorted(found)
    if ordered and not spec.pipeline.interval_aware:
        return ordered[-1:]  # it recomputes everything: one run, for the newest interval
    return ordered


# ---- backfills ------------------------------------------------------------------------------

def prepare_backfill(store: Store, registry: Registry, steps: Sequence[Step],
                     force: bool = False) -> tuple[list[Step], list[str]]:
    """The plan in dependency order, with the intervals of downstream pipelines that are not
    ready (and that no upstream step of this backfill re-loads) refused: turned into skips whose
    ``why`` says which upstream. Returns the steps and one line per refused interval; with
    ``force`` they run anyway and the lines say so."""
    rank = {name: i for i, name in enumerate(in_dependency_order(registry, (s.pipeline for s in steps)))}
    ordered = sorted(steps, key=lambda s: rank[s.pipeline])  # stable: oldest first within a pipeline
    reloaded = [s for s in ordered if s.action == "run"]
    refused: list[str] = []
    result: list[Step] = []
    for step in ordered:
        depends = step.spec.entry.depends_on
        if step.action == "run" and depends and not any(
                s.pipeline in depends and s.interval.start < step.interval.end and s.interval.end > step.interval.start
                for s in reloaded):
            reasons = unready_reasons(store, registry, step.spec, step.interval)
            if reasons and force:
                refused.append(f"{step.pipeline} {step.interval.label}: upstream not ready, running anyway "
                               f"(--force): {'; '.join(reasons)}")
            elif reasons:
                why = "refused: upstream not ready: " + "; ".join(reasons)
                refused.append(f"{step.pipeline} {step.interval.label}: upstream not ready: {'; '.join(reasons)}")
                step = Step(step.spec, step.interval, "skip", why, step.state)
        result.append(step)
    return result, refused


class SuccessRecorder(Listener):
    """Passes a backfill's progress on to ``inner`` and remembers the intervals that succeeded."""

    def __init__(self, inner: Listener) -> None:
        self.inner = inner
        self.succeeded: list[Succeeded] = []
        self.ran: list[tuple[str, Interval]] = []

    def started(self, total: int) -> None:
        self.inner.started(total)

    def running(self, steps: Sequence[Step]) -> None:
        self.inner.running(steps)

    def finished(self, step: Step, outcome: RunRecord) -> None:
        self.ran.append((step.pipeline, step.interval))
        if outcome.status == "success":
            self.succeeded.append(Succeeded(step.pipeline, step.interval))
        self.inner.finished(step, outcome)
