"""The db extractor's push-down: ClickHouse reads PostgreSQL or MySQL/MariaDB itself.

The run's SELECT becomes ``postgresql(...)``/``mysql(...)`` with the AND-ed comparisons as a
``WHERE`` ClickHouse sends to the source, every column cast to the type the source's catalog gives
(:mod:`source_schema`), so both paths create the same table and load the same values. The
connection's password is a query parameter, never part of the statement's text; ClickHouse
prints ``[HIDDEN]`` for it in its own errors, and the run masks it everywhere else.

Time zones: ClickHouse reads a ``timestamptz`` as the text PostgreSQL sends in its session's
zone and ignores the offset (ClickHouse issue #89128), and it sends a time literal as zone-less
text. Both are exact only when the source session's zone is UTC. ClickHouse's ``postgresql()``
takes no session option (only ``sslmode`` and certificates), so on the embedded engine, which runs
in this process, the statements reading the source run with ``PGTZ=UTC`` set in this process's
environment for their duration only (:meth:`SqlSource.reading`; libpq reads it when it connects),
then the earlier value is restored. On a server the server connects with its own environment, so
the run checks the source's default zone and takes the Python path when a zoned column is read and
the zone is not UTC. MySQL/MariaDB ``TIMESTAMP`` columns are pushed down only when the server's
zone is UTC.

Connection options: a PostgreSQL URL's ``sslmode`` and its certificate files (``sslrootcert``,
``sslcert``, ``sslkey``: read here, passed as their contents) are given to ``postgresql()``; any
other option, and every MySQL option, takes the Python path, which the job log says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from core.validators import quote_identifier
from pipelines.interfaces import RunContext, SqlSource
from pipelines.tools.extractors.db_query_shape import Comparison, NotExpressible, QueryShape

#: Settings of the push-down's statement: the raw columns ClickHouse reads are zone-less, taken as UTC.
PUSHDOWN_SETTINGS = {"session_timezone": "UTC"}
_BACKENDS = {"postgresql": ("postgresql", 5432), "mysql": ("mysql", 3306), "mariadb": ("mysql", 3306)}
_UTC_NAMES = {"utc", "etc/utc", "etc/uct", "uct", "gmt", "etc/gmt", "zulu", "etc/zulu", "universal",
              "etc/universal", "+00:00", "z"}
_PARAM = "dp_src_"
#: A PostgreSQL URL's TLS options that postgresql() takes, by the key it takes them as (files by contents).
_PG_TLS = {"sslmode": "sslmode", "sslrootcert": "sslrootcert_pem", "sslcert": "sslcert_pem", "sslkey": "sslkey_pem"}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class Endpoint:
    """Where ClickHouse connects: the URL's parts."""

    backend: str  # "postgresql" or "mysql" (MariaDB speaks MySQL's protocol)
    host: str
    port: int
    database: str
    user: str
    password: str
    #: TLS options as postgresql() takes them (``sslmode``, ``sslrootcert_pem``, ...)
    tls: dict[str, str] = field(default_factory=dict)


