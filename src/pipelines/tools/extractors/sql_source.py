"""SQL pipelines: the T of ELT, run inside ClickHouse.

A SQL pipeline's source is a ClickHouse ``SELECT`` over other tables of the store. The run never
moves rows through Python: the loader stages them with ``INSERT INTO <staging> SELECT ... FROM
(<your query>)`` and commits in its mode, exactly as for loaded data (so in ``interval`` mode a
derived table is rebuilt per interval, idempotently).

The run's placeholders become typed query parameters, never pasted text:

============== ============================ ==============================
placeholder    ClickHouse parameter          value
============== ============================ ==============================
``{start}``    ``DateTime64(6, 'UTC')``     interval start (inclusive)
``{end}``      ``DateTime64(6, 'UTC')``     interval end (exclusive)
``{start_date}`` ``Date``                   day of ``start``
``{end_date}`` ``Date``                     day of ``end``
``{run_id}``   ``String``                   the run id
``{pipeline}`` ``String``                   the pipeline name
============== ============================ ==============================

The query is read with the framework's SQL tokenizer (:mod:`core.sql_text`) and rendered by its
placeholder renderer (:mod:`core.placeholders`), as migrations are, so braces inside string literals,
quoted identifiers and comments are left alone; ``{{name}}`` is a literal ``{name}`` and
ClickHouse's own ``{name:Type}`` parameters pass through. Any other ``{word}`` is an error at
discovery naming the file and line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.exceptions import PipelineError
from core.placeholders import render_statement, statement_placeholders
from core.sql_text import split_statements
from pipelines.interfaces import Extractor, Loader, RunContext, SqlSource, declared
from pipelines.tools import factory as factory_module
from pipelines.tools.factory import component_factory

#: The run's placeholders and the ClickHouse type each is bound as.
PARAMETER_TYPES = {
    "start": "DateTime64(6, 'UTC')",
    "end": "DateTime64(6, 'UTC')",
    "start_date": "Date",
    "end_date": "Date",
    "run_id": "String",
    "pipeline": "String",
}
_TIME_PLACEHOLDERS = {"start", "end", "start_date", "end_date"}
# Prefixed so they cannot collide with a user's own {name:Type} parameters.
_PREFIX = "dp_"


def parameter_values(context: RunContext, names: set[str]) -> dict[str, str]:
    """The values of the placeholders ``names`` for this run, as ClickHouse parses them."""
    values = {
        "start": context.start.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "end": context.end.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "start_date": context.start_date,
        "end_date": context.end_date,
        "run_id": context.run_id,
        "pipeline": context.pipeline,
    }
    return {_PREFIX + name: values[name] for name in names}


def compile_query(sql: str, source: str = "<sql>") -> tuple[str, set[str]]:
    """The query with placeholders turned into typed parameters, and the placeholders it uses.

    Raises :class:`PipelineError` naming ``source`` (and the line) for an unknown placeholder,
    an unterminated quote, more than one statement or a statement that is not a query.
    """
    statements = split_statements(sql, source, PipelineError)
    if len(statements) != 1:
        raise PipelineError(f"{source}: a SQL pipeline needs exactly one SELECT statement, "
                            f"found {len(statements)}")
    statement = statements[0]
    used = statement_placeholders(statement) & PARAMETER_TYPES.keys()
    bound = {name: "{" + _PREFIX + name + ":" + kind + "}" for name, kind in PARAMETER_TYPES.items()}
    rendered = render_statement(statement, bound, source, PipelineError).sql
    first = rendered.lstrip("(").split(None, 1)[0].upper() if rendered.strip() else ""
    if first not in ("SELECT", "WITH"):
        raise PipelineError(f"{source} line {statement.line}: a SQL pipeline's source must be a SELECT "
                            f"(or WITH ... SELECT) query, got '{first or 'nothing'}'")
    return rendered, used


def _caller_dir() -> Path:
    """The directory of the module that called the factory (where its .sql file lives): the
    first frame outside this module and the factory helper."""
    skipped = {Path(__file__).resolve(), Path(factory_module.__file__).resolve()}
    frame = sys._getframe(1)  # not inspect.stack(): that reads every frame's source lines
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path not in skipped:
            return path.parent
        frame = frame.f_back
    return Path.cwd()


def read_sql_file(path: str | Path, base: Path) -> tuple[str, str]:
    """The text of a ``.sql`` file (relative paths: next to the calling module) and its display name."""
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = base / full
    if not full.is_file():
        raise PipelineError(f"SQL file {full} does not exist")
    return full.read_text(encoding="utf-8"), str(full)


class SqlExtractor(Extractor):
    """A source that is a ClickHouse ``SELECT``: inline ``sql`` or ``sql_file`` (relative to the
    calling module's directory).

    With the ClickHouse loader and no transformers the rows never leave ClickHouse, on the
    embedded engine and on a server. Other loaders (console, files) receive the result in Arrow
    batches.

    Args:
        interval_aware: declare whether the source reads only the run's interval (``True``: runs can
            be backfilled); default (``None``): inferred from the time placeholders (``{start}``, ``{end}``,
            ...) in the query.
    """

    #: The query reads the store's own tables, so the push-down works on a server too.
    reads_store = True

    def __init__(self, sql: str | None = None, *, sql_file: str | Path | None = None,
                 name: str | None = None, interval_aware: bool | None = None) -> None:
        if (sql is None) == (sql_file is None):
            raise PipelineError("create_sql_extractor: give either sql or sql_file")
        if sql_file is not None:
            sql, self.source = read_sql_file(sql_file, _caller_dir())
        else:
            self.source = f"SQL of {name}" if name else "<sql>"
        assert sql is not None
        super().__init__(name or "SQL query")
        self.query, self.placeholders = compile_query(sql, self.source)
        # A query bounded by the run's interval re-computes exactly that interval.
        self.interval_aware = declared(interval_aware, bool(self.placeholders & _TIME_PLACEHOLDERS))
        self._range_checked = False

    @property  # type: ignore[override]
    def range_refusal(self) -> str | None:
        """Why the query cannot read several intervals at once (``sql_range``), parsed on first
        use only: discovery of a pipeline without ``batch_size`` never pays for sqlglot."""
        if not self._range_checked:
            from pipelines.tools.extractors.sql_range import range_refusal

            self._refusal = range_refusal(self.query, _PREFIX) if self.interval_aware else None
            self._range_checked = True
        return self._refusal

    @property  # type: ignore[override]
    def reads_range(self) -> bool:
        """A batch's ``{start}``/``{end}`` give each interval its own rows (see ``sql_range``)."""
        return self.interval_aware and self.range_refusal is None

    def parameters(self, context: RunContext) -> dict[str, str]:
        return parameter_values(context, self.placeholders)

    def schema(self, context: RunContext) -> pa.Schema:
        """The query's columns as ClickHouse reports them (no rows are read). Its placeholders are typed,
        so the answer is the same for every interval: asked once while the catalogue stays the same
        (``core.store_memo``), not per interval of a backfill."""
        store = context.store
        return store.memo.get(("query schema", self.query), lambda: store.query_arrow(
            f"SELECT * FROM ({self.query}) LIMIT 0", self.parameters(context)).schema)

    def sql_source(self, context: RunContext) -> SqlSource | None:
        return SqlSource(f"({self.query})", self.schema(context), f"the query of {self.source}",
                         parameters=self.parameters(context), copied=False)

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        """The result in Arrow batches (only when the loader cannot insert it with SQL itself)."""
        size = context.settings.batch_size
        with context.store.session() as client, \
                client.query_arrow_stream(self.query, parameters=self.parameters(context),
                                          settings={"max_block_size": size}) as stream:
            for batch in stream:
                table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
                if table.num_rows:
                    yield table


create_sql_extractor = component_factory(SqlExtractor, "create_sql_extractor")


def create_sql_pipeline(sql: str | None = None, loader: Loader | None = None, *, sql_file: str | Path | None = None,
                        name: str | None = None) -> Any:
    """A pipeline whose source is a ClickHouse query over other tables, run inside ClickHouse.

    ``sql`` (or ``sql_file``, a ``.sql`` file next to the module) is one ``SELECT`` using
    ``{start}``, ``{end}``, ``{start_date}``, ... (bound as typed parameters); ``loader`` is
    usually ``create_clickhouse_loader(table, mode='interval', time_column=...)``. List the
    pipelines that write the tables it reads in the entry's ``depends_on``.
    """
    from pipelines.pipeline_factory import create_el_pipeline

    if loader is None:
        raise PipelineError(f"create_sql_pipeline({name or ''}): a loader is required "
                            "(e.g. create_clickhouse_loader('daily_totals', time_column='day'))")
    return create_el_pipeline(create_sql_extractor(sql, sql_file=sql_file, name=name), loader, name=name)
