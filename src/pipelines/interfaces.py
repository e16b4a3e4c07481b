"""The three component interfaces and the run context they receive.

- An **extractor** yields batches for a run (bounded in size: ``context.settings.batch_size``).
- A **transformer** maps a batch to a batch (or ``None`` to drop it).
- A **loader** consumes batches and makes them visible only in :meth:`Loader.commit`, so a failed
  run leaves nothing half-written where the destination allows it.

A batch is a ``pyarrow.Table`` or a ``pandas.DataFrame``. Arrow stays Arrow unless user code asks
for pandas (see :func:`to_arrow` / :func:`to_pandas`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Union

from core.environment import scoped_environment

# Loaders name their run-private tables in the store with these (the framework drops them after a crash).
from core.run_tables import STAGING_PREFIX, run_table_name

__all__ = ["STAGING_PREFIX", "Batch", "Component", "Extractor", "Loader", "RunContext", "SqlSource", "Staged",
           "Transformer", "batch_rows", "run_table_name", "to_arrow", "to_pandas"]
from pipelines.run_counts import RunCounts

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from core.config import Settings
    from core.intervals import Interval
    from core.store import Store
    from record.quarantine import RunQuarantine
    from record.state import RunState

# pyarrow is imported where a batch is handled, not here: `help`, `list` and discovery of a
# pipeline module that imports only this module stay free of Arrow's ~0.15 s import.
Batch = Union["pa.Table", "pd.DataFrame"]


def batch_rows(batch: Batch) -> int:
    import pyarrow as pa

    return batch.num_rows if isinstance(batch, pa.Table) else len(batch)


def to_arrow(batch: Batch) -> pa.Table:
    """The batch as an Arrow table (no copy when it already is one)."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    return pa.Table.from_pandas(batch, preserve_index=False)


def to_pandas(batch: Batch) -> pd.DataFrame:
    """The batch as a pandas DataFrame (no copy when it already is one).

    An integer column holding NULLs arrives as pandas' nullable integer dtype (``Int64``, NULL as
    ``pd.NA``), not as float64 (pandas' default), so a frame handed back keeps its exact values and
    NULLs; integer columns without NULLs stay numpy ``int64``.
    """
    import pyarrow as pa

    if not isinstance(batch, pa.Table):
        return batch
    frame = batch.to_pandas()
    for i, column in enumerate(batch.columns):
        if pa.types.is_integer(column.type) and column.null_count:
            frame.isetitem(i, column.to_pandas(types_mapper=_nullable_integer))
    return frame


def _nullable_integer(type_: pa.DataType) -> Any:
    """pandas' nullable dtype for an Arrow integer type (``int64`` -> ``Int64``, ``uint8`` -> ``UInt8``)."""
    import pandas as pd
    import pyarrow as pa

    prefix = "UInt" if pa.types.is_unsigned_integer(type_) else "Int"
    return pd.api.types.pandas_dtype(f"{prefix}{type_.bit_width}")