def endpoint(url: str) -> Endpoint:
    """The URL's connection parts; :class:`NotExpressible` when ClickHouse cannot connect as it says."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = _BACKENDS.get(parsed.get_backend_name())
    if backend is None:
        raise NotExpressible(f"ClickHouse does not read {parsed.get_backend_name()} sources itself")
    other = sorted(k for k in parsed.query if backend[0] != "postgresql" or k not in _PG_TLS)
    if other:
        raise NotExpressible(f"the URL's connection option(s) {', '.join(other)} are not carried over to "
                             f"ClickHouse's {backend[0]}()" + (" (it takes sslmode, sslrootcert, sslcert and "
                                                               "sslkey)" if backend[0] == "postgresql" else ""))
    if not parsed.host or not parsed.database or not parsed.username:
        raise NotExpressible("the URL does not name a host, a database and a user")
    return Endpoint(backend[0], parsed.host, parsed.port or backend[1], parsed.database, parsed.username,
                    parsed.password or "", _tls(parsed.query))


def _tls(options: Any) -> dict[str, str]:
    """A PostgreSQL URL's TLS options as postgresql() takes them: files by their contents, read here
    (where the Python path's driver would read them; a ClickHouse server gets the contents too)."""
    tls = {}
    for key, value in options.items():
        if not isinstance(value, str):
            raise NotExpressible(f"the URL gives {key} more than once")
        if key == "sslmode" and value not in _SSLMODES:
            raise NotExpressible(f"sslmode={value} is not one of {', '.join(_SSLMODES)}")
        if key == "sslrootcert" and value == "system":
            raise NotExpressible("sslrootcert=system is taken by ClickHouse only from a named collection in the "
                                 "server's configuration")
        if key == "sslmode":
            tls[key] = value
            continue
        try:
            tls[_PG_TLS[key]] = Path(value).expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise NotExpressible(f"the URL's {key} file {value} cannot be read here "
                                 f"({getattr(exc, 'strerror', None) or exc})") from None
    return tls


def _base(clickhouse_type: str) -> str:
    """``Nullable(T)``/``LowCardinality(T)`` -> ``T``: the type a query parameter of it is bound as."""
    while (match := re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", clickhouse_type)) is not None:
        clickhouse_type = match.group(1)
    return clickhouse_type


def parameter_text(value: Any) -> str:
    """A bind's value as ClickHouse parses a query parameter (instants as UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | Decimal | int | float | str):
        return value.isoformat() if isinstance(value, date) else str(value)
    raise NotExpressible(f"a bind's value of type {type(value).__name__} cannot be sent to ClickHouse")


def _bind_type(bind: str, column_type: str) -> str:
    """The query parameter's type: the run's instants as UTC, its days as Date (or text against text)."""
    base = _base(column_type)
    timeish = base.startswith(("Date", "DateTime"))
    if bind in ("start", "end"):
        if not timeish:
            raise NotExpressible(f":{bind} is compared with a {base} column")
        return "DateTime64(6, 'UTC')"
    if bind in ("start_date", "end_date"):
        if base == "String":
            return "String"
        if not timeish:
            raise NotExpressible(f":{bind} is compared with a {base} column")
        return "Date"
    return base


def zoned_columns(columns: list[Any], backend: str) -> list[str]:
    """The columns whose values ClickHouse reads in the source session's zone."""
    kinds = ("timestamp with time zone", "timestamptz") if backend == "postgresql" else ("timestamp",)
    return [c.name for c in columns if c.source_type.lower().startswith(kinds)]


def is_utc(zone: str) -> bool:
    return zone.strip().lower() in _UTC_NAMES or zone.strip() in ("+0:00", "00:00")


def session_zone(url: str, backend: str, connect_timeout: float) -> tuple[str, str]:
    """The zone a new session of the source starts in (what ClickHouse's own session gets) and
    where PostgreSQL took it from (``client``: this process's environment, e.g. ``PGTZ``)."""
    from sqlalchemy import create_engine, text

    # No session options (the zone a plain client gets), but the extractor's connect timeout.
    engine = create_engine(url, connect_args={"connect_timeout": max(1, int(connect_timeout))})
    with engine.connect() as connection:
        if backend == "postgresql":
            zone, source = connection.execute(
                text("SELECT setting, source FROM pg_settings WHERE name = 'TimeZone'")).one()
            engine.dispose()
            return str(zone), str(source)
        zone, system = connection.execute(text("SELECT @@global.time_zone, @@system_time_zone")).one()
    engine.dispose()
    return str(system if str(zone).upper() == "SYSTEM" else zone), "server"


@dataclass
class PushdownPlan:
    """Everything the push-down statement needs, decided before any row moves."""

    shape: QueryShape
    where: Endpoint
    columns: list[Any]  # SourceColumn of the source table, in its order
    binds: dict[str, Any]  # bind name -> value (cursor, interval, params)
    #: The result's columns by name as the Python path types them (a query's, from its description):
    #: the casts and the schema follow them, so both paths create the same table.
    outputs: dict[str, Any] = field(default_factory=dict)
    #: This process's environment while the embedded engine reads the source (:func:`check_zone`)
    environment: dict[str, str] = field(default_factory=dict)

    def selected(self) -> list[tuple[Any, str]]:
        """(source column, output name) in the query's order."""
        by_name = {c.name: c for c in self.columns}
        pairs = [(c.name, c.name) for c in self.columns] if self.shape.columns is None else self.shape.columns
        missing = [name for name, _ in pairs if name not in by_name]
        missing += [t.column for t in self.shape.where if t.column not in by_name]
        if missing:
            raise NotExpressible(f"the table {self.shape.table} has no column {', '.join(map(repr, missing))}")
        return [(by_name[name], output) for name, output in pairs]

    def used(self) -> list[Any]:
        names = {c.name for c, _ in self.selected()} | {t.column for t in self.shape.where}
        return [c for c in self.columns if c.name in names]

    def parameters(self) -> dict[str, str]:
        e = self.where
        values = {"host": f"{e.host}:{e.port}", "database": e.database, "table": self.shape.table,
                  "user": e.user, "password": e.password}
        if self.shape.schema:
            values["schema"] = self.shape.schema
        return {_PARAM + key: value for key, value in {**values, **e.tls}.items()}

    def function(self) -> str:
        args = ["host", "database", "table", "user", "password"] + (["schema"] if self.shape.schema else [])
        if self.where.backend == "mysql" and self.shape.schema:
            raise NotExpressible("a MySQL table is named by the URL's database, not a schema")
        options = [f"{key} = {{{_PARAM}{key}:String}}" for key in self.where.tls]  # key = value arguments
        return f"{self.where.backend}({', '.join(['{' + _PARAM + a + ':String}' for a in args] + options)})"

    def conditions(self, extra: list[Comparison]) -> tuple[list[str], dict[str, str]]:
        """The ``WHERE`` terms in ClickHouse SQL and their parameters."""
        types = {c.name: c.clickhouse_type for c in self.columns}
        terms, parameters = [], {}
        for i, term in enumerate([*self.shape.where, *extra]):
            if term.bind not in self.binds:
                raise NotExpressible(f"the query uses :{term.bind}, which has no value")
            value = self.binds[term.bind]
            if value is None and term.bind == "dp_cursor_max":
                terms.append("0")  # the source has no cursor value yet: nothing to load
                continue
            if value is None:
                if term.unless_null:
                    continue
                raise NotExpressible(f":{term.bind} is NULL in a comparison")
            name = f"dp_bind_{i}"
            kind = _bind_type(term.bind, types[term.column])
            terms.append(f"{quote_identifier(term.column)} {term.op} {{{name}:{kind}}}")
            parameters[name] = parameter_text(value)
        return terms, parameters

    def source(self, extra: list[Comparison], description: str) -> SqlSource:
        """The cast SELECT over the table function, as the loader inserts it."""
        selected = self.selected()
        terms, parameters = self.conditions(extra)
        raw = ", ".join(quote_identifier(c.name) for c in self.used())
        inner = f"SELECT {raw} FROM {self.function()}" + (f" WHERE {' AND '.join(terms)}" if terms else "")
        typed = [(c, self.outputs.get(out, c), out) for c, out in selected]
        casts = ", ".join(f"CAST({quote_identifier(c.name)} AS {t.clickhouse_type}) AS {quote_identifier(out)}"
                          for c, t, out in typed)
        schema = pa.schema([t.arrow_field().with_name(out) for _, t, out in typed])
        return SqlSource(f"(SELECT {casts} FROM ({inner}))", schema, description,
                         {**self.parameters(), **parameters}, settings=dict(PUSHDOWN_SETTINGS),
                         remote=f"{self.where.host}:{self.where.port}", environment=dict(self.environment))


def cursor_ceiling(plan: PushdownPlan, cursor_column: str, context: RunContext) -> Any:
    """The highest cursor value the run will load, read before the load so that the loaded rows
    and the saved cursor agree exactly (rows arriving later above it are the next run's)."""
    outputs = {out: column for column, out in plan.selected()}
    if cursor_column not in outputs:
        raise NotExpressible(f"cursor_column {cursor_column!r} is not among the query's columns")
    source = plan.source([], "the cursor's maximum")
    with source.reading():
        [(ceiling,)] = context.store.query_rows(f"SELECT maxOrNull({quote_identifier(cursor_column)}) FROM "
                                                f"{source.expression} SETTINGS session_timezone = 'UTC'",
                                                source.parameters)
    zoned = "," in _base(dict((out, c.clickhouse_type) for c, out in plan.selected())[cursor_column])
    if isinstance(ceiling, datetime) and ceiling.tzinfo is None and zoned:
        ceiling = ceiling.replace(tzinfo=UTC)  # the driver's UTC wall time of a zoned column: the instant
    return ceiling


def safe_description(where: Endpoint, table: str) -> str:
    """How the job log names the source (no password)."""
    return f"{table} on {where.backend}://{quote(where.user, safe='')}@{where.host}:{where.port}/{where.database}"


def check_zone(plan: PushdownPlan, url: str, context: RunContext, connect_timeout: float) -> None:
    """Refuse (:class:`NotExpressible`) a push-down that would read zoned values in a non-UTC session,
    or, on the embedded engine, have its PostgreSQL sessions start in UTC (``plan.environment``)."""
    zoned = zoned_columns(plan.used(), plan.where.backend)
    if not zoned:
        return
    if plan.where.backend == "postgresql" and context.settings.is_embedded:
        plan.environment["PGTZ"] = "UTC"  # ClickHouse's sessions (libpq, in this process) start in UTC
        return
    zone, source = session_zone(url, plan.where.backend, connect_timeout)
    if source == "client":
        raise NotExpressible("PGTZ is set here, so the zone the ClickHouse server's sessions start in is unknown")
    if not is_utc(zone):
        raise NotExpressible(f"the source's sessions start in zone {zone}, and ClickHouse would read "
                             f"{', '.join(zoned)} in it without the offset (ClickHouse issue #89128)")


#: Source types whose value ClickHouse's table functions read exactly as the Python path does,
#: by ClickHouse type; a String column only from these source types (others, e.g. time, interval,
#: unconstrained numeric, bytea, arrays, are read through Python).
_EXACT_STRINGS = ("text", "character", "varchar", "char", "json", "jsonb", "tinytext", "mediumtext", "longtext",
                  "citext")
_EXACT = re.compile(r"(U?Int(8|16|32|64)|Float(32|64)|Bool|Decimal\(\d+, \d+\)|DateTime64\(6, 'UTC'\)|Date32|UUID)")


def check_exact(plan: PushdownPlan) -> None:
    """Refuse (:class:`NotExpressible`) a column whose value ClickHouse may read differently."""
    for column in plan.used():
        base = _base(column.clickhouse_type)
        if _EXACT.fullmatch(base):
            continue
        if base == "String" and column.source_type.lower().startswith(_EXACT_STRINGS):
            continue
        raise NotExpressible(f"column {column.name!r} ({column.source_type}) is read through Python "
                             f"(ClickHouse's {plan.where.backend}() may read it differently)")


def pushdown_source(extractor: Any, context: RunContext, url: str, cursor: Any) -> SqlSource | None:
    """``extractor``'s run (from ``cursor``) as a :class:`SqlSource` over ``postgresql()``/``mysql()``,
    or ``None`` after logging why the Python path runs. ``extractor`` is a :class:`DbExtractor`."""
    from sqlalchemy.exc import SQLAlchemyError

    from pipelines.tools.extractors.db_query_shape import query_shape, table_shape

    def python_path(reason: str) -> None:
        context.logger.info("%s: read through Python: %s", extractor.name, reason)

    if not extractor.pushdown:
        return python_path("the extractor sets pushdown=False")
    try:
        where = endpoint(url)
        context.add_secrets([where.password, where.tls.get("sslkey_pem", "")])
        binds = {"start": context.start, "end": context.end, "start_date": context.start_date,
                 "end_date": context.end_date, "cursor": cursor, **extractor.params}
        shape = table_shape(extractor.table) if extractor.table else query_shape(extractor.query, where.backend)
        if extractor.table and extractor.cursor_column and cursor is not None:
            shape.where.append(Comparison(extractor.cursor_column, ">", "cursor"))
        columns, outputs = _catalog(extractor, url, shape, binds)
        plan = PushdownPlan(shape, where, columns, binds, outputs)
        check_exact(plan)
        check_zone(plan, url, context, extractor.connect_timeout)
        extra = _cursor_bound(extractor, plan, context) if extractor.cursor_column else []
        return plan.source(extra, safe_description(where, shape.table))
    except NotExpressible as exc:
        return python_path(str(exc))
    except SQLAlchemyError:
        return python_path("the source's catalog could not be read (the Python path says why)")


def _catalog(extractor: Any, url: str, shape: QueryShape, binds: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The table's columns from the catalog, and a query's result columns by name (as the Python path
    types them: a query's columns are all Nullable on PostgreSQL)."""
    from pipelines.tools.extractors.source_schema import source_columns

    engine = extractor._engine(url, "the source")  # noqa: SLF001 (the extractor's own connection settings)
    try:
        with engine.connect() as connection:  # one connection for both questions
            columns = source_columns(connection, table=f"{shape.schema}.{shape.table}" if shape.schema else shape.table)
            outputs = {} if extractor.query is None else {
                c.name: c for c in source_columns(connection, query=extractor.query, params=dict(binds))}
    finally:
        engine.dispose()
    if not columns:
        raise NotExpressible(f"the source's catalog has no table {shape.table!r}")
    return columns, outputs


def _cursor_bound(extractor: Any, plan: PushdownPlan, context: RunContext) -> list[Comparison]:
    """The run loads cursor values up to the highest one now in the source, saved as the new cursor."""
    ceiling = cursor_ceiling(plan, extractor.cursor_column, context)
    column = {out: c.name for c, out in plan.selected()}[extractor.cursor_column]
    plan.binds["dp_cursor_max"] = ceiling
    if ceiling is not None:
        extractor.save_cursor(context, ceiling)
    return [Comparison(column, "<=", "dp_cursor_max")]
