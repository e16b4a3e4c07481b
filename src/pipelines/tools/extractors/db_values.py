"""Driver values into Arrow arrays of the source's declared types (issue 24), and the sessions that
make those values exact: UTC session zones, raw JSON/interval/time text, timeouts.

A value that does not fit its column's type (PostgreSQL ``'infinity'``, a MySQL zero date, a year
outside ClickHouse's 1900-2299, a ``NaN`` numeric) fails the run with one line naming the table,
the column and the row: wrong data is worse than a failed run.
"""

from __future__ import annotations

import datetime as dt
import select
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import ExtractError
from pipelines.tools.extractors.source_schema import SourceColumn

# ClickHouse's DateTime64 and Date32 range.
_FIRST = dt.datetime(1900, 1, 1)
_LAST = dt.datetime(2299, 12, 31, 23, 59, 59, 999999)


def _mysql_time(value: dt.timedelta) -> str:
    """A MySQL TIME (a PyMySQL timedelta) in MySQL's own text form, ``[-]HH:MM:SS[.ffffff]``."""
    sign = "-" if value < dt.timedelta(0) else ""
    micros = abs(value) // dt.timedelta(microseconds=1)
    seconds, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{fraction:06d}" if fraction else "")


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.timedelta):
        return _mysql_time(value)
    if isinstance(value, dt.time | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="strict")
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _prepare(target: pa.DataType) -> Callable[[Any], Any]:
    """How one driver value becomes what ``pa.array(..., type=target)`` takes."""
    if pa.types.is_string(target):
        return _text
    if pa.types.is_binary(target):
        return lambda v: bytes(v) if isinstance(v, memoryview | bytearray) else v
    if pa.types.is_list(target):
        inner = _prepare(target.value_type)
        return lambda v: v if v is None else [inner(x) for x in v]
    return lambda v: v


_UTC = pa.timestamp("us", tz="UTC")
_RANGE = {"date": (pa.scalar(_FIRST.date(), pa.date32()), pa.scalar(_LAST.date(), pa.date32())),
          "timestamp": (pa.scalar(_FIRST, _UTC), pa.scalar(_LAST, _UTC))}


def _array(values: list[Any], column: SourceColumn) -> pa.Array:
    target = column.arrow_type
    timed = "date" if pa.types.is_date(target) else "timestamp" if pa.types.is_timestamp(target) else None
    if timed is None:
        prepare = _prepare(target)
        return pa.array([None if v is None else prepare(v) for v in values], type=target)
    if any(isinstance(v, str) for v in values):  # the driver's text for what is no date (MySQL zero dates)
        raise ValueError("not a date (a MySQL zero date?)")
    array = pa.array(values, type=target)
    low, high = pc.min_max(array).values()
    first, last = _RANGE[timed]
    if low.is_valid and (pc.less(low, first).as_py() or pc.greater(high, last).as_py()):
        years = {low.as_py().year, high.as_py().year}
        infinity = " (PostgreSQL's 'infinity'?)" if years & {1, 9999} else ""
        raise ValueError(f"outside ClickHouse's range 1900-01-01 to 2299-12-31{infinity}")
    return array


def _bad_row(values: list[Any], column: SourceColumn) -> tuple[int, Any, str]:
    for row, value in enumerate(values):
        try:
            _array([value], column)
        except Exception as exc:  # noqa: BLE001 (any failure names the row)
            return row, value, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return 0, None, "unknown"


def declared_batch(rows: list[Any], names: list[str], columns: list[SourceColumn], first_row: int,
                   where: str) -> pa.Table:
    """One batch with the declared types; ``first_row`` is the 1-based number of ``rows[0]``."""
    arrays = []
    for i, column in enumerate(columns):
        values = [r[i] for r in rows]
        try:
            arrays.append(_array(values, column))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError,
                TypeError, UnicodeDecodeError):
            row, value, reason = _bad_row(values, column)
            shown = value.isoformat() if isinstance(value, dt.date) else repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise ExtractError(f"{where}: column '{column.name}' ({column.source_type}) row {first_row + row}: "
                               f"{shown} does not fit {column.clickhouse_type}: {reason}") from None
    schema = pa.schema([c.arrow_field() for c in columns])
    return pa.Table.from_arrays(arrays, schema=schema)


