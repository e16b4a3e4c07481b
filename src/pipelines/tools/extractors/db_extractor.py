"""Database extractor: any SQLAlchemy URL, a query or a table, streamed in batches.

    create_db_extractor(url_env="SOURCE_DB_URL",
                        query="SELECT * FROM orders WHERE created_at >= :start AND created_at < :end")
    create_db_extractor("sqlite:///shop.db", table="orders", cursor_column="updated_at")  # incremental

Rows are fetched with a server-side cursor where the driver has one (``stream_results``) and
``fetchmany`` of the batch size, so memory stays bounded whatever the table size.

On PostgreSQL and MySQL/MariaDB every batch, the first included, has the types the source declares
(:mod:`pipelines.tools.extractors.source_schema`), the session's zone is UTC, and the connection
has a connect and a statement timeout (:mod:`pipelines.tools.extractors.db_values`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa

from core.exceptions import ConfigError, ExtractError, TransientError
from pipelines.interfaces import Extractor, RunContext, SqlSource, declared
from pipelines.tools.extractors.db_values import after_connect, connect_args, declared_batch, wait_interruptibly
from pipelines.tools.extractors.source_schema import SourceColumn, source_columns
from pipelines.tools.factory import component_factory

_INTERVAL_BINDS = {"start", "end", "start_date", "end_date"}
_CURSOR_KEY = "cursor"
CONNECT_TIMEOUT = 10.0
STATEMENT_TIMEOUT = 1800.0
_TYPED_DIALECTS = ("postgresql", "mysql", "mariadb")
_NOT_STARTED = object()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (an unparsable URL is shown without anything after the scheme)
        return url.split(":", 1)[0] + "://***"


def _parse_url(url: str, where: str) -> Any:
    """The SQLAlchemy URL, or a ConfigError that never shows the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 (a port that is no number raises only when read)
        return parsed
    except (ArgumentError, ValueError):
        raise ConfigError(f"{where}: {_safe_url(url)} is not a SQLAlchemy URL (e.g. "
                          "postgresql+psycopg2://user:pass@host/db, sqlite:///file.db; percent-encode "
                          "@ : / % # ? in the user or password, e.g. p%40ss for p@ss)") from None


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


