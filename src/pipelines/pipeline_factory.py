"""Pipelines: an extractor, zero or more transformers and a loader, streamed batch by batch.

Building a pipeline does no I/O, so importing a pipeline module is always cheap and safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.exceptions import (
    ExtractError,
    LoadError,
    PipelineError,
    StoreConnectionLost,
    StoreError,
    StoreLockTimeout,
)
from pipelines.interfaces import Extractor, Loader, RunContext, SqlSource, Transformer, batch_rows
from pipelines.run_counts import RunCounts


class Pipeline:
    """Extract -> transform (chained, in order) -> load, one batch at a time."""

    def __init__(self, extractor: Extractor, loader: Loader, transformers: Sequence[Transformer] = (),
                 name: str | None = None) -> None:
        for role, component, kind in (("extractor", extractor, Extractor), ("loader", loader, Loader)):
            if not isinstance(component, kind):
                raise PipelineError(f"Pipeline {name!r}: {role} must be a {kind.__name__}, "
                                    f"got {type(component).__name__}")
        for transformer in transformers:
            if not isinstance(transformer, Transformer):
                raise PipelineError(f"Pipeline {name!r}: transformers must be Transformer objects, "
                                    f"got {type(transformer).__name__}")
        self.extractor = extractor
        self.transformers = list(transformers)
        self.loader = loader
        self.name = name or extractor.name

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}>"

    @property
    def interval_aware(self) -> bool:
        """True when a run reads and writes only its data interval (so it can be backfilled)."""
        return bool(self.extractor.interval_aware and self.loader.interval_scoped)

    def run(self, context: RunContext) -> RunCounts:
        """Stream the run's batches into the loader and commit; roll back on any failure. Returns
        what the run moved: ``context.counters``, counted as it goes (a failed run's too)."""
        stats = context.counters
        log = context.logger
        context.start_checks(self.loader)  # bad check definitions fail here, before any data moves
        self.loader.begin(context)
        try:
            if not self._push_down(context, stats):
                self._stream(context, stats)
            context.commit_started = True
            self.loader.commit(context)
        except BaseException:
            try:
                self.loader.rollback(context)
            except Exception:  # rollback must not hide the original error
                log.exception("Loader %s failed to clean up after the error above", self.loader.name)
            raise
        return stats

    def _push_down(self, context: RunContext, stats: RunCounts) -> bool:
        """Let ClickHouse read the source itself when nothing in Python needs the rows."""
        extractor = self.extractor
        if self.transformers and extractor.reads_remote:
            context.logger.info("%s: read through Python: the pipeline's transformers need the rows in Python",
                                extractor.name)
        if self.transformers or not (context.settings.is_embedded or extractor.reads_store
                                     or extractor.reads_remote):
            return False
        source = self.extractor.sql_source(context)
        if source is None:
            return False
        try:
            with source.reading():
                rows = self.loader.write_sql(source, context)
        except (StoreError, LoadError) as exc:
            # Only ClickHouse refusing the statement or the loader refusing its rows; a timeout,
            # an interrupt or a busy store still ends the run, and a lost connection is retried.
            if isinstance(exc, StoreLockTimeout | StoreConnectionLost):
                raise
            if source.fallback:
                context.logger.info("ClickHouse did not read %s as the Python path does (%s); streaming it instead",
                                    source.description, str(exc).splitlines()[0][:200])
                self.loader.rollback(context)
                self.loader.begin(context)
                return False
            if extractor.reads_remote and isinstance(exc, StoreError):
                raise ExtractError(self._remote_failure(source, exc, context)) from None
            raise
        if rows is None:
            if extractor.reads_remote:
                context.logger.info("%s: read through Python: the loader %s did not take the rows as SQL",
                                    extractor.name, self.loader.name)
            return False
        stats.batches = 1
        stats.rows_extracted = stats.rows_transformed = stats.rows_loaded = rows
        context.logger.info("ClickHouse read %s itself: %d rows, no Python in the data path",
                            source.description, rows)
        return True

    def _remote_failure(self, source: SqlSource, exc: StoreError, context: RunContext) -> str:
        """One line for a source ClickHouse could not read (its own words, the statement left out)."""
        from core.store_server import short

        reason = " ".join(short(exc.__cause__ or exc).split())
        where = "" if context.settings.is_embedded else (
            f" (the ClickHouse server {context.settings.store_description} connects to "
            f"{source.remote or 'the source'} itself and must reach it; the extractor keyword pushdown=False "
            "reads it through Python here)")
        return f"{self.extractor.name}: ClickHouse could not read {source.description}: {reason}{where}"

    def _stream(self, context: RunContext, stats: RunCounts) -> None:
        """Extract -> transformers -> loader.write, one batch at a time."""
        log = context.logger
        for batch in self.extractor.extract(context):
            stats.batches += 1
            rows = batch_rows(batch)
            stats.rows_extracted += rows
            for transformer in self.transformers:
                transformed = transformer.transform(batch, context)
                if transformed is None:
                    break
                batch = transformed
            else:
                rows = batch_rows(batch)
                stats.rows_transformed += rows
                if rows:
                    stats.rows_loaded += self.loader.write(batch, context)
                log.debug("batch %d: %d rows loaded (%d so far)", stats.batches, rows, stats.rows_loaded)


def create_etl_pipeline(extractor: Extractor, transformer: Transformer | Sequence[Transformer] | None,
                        loader: Loader, name: str | None = None) -> Pipeline:
    """A pipeline that transforms each batch; ``transformer`` may be one or a list (applied in order)."""
    if transformer is None:
        transformers: Sequence[Transformer] = ()
    elif isinstance(transformer, Transformer):
        transformers = (transformer,)
    else:
        transformers = tuple(transformer)
    return Pipeline(extractor, loader, transformers, name)


def create_el_pipeline(extractor: Extractor, loader: Loader, name: str | None = None) -> Pipeline:
    """A pipeline that loads what it extracts, unchanged (ELT: transform later in ClickHouse)."""
    return Pipeline(extractor, loader, (), name)
