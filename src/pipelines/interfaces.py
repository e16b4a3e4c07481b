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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union

from pipelines.run_counts import RunCounts

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from core.config import Settings
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
    """The batch as a pandas DataFrame (no copy when it already is one)."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch.to_pandas()
    return batch


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
    #: The run's rejected rows, published with the run (the runner passes one per run).
    quarantined: RunQuarantine | None = None
    #: The pipeline's data checks (``audit``), run by a staging loader just before it publishes.
    checks: list[Any] = field(default_factory=list)

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
            from record.quarantine import RunQuarantine

            self.quarantined = RunQuarantine(self.store, self.pipeline, self.run_id, self.start, self.end)
        self.quarantined.add(rows)
        self.count("rows_quarantined", len(rows))


@dataclass(frozen=True)
class SqlSource:
    """A source ClickHouse can read by itself, e.g. ``file('/data/x.parquet', 'Parquet')``.

    When a pipeline has no transformers and runs on the embedded engine, an extractor that can
    describe its input this way lets the loader insert with one ``INSERT ... SELECT``: no Python
    in the data path. ``schema`` is the Arrow schema of the rows (nullable where nulls occur);
    ``parameters`` are the values of ``{name:Type}`` query parameters in ``expression``.
    ``fallback``: when ClickHouse refuses the source (a value it cannot read as the Python path
    would, a malformed line), the run streams the rows through :meth:`Extractor.extract`
    instead, whose messages and quarantine then decide.
    """

    expression: str
    schema: pa.Schema
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False


class Component(ABC):
    """Common base: a human name for logs and ``list``."""

    kind = "component"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Extractor(Component):
    kind = "extractor"

    @abstractmethod
    def extract(self, context: RunContext) -> Iterator[Batch]:
        """Yield the run's data in batches of at most ``context.settings.batch_size`` rows."""

    #: True when the extractor reads only the run's interval (it uses ``context.start/end``),
    #: so re-running an interval reproduces it; such pipelines can be backfilled.
    interval_aware: bool = False

    #: True when :meth:`sql_source` reads only tables of the store itself (a SQL pipeline), so
    #: the push-down works on a server too; ``file(...)`` sources are the embedded engine's only.
    reads_store: bool = False

    def sql_source(self, context: RunContext) -> SqlSource | None:
        """The run's input as a ClickHouse table expression, when ClickHouse can read it itself
        (optional fast path; ``None``: stream batches through :meth:`extract`)."""
        return None


class Transformer(Component):
    kind = "transformer"

    @abstractmethod
    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        """Return the transformed batch, or ``None`` to drop it."""


class Loader(Component):
    kind = "loader"

    #: Target table name, when the loader writes one (shown by ``list``, used by backfill checks).
    table: str | None = None
    #: True when the loader stages a run's rows in ClickHouse and calls ``audit.run.audit_staged``
    #: before publishing them, so the pipeline may declare data checks.
    supports_checks: bool = False

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
