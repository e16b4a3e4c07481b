"""The ClickHouse loader's write strategies: one class per write mode.

A strategy owns a run's staging table (:class:`StagingTable`), decides what its commit does to the
target, and declares what the framework reads of the loader: ``interval_scoped`` (a commit
replaces exactly the run's interval) and ``idempotent`` (a commit repeated after a lost answer
writes nothing twice). The commit is the same frame for every mode (:meth:`WriteStrategy.commit`:
the commit lock, an empty run's rule, the data checks on the staged rows, the target's structure);
each mode says only how the staged rows are published (:meth:`WriteStrategy.publish`). Publishing
goes through the store's adapter (``core.clickhouse_adapter``), which knows the topology, so a
Distributed or replicated target changes the adapter, not the strategies.

``interval`` is in ``clickhouse_interval``; ``append``, ``merge`` and ``replace`` are here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import ClassVar, Literal

import pyarrow as pa

from core.exceptions import LoadError
from core.locks import FileLock
from core.validators import quote_identifier
from pipelines.interfaces import RunContext, Staged
from pipelines.tools.loaders.clickhouse_attach import attach_recorded, ensure_attached_table, partitions_of_run
from pipelines.tools.loaders.clickhouse_sharded import mode_refusal
from pipelines.tools.loaders.clickhouse_staging import StagingTable, TableSpec

Mode = Literal["interval", "append", "replace", "merge"]


class WriteStrategy(ABC):
    """How a run's rows reach the target in one write mode (subclasses: one per mode)."""

    mode: ClassVar[Mode]
    #: A commit replaces exactly the run's interval ``[start, end)`` and nothing else.
    interval_scoped: ClassVar[bool] = False
    #: Committing again after a commit that failed midway writes no row twice and loses none.
    idempotent: ClassVar[bool] = True
    #: A commit can take rows away (the slice, the table): a run without rows still publishes
    #: (it empties what it replaces), and only with the pipeline's ``allow_empty``.
    replaces: ClassVar[bool] = False
    #: When another run created or changed the target meanwhile, the staged rows are moved into
    #: its structure before publishing (not for ``replace``: its staging table becomes the target).
    restages: ClassVar[bool] = True

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.staging = StagingTable(spec, self.engine())

    def engine(self) -> str:
        """The engine of a target created from the run's data."""
        return "MergeTree"

    # ---- during the run -----------------------------------------------------------------

    def begin(self, context: RunContext) -> None:
        self.staging = StagingTable(self.spec, self.engine())
        if context.store.adapter.table_exists(self.spec.table):
            sharding = context.store.adapter.sharding(self.spec.table)
            refusal = None if sharding is None else mode_refusal(
                context, self.mode, sharding, self.spec.run_id_column, self.spec.primary_key)
            if refusal:
                raise LoadError(refusal, table=self.spec.table)
            self.staging.like_target(context)

    def check_columns(self, names: list[str]) -> None:  # noqa: B027 (optional hook)
        """Refuse data without a column this mode needs (before any row is staged)."""

    def check_batch(self, data: pa.Table, context: RunContext) -> None:  # noqa: B027 (optional hook)
        """Refuse a batch this mode may not write (checked before it is staged)."""

    def check_staged_rows(self, context: RunContext) -> int:
        """Refuse rows a single ``INSERT ... SELECT`` staged that this mode may not write; the staged
        rows' count (a mode that checks counts them in the same statement)."""
        return self.staging.count(context)

    # ---- commit -------------------------------------------------------------------------

    def commit(self, context: RunContext) -> None:
        """Publish the staged rows (see the module doc); the staging table is gone afterwards
        unless a failed check kept it."""
        store = context.store
        # Commits that rebuild a partition must not interleave (two hourly runs of one day), and
        # two first runs must not both create the table.
        lock = FileLock(context.settings.run_dir / "locks" / f"table-{store.database}.{self.spec.table}.lock")
        if not lock.acquire(context.settings.store_lock_timeout, note=f"commit of run {context.run_id}"):
            raise LoadError(f"Timed out waiting for another run's commit to {self.spec.table} ({lock.holder()})")
        try:
            if not self.staging.exists:
                if not self.replaces or not store.adapter.table_exists(self.spec.table):
                    context.logger.info("No rows and no table '%s' yet: nothing to load", self.spec.table)
                    return
                self.staging.like_target(context)  # an empty interval or snapshot empties its slice
            self._refuse_empty_replacement(context)
            # Write-audit-publish: data checks see the staged rows before the target changes at all
            # (a first run's target is created only once its checks pass).
            context.check_staged(self.staged(context))
            if self.staging.publish_structure(context, restage=self.restages):
                context.logger.info("Created table %s (%s mode) from the run's data", self.spec.table, self.mode)
            with self.publish_lock(context):
                self.publish(context)
        finally:
            lock.release()
            self.staging.drop(context)

    def staged(self, context: RunContext) -> Staged:
        """What the data checks see; a failing check keeps the rows through :meth:`StagingTable.keep`."""
        spec = self.spec
        return Staged(spec.table, self.staging.name, self.mode, spec.time_column, spec.primary_key,
                      keep=partial(self.staging.keep, context))

    def held(self, context: RunContext) -> tuple[int, str]:
        """For a replacing mode: the target's rows a commit without rows would remove, in words."""
        return 0, ""

    def _refuse_empty_replacement(self, context: RunContext) -> None:
        """0 rows must not silently replace existing rows: a source outage looks exactly like that;
        the pipeline's ``allow_empty=True`` (``context.allow_empty``) says an empty result is real."""
        if self.staging.rows or context.allow_empty or not self.replaces \
                or not context.store.adapter.table_exists(self.spec.table):
            return
        from core.intervals import Interval

        held, what = self.held(context)
        if held:
            raise LoadError(f"source returned 0 rows for {Interval(context.start, context.end).label}, {what}; "
                            "set allow_empty=True if an empty interval is real")

    def publish_lock(self, context: RunContext) -> AbstractContextManager[None]:
        """A lock held while publishing, beyond the commit lock (which covers one host)."""
        return nullcontext()

    @abstractmethod
    def publish(self, context: RunContext) -> None:
        """Make the staged rows (in the target's structure) visible in the target."""

    def rollback(self, context: RunContext) -> None:
        self.staging.drop(context)


