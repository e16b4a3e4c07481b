"""Database extractor: any SQLAlchemy URL, a query or a table, streamed in batches.

    create_db_extractor(url_env="SOURCE_DB_URL",
                        query="SELECT * FROM orders WHERE created_at >= :start AND created_at < :end")
    create_db_extractor("sqlite:///shop.db", table="orders", cursor_column="updated_at")  # incremental

Rows are fetched with a server-side cursor where the driver has one (``stream_results``) and
``fetchmany`` of the batch size, so memory stays bounded whatever the table size.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pyarrow as pa

from core.exceptions import ConfigError, ExtractError, TransientError
from pipelines.interfaces import Extractor, RunContext, SqlSource, declared
from pipelines.tools.extractors.db_pushdown import (
    PushdownPlan,
    check_zone,
    cursor_ceiling,
    endpoint,
    safe_description,
)
from pipelines.tools.extractors.db_query_shape import (
    Comparison,
    NotExpressible,
    QueryShape,
    query_shape,
    table_shape,
)
from pipelines.tools.factory import component_factory

_INTERVAL_BINDS = {"start", "end", "start_date", "end_date"}
_CURSOR_KEY = "cursor"


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (an unparsable URL is shown without anything after the scheme)
        return url.split(":", 1)[0] + "://***"


def _column(values: list[Any], known: pa.DataType | None) -> pa.Array:
    """An Arrow array from DB values; the type seen in earlier batches wins when compatible."""
    if known is not None:
        try:
            return pa.array(values, type=known)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _to_state(value: Any) -> Any:
    """A cursor value as JSON (datetimes and decimals keep their type through a tag; an instant
    in UTC, so both paths save the same text whatever the source session's zone)."""
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    return value


def _from_state(value: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        kind, raw = value["type"], value.get("value")
        if kind == "datetime":
            return dt.datetime.fromisoformat(raw)
        if kind == "date":
            return dt.date.fromisoformat(raw)
        if kind == "decimal":
            return Decimal(raw)
    return value


class DbExtractor(Extractor):
    """An extractor reading a SQL query or a whole table from any SQLAlchemy database.

    Args:
        url: SQLAlchemy URL (``postgresql+psycopg2://user:pass@host/db``, ``sqlite:///file.db``);
            or ``url_env``: the name of an environment/.env variable holding it (keeps passwords
            out of code).
        query: SQL text; may use ``:start``/``:end`` (the run's interval as UTC datetimes) and
            ``:start_date``/``:end_date`` (``YYYY-MM-DD``), which make the extractor interval-aware,
            ``:cursor`` (incremental mode) and any name given in ``params``.
        table: read ``SELECT * FROM table`` instead of a query (``schema.table`` allowed).
        params: values for the query's other ``:name`` binds.
        cursor_column: incremental mode: remember the highest value of this column (committed only
            when the run succeeds) and, for ``table=``, read only rows above it next time. In query
            mode, use ``:cursor`` yourself (it is ``None`` on the first run), e.g.
            ``WHERE :cursor IS NULL OR updated_at > :cursor``.
        initial_cursor: the cursor before the first run (default ``None``: read everything).
        batch_size: rows per batch (default: the ``BATCH_SIZE`` setting).
        interval_aware: declare whether the source reads only the run's interval (``True``: runs can
            be backfilled); default (``None``): inferred from the query's ``:start``/``:end`` binds.
        pushdown: ``True`` (default): a PostgreSQL or MySQL/MariaDB source is read by ClickHouse
            itself when the extraction is expressible there (:mod:`db_pushdown`, docs/connectors.md
            "Databases"); ``False``: always read it through Python (the job log says which path ran
            and why).
    """

    #: ClickHouse connects to the source itself: the push-down works on a server too.
    server_reads_source = True

    def __init__(self, url: str | None = None, query: str | None = None, table: str | None = None, *,
                 url_env: str | None = None, params: Mapping[str, Any] | None = None,
                 cursor_column: str | None = None, initial_cursor: Any = None, name: str | None = None,
                 batch_size: int | None = None, interval_aware: bool | None = None,
                 pushdown: bool = True) -> None:
        super().__init__(name or (f"db:{table}" if table else "db"))
        if (query is None) == (table is None):
            raise ConfigError(f"db extractor {self.name!r}: give exactly one of query= or table=")
        if (url is None) == (url_env is None):
            raise ConfigError(f"db extractor {self.name!r}: give exactly one of url= or url_env= "
                              "(the name of a variable holding the URL)")
        if table is not None and not re.fullmatch(r"[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?", table):
            raise ConfigError(f"db extractor {self.name!r}: table {table!r} is not a plain [schema.]name")
        if cursor_column is not None and not re.fullmatch(r"[A-Za-z_][\w$]*", cursor_column):
            raise ConfigError(f"db extractor {self.name!r}: cursor_column {cursor_column!r} is not a plain name")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"db extractor {self.name!r}: batch_size must be at least 1")
        if url is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(url)
            except ArgumentError:
                raise ConfigError(f"db extractor {self.name!r}: {_safe_url(url)} is not a SQLAlchemy URL "
                                  "(e.g. postgresql+psycopg2://user:pass@host/db, sqlite:///file.db)") from None
        self.url, self.url_env = url, url_env
        self.query, self.table = query, table
        self.params = dict(params or {})
        self.cursor_column = cursor_column
        self.initial_cursor = initial_cursor
        self.batch_size = batch_size
        self.pushdown = pushdown
        self._started: dict[tuple[str, int], Any] = {}
        if query is not None:
            from sqlalchemy import text

            self.binds = set(text(query)._bindparams)  # noqa: SLF001 (public API has no accessor)
        else:
            self.binds = set()
        self.interval_aware = declared(interval_aware, bool(self.binds & _INTERVAL_BINDS))

    def _resolve_url(self, context: RunContext) -> str:
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        value = context.settings.extra(self.url_env)
        if not value:
            raise ConfigError(f"db extractor {self.name!r}: {self.url_env} is not set (environment or .env); "
                              "it holds the source database URL")
        return value

    def _statement(self, engine: Any, cursor: Any) -> tuple[Any, set[str]]:
        """The statement to run and the bind names it uses."""
        from sqlalchemy import text

        if self.query is not None:
            return text(self.query), set(self.binds)
        binds: set[str] = set()
        quote = engine.dialect.identifier_preparer.quote
        assert self.table is not None
        sql = "SELECT * FROM " + ".".join(quote(part) for part in self.table.split("."))
        if self.cursor_column:
            column = quote(self.cursor_column)
            if cursor is not None:
                sql += f" WHERE {column} > :cursor"
                binds.add("cursor")
            sql += f" ORDER BY {column}"
        return text(sql), binds

    def _cursor(self, context: RunContext) -> Any:
        """The cursor this run starts from (``None`` without a cursor column or before the first run):
        the one :meth:`sql_source` started from when the loader then asked for batches after all."""
        if not self.cursor_column:
            return None
        run = (context.run_id, context.attempt)
        if run in self._started:
            return self._started.pop(run)
        return _from_state(context.state.get(_CURSOR_KEY, _to_state(self.initial_cursor)))

    def sql_source(self, context: RunContext) -> SqlSource | None:
        """The run as one statement ClickHouse runs itself, or ``None`` (the Python path) with
        the reason in the job log."""
        if not self.pushdown:
            return self._python_path(context, "the extractor sets pushdown=False")
        url = self._resolve_url(context)
        try:
            where = endpoint(url)
        except NotExpressible as exc:
            return self._python_path(context, str(exc))
        context.add_secrets([where.password])
        cursor = self._cursor(context)
        self._started[(context.run_id, context.attempt)] = cursor
        binds = {"start": context.start, "end": context.end, "start_date": context.start_date,
                 "end_date": context.end_date, "cursor": cursor, **self.params}
        safe = _safe_url(url)
        try:
            shape = table_shape(self.table) if self.table else query_shape(self.query or "", where.backend)
            if self.table and self.cursor_column and cursor is not None:
                shape.where.append(Comparison(self.cursor_column, ">", "cursor"))
            engine = self._engine(url, safe)
            try:
                with self._source_errors(safe, where.password, connecting=True):
                    plan = PushdownPlan(shape, where, self._source_columns(engine, shape), binds)
                    check_zone(plan, engine, context)
            finally:
                engine.dispose()
            extra = self._cursor_bound(plan, context) if self.cursor_column else []
            return plan.source(extra, safe_description(where, shape.table))
        except NotExpressible as exc:
            return self._python_path(context, str(exc))

    def _cursor_bound(self, plan: PushdownPlan, context: RunContext) -> list[Comparison]:
        """The run loads cursor values up to the highest one now in the source, saved as the new cursor."""
        assert self.cursor_column is not None
        ceiling = cursor_ceiling(plan, self.cursor_column, context)
        column = dict((out, c.name) for c, out in plan.selected())[self.cursor_column]
        if ceiling is None:
            plan.binds["dp_cursor_max"] = None
            return [Comparison(column, "<=", "dp_cursor_max")]  # no rows yet: load none
        plan.binds["dp_cursor_max"] = ceiling
        context.state.set(_CURSOR_KEY, _to_state(ceiling))
        context.logger.info("%s: new cursor %s = %s (saved when the run succeeds)", self.name,
                            self.cursor_column, ceiling)
        return [Comparison(column, "<=", "dp_cursor_max")]

    @staticmethod
    def _source_columns(engine: Any, shape: QueryShape) -> list[Any]:
        from pipelines.tools.extractors.source_schema import source_columns

        table = f"{shape.schema}.{shape.table}" if shape.schema else shape.table
        return source_columns(engine, table, None)

    def _python_path(self, context: RunContext, reason: str) -> None:
        context.logger.info("%s: read through Python: %s", self.name, reason)

    @contextmanager
    def _source_errors(self, safe: str, password: str | None, connecting: bool = False,
                       transient: bool = True) -> Iterator[None]:
        """Driver errors as the framework's, one line naming the source, the password masked."""
        from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

        def describe(exc: BaseException) -> str:
            orig = getattr(exc, "orig", None) or exc
            text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            return text.replace(str(password), "***") if password else text

        try:
            yield
        except (ExtractError, ConfigError):
            raise
        except DBAPIError as exc:
            if connecting and isinstance(exc, OperationalError):
                error = TransientError if transient else ExtractError
                raise error(f"{self.name}: cannot connect to {safe}: {describe(exc)}") from None
            if exc.connection_invalidated:
                raise TransientError(f"{self.name}: connection to {safe} lost: {describe(exc)}") from None
            raise ExtractError(f"{self.name}: query failed on {safe}: {describe(exc)}") from None
        except SQLAlchemyError as exc:
            raise ExtractError(f"{self.name}: query failed on {safe}: {describe(exc)}") from None

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        url = self._resolve_url(context)
        safe = _safe_url(url)
        size = self.batch_size or context.settings.batch_size
        cursor = self._cursor(context)
        engine = self._engine(url, safe)
        password = engine.url.password
        statement, values = self._bound_statement(engine, cursor, context)
        new_max: Any = None
        total = 0
        try:
            with self._source_errors(safe, password, connecting=True, transient=engine.dialect.name != "sqlite"):
                connection = engine.connect()
            with connection, self._source_errors(safe, password):
                result = connection.execution_options(stream_results=True, max_row_buffer=size) \
                    .execute(statement, values)
                for table, cursor_values in self._batches(result, size, safe):
                    new_max = self._max(new_max, cursor_values)
                    total += table.num_rows
                    yield table
        finally:
            engine.dispose()
        context.logger.info("%s: %d rows from %s", self.name, total, safe)
        if self.cursor_column and new_max is not None:
            context.state.set(_CURSOR_KEY, _to_state(new_max))
            context.logger.info("%s: new cursor %s = %s (saved when the run succeeds)", self.name,
                                self.cursor_column, new_max)

    def _engine(self, url: str, safe: str) -> Any:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

        try:
            return create_engine(url)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"db extractor {self.name!r}: no driver for {safe} ({exc}); install the "
                              "database's Python driver") from None
        except SQLAlchemyError as exc:
            raise ConfigError(f"db extractor {self.name!r}: cannot use {safe}: {exc}") from None

    def _bound_statement(self, engine: Any, cursor: Any, context: RunContext) -> tuple[Any, dict[str, Any]]:
        """The statement to run and the values of the binds it uses (all must have one)."""
        bound = {
            "start": context.start, "end": context.end,
            "start_date": context.start_date, "end_date": context.end_date,
            "cursor": cursor, **self.params,
        }
        statement, binds = self._statement(engine, cursor)
        missing = binds - set(bound)
        if missing:
            raise ConfigError(f"db extractor {self.name!r}: the query uses :{', :'.join(sorted(missing))} "
                              "but params= does not give a value")
        return statement, {k: bound[k] for k in binds}

    def _batches(self, result: Any, size: int, safe: str) -> Iterator[tuple[pa.Table, list[Any]]]:
        """The result in tables of ``size`` rows, each with its raw cursor values (empty without
        a cursor column); a column keeps the type its first non-null batch gave it."""
        names = list(result.keys())
        if self.cursor_column and self.cursor_column not in names:
            raise ExtractError(f"{self.name}: cursor_column {self.cursor_column!r} is not among the "
                               f"columns of the result ({', '.join(names)}) from {safe}")
        cursor_index = names.index(self.cursor_column) if self.cursor_column else None
        known: dict[str, pa.DataType] = {}
        while rows := result.fetchmany(size):
            columns = list(zip(*rows, strict=False))
            arrays = [_column(list(col), known.get(name)) for name, col in zip(names, columns, strict=False)]
            for name, array in zip(names, arrays, strict=False):
                if not pa.types.is_null(array.type):
                    known.setdefault(name, array.type)
            cursor_values = [r[cursor_index] for r in rows] if cursor_index is not None else []
            yield pa.Table.from_arrays(arrays, names=names), cursor_values

    @staticmethod
    def _max(current: Any, raw: list[Any]) -> Any:
        """The highest cursor value so far, as the driver returned it (so it binds back the same)."""
        candidates = [v for v in raw if v is not None]
        if current is not None:
            candidates.append(current)
        if not candidates:
            return current
        try:
            return max(candidates)
        except TypeError:  # mixed types in the cursor column: compare as text
            return max(candidates, key=str)


create_db_extractor = component_factory(DbExtractor, "create_db_extractor")