def _inferred_batch(rows: list[Any], names: list[str], known: dict[str, pa.DataType]) -> pa.Table:
    """A batch typed from its values (sources without declared types); ``known`` carries types over."""
    arrays = [_column(list(values), known.get(name))
              for name, values in zip(names, zip(*rows, strict=False), strict=False)]
    for name, array in zip(names, arrays, strict=False):
        if not pa.types.is_null(array.type):
            known.setdefault(name, array.type)
    return pa.Table.from_arrays(arrays, names=names)


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
            ``:start_date``/``:end_date`` (the days: UTC midnights on PostgreSQL and MySQL, ``YYYY-MM-DD`` on
            SQLite), which make the extractor interval-aware,
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
        connect_timeout: seconds to wait for the database to accept and answer a connection
            (PostgreSQL, MySQL/MariaDB; default 10).
        statement_timeout: seconds one statement (or one fetch of a batch) may take before the run
            fails (default 1800; ``None``: no limit). PostgreSQL enforces it on the server
            (``statement_timeout``), MySQL/MariaDB on the client (the driver's read timeout).
        pushdown: ``True`` (default): a PostgreSQL or MySQL/MariaDB source is read by ClickHouse
            itself when the extraction is expressible there (:mod:`db_pushdown`, docs/connectors.md
            "Databases"); ``False``: always through Python. The job log says which path ran and why.
    """

    #: ClickHouse connects to the source itself: the push-down works on a server too.
    reads_remote = True

    def __init__(self, url: str | None = None, query: str | None = None, table: str | None = None, *,
                 url_env: str | None = None, params: Mapping[str, Any] | None = None,
                 cursor_column: str | None = None, initial_cursor: Any = None, name: str | None = None,
                 batch_size: int | None = None, interval_aware: bool | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, statement_timeout: float | None = STATEMENT_TIMEOUT,
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
        if connect_timeout <= 0 or (statement_timeout is not None and statement_timeout <= 0):
            raise ConfigError(f"db extractor {self.name!r}: connect_timeout and statement_timeout must be positive "
                              "(statement_timeout=None: no limit)")
        if url is not None:
            _parse_url(url, f"db extractor {self.name!r}")
        self.connect_timeout, self.statement_timeout = connect_timeout, statement_timeout
        self.url, self.url_env = url, url_env
        self.query, self.table = query, table
        self.params = dict(params or {})
        self.cursor_column = cursor_column
        self.initial_cursor = initial_cursor
        self.batch_size = batch_size
        self.pushdown = pushdown
        # The cursor a run's push-down started from, for when its loader asks for batches after all.
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

    def cursor(self, context: RunContext) -> Any:
        """The cursor this run starts from (``None`` without a cursor column or before the first run)."""
        if not self.cursor_column:
            return None
        started = self._started.pop((context.run_id, context.attempt), _NOT_STARTED)
        if started is not _NOT_STARTED:
            return started
        return _from_state(context.state.get(_CURSOR_KEY, _to_state(self.initial_cursor)))

    def save_cursor(self, context: RunContext, value: Any) -> None:
        """Stage the new cursor (saved when the run succeeds) and say so in the job log."""
        context.state.set(_CURSOR_KEY, _to_state(value))
        context.logger.info("%s: new cursor %s = %s (saved when the run succeeds)", self.name,
                            self.cursor_column, value)

    def sql_source(self, context: RunContext) -> SqlSource | None:
        """The run as one statement ClickHouse runs itself, or ``None`` (the Python path, the
        reason in the job log): :func:`db_pushdown.pushdown_source`."""
        from pipelines.tools.extractors.db_pushdown import pushdown_source

        start = self.cursor(context)
        if self.cursor_column:
            self._started[(context.run_id, context.attempt)] = start
        return pushdown_source(self, context, self._resolve_url(context), start)

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

        url = self._resolve_url(context)
        safe = _safe_url(url)
        size = self.batch_size or context.settings.batch_size
        cursor = self.cursor(context)
        engine = self._engine(url, safe)
        password = engine.url.password

        def describe(exc: BaseException) -> str:
            orig = getattr(exc, "orig", None) or exc
            text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            return text.replace(str(password), "***") if password else text

        statement, values = self._bound_statement(engine, cursor, context)
        new_max: Any = None
        total = 0
        try:
            try:
                connection = engine.connect()
            except OperationalError as exc:
                error = TransientError if engine.dialect.name != "sqlite" else ExtractError
                raise error(f"{self.name}: cannot connect to {safe}: {describe(exc)}") from None
            with connection:
                described_first = self.table is not None or engine.dialect.name == "postgresql"
                columns = self._declared(connection, values) if described_first else []
                result = connection.execution_options(stream_results=True, max_row_buffer=size) \
                    .execute(statement, values)
                if not described_first:  # MySQL: the running query's own description
                    columns = source_columns(connection, query=self.query, result=result)
                for table, cursor_values in self._batches(result, size, safe, columns):
                    new_max = self._max(new_max, cursor_values)
                    total += table.num_rows
                    yield table
        except (ExtractError, ConfigError):
            raise
        except DBAPIError as exc:
            if self.statement_timeout and "(timed out)" in describe(exc):  # PyMySQL's read timeout
                raise ExtractError(f"{self.name}: query failed on {safe}: no answer within statement_timeout="
                                   f"{self.statement_timeout:g} s") from None
            if exc.connection_invalidated:
                raise TransientError(f"{self.name}: connection to {safe} lost: {describe(exc)}") from None
            raise ExtractError(f"{self.name}: query failed on {safe}: {describe(exc)}") from None
        except SQLAlchemyError as exc:
            raise ExtractError(f"{self.name}: query failed on {safe}: {describe(exc)}") from None
        finally:
            engine.dispose()
        context.logger.info("%s: %d rows from %s", self.name, total, safe)
        if self.cursor_column and new_max is not None:
            self.save_cursor(context, new_max)

    def _declared(self, connection: Any, values: dict[str, Any]) -> list[SourceColumn]:
        """The source's declared columns (``[]`` where it has none to give: SQLite...)."""
        if self.table is not None:
            return source_columns(connection, table=self.table)
        return source_columns(connection, query=self.query, params=values)

    def _engine(self, url: str, safe: str) -> Any:
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

        parsed = _parse_url(url, f"db extractor {self.name!r}")
        try:
            engine = create_engine(parsed, connect_args=connect_args(
                parsed.get_driver_name(), self.connect_timeout, self.statement_timeout, parsed.query))
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"db extractor {self.name!r}: no driver for {safe} ({exc}); install the "
                              "database's Python driver") from None
        except SQLAlchemyError as exc:
            raise ConfigError(f"db extractor {self.name!r}: cannot use {safe}: {exc}") from None
        driver = engine.dialect.driver
        if driver == "psycopg2":
            from psycopg2 import extensions

            extensions.set_wait_callback(wait_interruptibly)
        event.listen(engine, "connect", lambda dbapi_connection, record: after_connect(
            driver, dbapi_connection, self.statement_timeout))
        return engine

    def _bound_statement(self, engine: Any, cursor: Any, context: RunContext) -> tuple[Any, dict[str, Any]]:
        """The statement to run and the values of the binds it uses (all must have one).

        On PostgreSQL and MySQL/MariaDB ``:start_date``/``:end_date`` are sent as UTC instants (the
        days' midnights), so a session or server zone cannot move the interval."""
        day_bound: Any = (lambda day: dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)) \
            if engine.dialect.name in _TYPED_DIALECTS else (lambda day: day)
        bound = {
            "start": context.start, "end": context.end,
            "start_date": day_bound(context.start_date), "end_date": day_bound(context.end_date),
            "cursor": cursor, **self.params,
        }
        statement, binds = self._statement(engine, cursor)
        missing = binds - set(bound)
        if missing:
            raise ConfigError(f"db extractor {self.name!r}: the query uses :{', :'.join(sorted(missing))} "
                              "but params= does not give a value")
        return statement, {k: bound[k] for k in binds}

    def _batches(self, result: Any, size: int, safe: str,
                 columns: list[SourceColumn]) -> Iterator[tuple[pa.Table, list[Any]]]:
        """The result in tables of ``size`` rows, each with its raw cursor values (empty without
        a cursor column). With declared ``columns`` every batch has their types; without (SQLite),
        a column keeps the type its first non-null batch gave it."""
        names = list(result.keys())
        if self.cursor_column and self.cursor_column not in names:
            raise ExtractError(f"{self.name}: cursor_column {self.cursor_column!r} is not among the "
                               f"columns of the result ({', '.join(names)}) from {safe}")
        if columns and [c.name for c in columns] != names:
            raise ExtractError(f"{self.name}: the source's catalog lists the columns {[c.name for c in columns]} "
                               f"but the result has {names} ({safe})")
        cursor_index = names.index(self.cursor_column) if self.cursor_column else None
        known: dict[str, pa.DataType] = {}
        where = f"{self.name} ({self.table or 'query'})"
        done = 0
        while rows := result.fetchmany(size):
            if columns:
                table = declared_batch(rows, names, columns, done + 1, where)
            else:
                table = _inferred_batch(rows, names, known)
            done += len(rows)
            cursor_values = [r[cursor_index] for r in rows] if cursor_index is not None else []
            yield table, cursor_values

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