@dataclass
class RunContext:
    """Everything a component may need during one run of one pipeline.

    ``start``/``end`` bound the run's data interval: ``start`` inclusive, ``end`` exclusive,
    timezone-aware (UTC).
    """

    run_id: str
    pipeline: str
    start: datetime
    end: datetime
    logger: logging.Logger
    settings: Settings
    store: Store
    state: RunState
    trigger: str = "manual"
    attempt: int = 1
    table_name: str | None = None
    # The pipeline's ``allow_empty``: 0 rows may replace existing rows (else replacing loaders refuse).
    allow_empty: bool = False
    counters: RunCounts = field(default_factory=RunCounts)
    #: The run's rejected rows, published with the run: injected by the runner like ``state``
    #: (a context built by hand passes ``record.quarantine.RunQuarantine`` to use :meth:`quarantine`).
    quarantined: RunQuarantine | None = None
    #: The pipeline's data checks (``audit``), run by a staging loader just before it publishes.
    checks: list[Any] = field(default_factory=list)
    #: Set once ``loader.commit`` is called: from then on a retry may repeat a commit that happened.
    commit_started: bool = False
    #: A batch's intervals (several contiguous intervals run as one, ``start``/``end`` spanning
    #: them), oldest first; empty for a run of one interval. Coverage, the empty-result rule and
    #: the data checks stay per interval.
    intervals: list[Interval] = field(default_factory=list)
    #: Rows a batch loaded per interval (by interval start), filled by a loader that can tell
    #: (the ClickHouse loader in ``interval`` mode); each interval's coverage records its count.
    rows_by_interval: dict[datetime, int] = field(default_factory=dict)
    #: Validates ``checks`` at run start and runs them on staged rows (``audit.run.AUDITOR``,
    #: injected by the runner): the pipeline calls :meth:`start_checks`, a loader :meth:`check_staged`.
    auditor: Auditor | None = None

    @property
    def config(self) -> Settings:
        """Alias of ``settings`` (pipelines read their own variables with ``config.extra()``)."""
        return self.settings

    @property
    def start_date(self) -> str:
        return self.start.strftime("%Y-%m-%d")

    @property
    def end_date(self) -> str:
        return self.end.strftime("%Y-%m-%d")

    def template_values(self) -> dict[str, str]:
        """Values for ``{placeholders}`` in URLs, paths and queries."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "start_date": self.start_date,
            "end_date": self.end_date,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
        }

    def add_secrets(self, values: Iterable[str]) -> None:
        """Mask these values (a token, a header's value) in the run's logs, errors and history."""
        from core.logging import add_secrets

        add_secrets(values)

    def count(self, counter: str, n: int = 1) -> None:
        """Add to a run counter (e.g. ``rows_quarantined``); counters end up in the run record."""
        self.counters.add(counter, n)

    def quarantine(self, rows: list[dict[str, Any]]) -> None:
        """Set bad input rows aside (``_dp_quarantine``) instead of failing the run.

        Each row: ``source`` (file, URL, table), ``line`` (int or None), ``raw`` (the input as
        text) and ``error`` (why it was rejected). The rows are staged with the run and become
        visible when it succeeds, replacing what earlier runs of the interval set aside.
        """
        if not rows:
            return
        if self.quarantined is None:
            from core.exceptions import DataProcessorError

            raise DataProcessorError(f"pipeline '{self.pipeline}': this run context has no quarantine "
                                     "(the runner provides one; a context built by hand needs quarantined=...)")
        self.quarantined.add(rows)
        self.count("rows_quarantined", len(rows))

    def start_checks(self, loader: Loader) -> None:
        """At run start, before any data moves: validate the pipeline's checks against ``loader``'s
        target and drop what failed runs of this interval kept (nothing without an auditor)."""
        if self.auditor is not None:
            self.auditor.start(self, loader)

    def check_staged(self, staged: Staged) -> None:
        """Run the pipeline's data checks on a loader's staged rows, before they are published.

        A loader that declares ``supports_checks = True`` calls this after its last batch and
        before it changes the target; a failing ``error`` check raises
        :class:`core.exceptions.CheckFailed` (the loader then publishes nothing).
        """
        if not self.checks:
            return
        if self.auditor is None:
            if not self.checks:
                return  # nothing to run (a context built by hand, without checks)
            from core.exceptions import DataProcessorError

            raise DataProcessorError(f"pipeline '{self.pipeline}': this run context cannot run data checks "
                                     "(the runner provides the auditor; a context built by hand needs auditor=...)")
        self.auditor.check(self, staged)


class Auditor(Protocol):
    """What runs a pipeline's data checks (``audit.run.AUDITOR``; the runner injects it)."""

    def start(self, context: RunContext, loader: Loader) -> None:
        """Validate the checks at run start (see :meth:`RunContext.start_checks`)."""

    def check(self, context: RunContext, staged: Staged) -> None:
        """Run the checks on staged rows (see :meth:`RunContext.check_staged`)."""


@dataclass(frozen=True)
class Staged:
    """A loader's staged rows in the store, handed to the data checks just before it publishes.

    ``target`` is the table the rows go to, ``staging`` the table holding them now. ``mode``:
    the loader's write mode (``interval``, ``append``, ``replace``, ``merge``); ``time_column``
    bounds the slice in interval mode; ``primary_key`` is the merge key. ``keep(name)``: when an
    ``error`` check fails, the checks keep the staged rows for inspection under ``name`` through
    it, and the loader then neither publishes nor drops them. Without it (``None``) the checks
    rename ``staging`` to ``name`` in the store, and the loader finds nothing under the old name.
    """

    target: str
    staging: str
    mode: str = "append"
    time_column: str | None = None
    primary_key: list[str] = field(default_factory=list)
    keep: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SqlSource:
    """A source ClickHouse can read by itself, e.g. ``file('/data/x.parquet', 'Parquet')``.

    When a pipeline has no transformers and runs on the embedded engine, an extractor that can
    describe its input this way lets the loader insert with one ``INSERT ... SELECT``: no Python
    in the data path. ``schema`` is the Arrow schema of the rows (nullable where nulls occur);
    ``parameters`` are the values of ``{name:Type}`` query parameters in ``expression``.
    ``fallback``: when ClickHouse refuses the source (a value it cannot read as the Python path
    would, a malformed line), the run streams the rows through :meth:`Extractor.extract`
    instead, whose messages and quarantine then decide. ``settings``: ClickHouse settings the
    statement reading the source needs (e.g. ``session_timezone``). ``remote``: where ClickHouse
    connects to read it (a database's ``host:port``, a bucket's endpoint), for the one-line error
    of a failed read. ``environment``: variables this process must hold while the embedded engine
    reads the source, because ClickHouse's own client library reads them when it connects and
    takes them from nowhere else (``PGTZ``); :meth:`reading` sets them for its block only.
    ``copied``: rows from outside the store (files, a bucket, a database), copied in bounded memory
    (``clickhouse_staging.COPY_SETTINGS``); False for a SQL pipeline over the store's own tables.
    """

    expression: str
    schema: pa.Schema
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    remote: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    copied: bool = True

    def reading(self) -> AbstractContextManager[None]:
        """The block in which statements read the source (:attr:`environment` set, then restored)."""
        return scoped_environment(self.environment)


class Component(ABC):  # noqa: B024 (not instantiated itself; its subclasses declare the abstract methods)
    """Common base: a human name for logs and ``list``."""

    kind = "component"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Extractor(Component):
    """Reads a source. Its capabilities are the class attributes below (declare them on your
    subclass; the defaults are what an extractor that declares nothing gets)."""

    kind = "extractor"

    @abstractmethod
    def extract(self, context: RunContext) -> Iterator[Batch]:
        """Yield the run's data in batches of at most ``context.settings.batch_size`` rows."""

    #: True when the extractor reads only the run's interval (it uses ``context.start/end``),
    #: so re-running an interval reproduces it; with an ``interval_scoped`` loader the pipeline
    #: can be backfilled.
    interval_aware: bool = False

    #: True when a run may be given several contiguous intervals at once (a batch, the registry's
    #: ``batch_size``): the extractor reads exactly ``[context.start, context.end)`` whatever its
    #: length, and every row's own time places it in its interval (no value is computed from
    #: ``start``/``end``, nothing is read from outside the range, e.g. a rolling window).
    reads_range: bool = False
    #: Why this extractor cannot read a range although its kind can (shown when ``batch_size`` is
    #: refused), or ``None``.
    range_refusal: str | None = None

    #: True when :meth:`sql_source` reads only tables of the store itself (a SQL pipeline), so
    #: the push-down works on a server too; ``file(...)`` sources are the embedded engine's only.
    reads_store: bool = False

    #: True when :meth:`sql_source` reads a remote source (a bucket, a database) that a ClickHouse
    #: server reaches by itself, so the push-down works on a server too (the server connects).
    reads_remote: bool = False

    def sql_source(self, context: RunContext) -> SqlSource | None:
        """The run's input as a ClickHouse table expression, when ClickHouse can read it itself
        (optional fast path; ``None``: stream batches through :meth:`extract`)."""
        return None


def declared(given: bool | None, inferred: bool) -> bool:
    """A capability given as a keyword (``create_file_extractor(path, interval_aware=True)``) wins;
    ``None`` (not given) keeps what the component inferred from its arguments."""
    return inferred if given is None else bool(given)


class Transformer(Component):
    kind = "transformer"

    @abstractmethod
    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        """Return the transformed batch, or ``None`` to drop it."""


class Loader(Component):
    """Writes a run's batches. Its capabilities are the class (or instance) attributes below:
    the framework reads nothing else about a loader, so one written from these docs is
    backfilled, checked, counted and cleaned up after a crash exactly like the built-in ones."""

    kind = "loader"

    #: The table the loader writes in the store (shown by ``list``; its rows are counted by
    #: ``counts`` and the status page, and compared per day when ``time_column`` is set).
    #: ``None`` for a destination outside the store.
    table: str | None = None
    #: How a commit changes ``table``: ``interval`` (the run's slice replaced), ``append``,
    #: ``replace`` (the whole table) or ``merge`` (shown by ``deps``; ``interval`` and ``replace``
    #: swap partitions/tables, which materialized views on ``table`` do not see). ``None``: unsaid.
    mode: str | None = None
    #: The column that places a row in a run's interval, when the loader knows it (rows per day).
    time_column: str | None = None
    #: True when a commit replaces exactly the run's interval ``[start, end)`` of the destination
    #: and touches nothing outside it: re-running an interval gives the same rows, runs of
    #: different intervals may run side by side (the run lock is per interval), and with an
    #: ``interval_aware`` extractor the pipeline can be backfilled.
    interval_scoped: bool = False
    #: True when the loader stages a run's rows in the store and calls
    #: :meth:`RunContext.check_staged` before publishing them, so the pipeline may declare data
    #: checks.
    supports_checks: bool = False
    #: True when calling :meth:`commit` again after a commit that failed midway (a lost server
    #: response) cannot write rows twice or lose any; only then does the runner retry a transient
    #: error raised once the commit started. A loader that cannot tell leaves it False.
    idempotent_commit: bool = False

    def begin(self, context: RunContext) -> None:  # noqa: B027  (optional hook)
        """Prepare for a run (e.g. create a staging table). Called once, before the first batch."""

    @abstractmethod
    def write(self, batch: Batch, context: RunContext) -> int:
        """Write one batch (not yet visible where avoidable); return the rows written."""

    def write_sql(self, source: SqlSource, context: RunContext) -> int | None:
        """Load ``source`` with one statement instead of batches (optional fast path); return the
        rows written, or ``None`` when this loader cannot (then the batches are streamed)."""
        return None

    def commit(self, context: RunContext) -> None:  # noqa: B027  (optional hook)
        """Make the run's rows visible. Called once, after the last batch, only on success."""

    def rollback(self, context: RunContext) -> None:  # noqa: B027  (optional hook)
        """Undo or clean up after a failed run (drop staging). Must not raise."""

    def clean_up_run(self, store: Store, run_id: str) -> list[str]:
        """Remove what run ``run_id`` left behind when its process died before :meth:`rollback`
        (kill -9, power loss); return a description of each thing removed (for the log).

        Called in another process, on a fresh instance of the pipeline's loader, by the
        crashed-run reaper (the next run, ``runs``, ``backfill``), ``kill`` and ``clean``, only
        once the run is known to be dead. Must be idempotent and must not fail when there is
        nothing to remove. Run-private tables in the store named with ``run_table_name(base,
        run_id)`` (``_dp_stage_<base>_<run id>``) are dropped by the framework itself; this hook is
        for anything else (a staging table in another database, temporary files).
        """
        return []

    def clean_up_leftovers(self, store: Store, live_run_ids: Collection[str]) -> list[str]:
        """``./run.sh clean``: remove what any run not in ``live_run_ids`` left behind (runs that
        died long ago, whose ids nobody has any more); return a description of each thing removed.
        Same rules as :meth:`clean_up_run`."""
        return []