# ---- sessions ------------------------------------------------------------------------------------

def connect_args(driver: str, connect_timeout: float, statement_timeout: float | None,
                 url_query: Any = None) -> dict[str, Any]:
    """Driver arguments: a UTC session zone and the timeouts (PostgreSQL's psycopg2, PyMySQL/mysqlclient).
    libpq ``options`` given in the URL's query are kept, after ours."""
    given = dict(url_query or {})
    if driver == "psycopg2":
        options = " ".join(filter(None, ["-c TimeZone=UTC", given.get("options")]))
        if statement_timeout:
            options += f" -c statement_timeout={int(statement_timeout * 1000)}"
        return {"connect_timeout": max(1, round(connect_timeout)), "options": options,
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    if driver in ("pymysql", "mysqldb"):
        args: dict[str, Any] = {"connect_timeout": connect_timeout}
        # PyMySQL reads the server's greeting with its read timeout: the connect timeout until
        # connected (then the statement timeout, see after_connect); mysqlclient has one for both.
        read = connect_timeout if driver == "pymysql" else statement_timeout
        if read:
            args.update(read_timeout=read, write_timeout=read)
        return args
    return {}


def after_connect(driver: str, dbapi_connection: Any, statement_timeout: float | None) -> None:
    """Per new connection: psycopg2 reads JSON/time/interval as text; MySQL sessions are UTC, and
    PyMySQL gets the statement timeout as its read timeout once the handshake (bounded by the
    connect timeout) is done."""
    if driver == "psycopg2":
        raw_text_types(dbapi_connection)
        return
    if driver in ("pymysql", "mysqldb"):
        # TIMESTAMP values are shown in the session's zone: UTC makes the driver's naive datetimes
        # UTC, whatever the server's default zone.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        cursor.close()
    if driver == "pymysql":
        dbapi_connection._read_timeout = statement_timeout  # noqa: SLF001 (no public setter)
        dbapi_connection._write_timeout = statement_timeout  # noqa: SLF001


def raw_text_types(dbapi_connection: Any) -> None:
    """psycopg2: json/jsonb, time, timetz and interval (and their arrays) as PostgreSQL's own text,
    so JSON stays the JSON the source holds and intervals keep their months."""
    from psycopg2 import extensions, extras

    extras.register_default_json(dbapi_connection, loads=lambda text: text)
    extras.register_default_jsonb(dbapi_connection, loads=lambda text: text)
    for oid, array_oid, name in ((1083, 1183, "TIME"), (1266, 1270, "TIMETZ"), (1186, 1187, "INTERVAL")):
        scalar = extensions.new_type((oid,), f"DP_{name}_TEXT", lambda value, cursor: value)
        extensions.register_type(scalar, dbapi_connection)
        extensions.register_type(extensions.new_array_type((array_oid,), f"DP_{name}_ARRAY", scalar),
                                 dbapi_connection)


def wait_interruptibly(connection: Any) -> None:
    """psycopg2's wait callback: waits in Python (so SIGTERM ends a run waiting on the database)
    and gives up connecting after the DSN's ``connect_timeout`` (libpq's own timer does not run
    when a callback waits)."""
    from psycopg2 import OperationalError, extensions

    connecting = connection.status == extensions.STATUS_SETUP
    limit = float(extensions.parse_dsn(connection.dsn).get("connect_timeout", 0) or 0) if connecting else 0
    deadline = time.monotonic() + limit if limit else None
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            connection.close()
            raise OperationalError(f"timeout expired: no answer within connect_timeout={limit:g} s")
        if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
            raise OperationalError(f"bad state from poll: {state}")
        # poll(), not select(): a long-running process may hold more than 1024 descriptors, and
        # select() cannot wait on one numbered 1024 or more ("filedescriptor out of range").
        waiter = select.poll()
        waiter.register(connection.fileno(), select.POLLIN if state == extensions.POLL_READ else select.POLLOUT)
        waiter.poll(None if left is None else max(0, int(left * 1000)))