class AppendStrategy(WriteStrategy):
    """``append``: the staged partitions are attached to the target (``ATTACH PARTITION ... FROM``,
    no copy). A retried commit skips partitions this run attached already, told by the run id
    column or, without one, by ``_dp_attached`` (``clickhouse_attach``)."""

    mode = "append"

    def publish(self, context: RunContext) -> None:
        adapter, table, staging = context.store.adapter, self.spec.table, self.staging.name
        column = self.spec.run_id_column
        if self.staging.sharded is not None and column:  # begin() refused a Distributed target without it
            attached = self.staging.sharded.attach(column)
            context.logger.info("Appended %d rows to %s (%d partition(s) attached on its shards)",
                                self.staging.rows, table, attached)
            return
        tagged = column if column in self.staging.columns else None
        done = partitions_of_run(context, table, tagged)
        if not tagged:
            ensure_attached_table(context.store)  # once per commit, not per partition
        for partition in adapter.partitions(staging):
            if not tagged:
                attach_recorded(context, table, staging, partition)
                continue
            if partition in done:
                # This run attached it already (a retry after a lost response): attaching again
                # would double its rows. ATTACH is atomic per partition, so skipping is exact.
                context.logger.warning("Partition %s of %s already holds rows of run %s: not attached again",
                                       partition, table, context.run_id)
                continue
            adapter.attach_partition(table, staging, partition)
        context.logger.info("Appended %d rows to %s", self.staging.rows, table)


class MergeStrategy(AppendStrategy):
    """``merge``: a ReplacingMergeTree on ``primary_key`` with ``version_column``; staged partitions
    are attached as in ``append``, ClickHouse keeps the newest version of each key at merge time
    (readers use ``FINAL``)."""

    mode = "merge"

    def __init__(self, spec: TableSpec) -> None:
        if not spec.primary_key:
            raise LoadError(f"ClickHouse loader for '{spec.table}': mode 'merge' needs primary_key "
                            "(and usually version_column)")
        super().__init__(spec)

    def engine(self) -> str:
        version = self.spec.version_column
        return f"ReplacingMergeTree({quote_identifier(version)})" if version else "ReplacingMergeTree"


class ReplaceStrategy(WriteStrategy):
    """``replace``: the staging table becomes the target with ``EXCHANGE TABLES`` (atomic); the old
    data is dropped with the staging table. A replicated or Distributed target is never exchanged
    (its staging is not a copy of it, and EXCHANGE does not replicate): each partition is replaced
    or dropped instead, on every shard of a Distributed one (atomic per partition, not across them)."""

    mode = "replace"
    replaces = True
    restages = False

    def held(self, context: RunContext) -> tuple[int, str]:
        store = context.store
        rows = int(store.command(f"SELECT count() FROM {store.table(self.spec.table)}"))
        return rows, f"which would replace all {rows:,} rows of {self.spec.table}"

    def publish(self, context: RunContext) -> None:
        adapter, table, staging = context.store.adapter, self.spec.table, self.staging.name
        if self.staging.sharded is not None:
            self.staging.sharded.replace_all()
            how = "every partition of every shard replaced"
        elif adapter.swappable(table):
            self.staging.start_merges(context)
            adapter.exchange(table, staging)
            how = "EXCHANGE TABLES"
        else:
            adapter.replace_all(table, staging)
            how = "every partition replaced"
        context.logger.info("Replaced %s with %d rows (%s)", table, self.staging.rows, how)
