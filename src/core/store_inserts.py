"""Inserting into the store: framework rows as JSON, Arrow tables in-process on the embedded engine.

On the embedded engine a large Arrow table is read by ClickHouse in-process (chdb's ``Python()``
table function, no serialisation); constant columns (the run id) are then filled in by the
``SELECT`` instead of being built in Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from core.sql_literals import sql_literal
from core.validators import quote_identifier

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in ClickHouse: {value!r}")


# Below this many rows the in-process insert's gain is smaller than what it costs the first time:
# chdb's Python() table function imports pandas (~0.4 s), a third of a short cron run.
_IN_PROCESS_MIN_ROWS = 50_000


def worth_in_process(data: pa.Table) -> bool:
    import sys

    return data.num_rows >= _IN_PROCESS_MIN_ROWS or "pandas" in sys.modules


def insert_in_process(client: Client, table: str, data: pa.Table, settings: dict[str, Any] | None,
                       constants: Mapping[str, str]) -> bool:
    """Insert through chdb's own connection; False when this client has none (then use the API)."""
    handle, conn = _chdb_connection(client)
    if conn is None:
        return False
    names = [name for name in data.column_names if name not in constants]
    columns = ", ".join(quote_identifier(name) for name in [*names, *constants])
    values = ", ".join([*(quote_identifier(name) for name in names),
                        *(_setting_literal(v) for v in constants.values())])
    options = settings_clause(settings or {})
    # chdb's Python() table function finds the Arrow table by its variable name in this frame.
    dp_arrow_batch = data  # noqa: F841
    sql = f"INSERT INTO {table} ({columns}) SELECT {values} FROM Python(dp_arrow_batch)"
    with handle.lock:
        conn.query(sql + (f" SETTINGS {options}" if options else ""))
    return True


def settings_clause(settings: Mapping[str, Any]) -> str:
    """``settings`` as the body of a statement's SETTINGS clause: ``a = 0, b = 'x'``."""
    return ", ".join(f"{key} = {_setting_literal(value)}" for key, value in settings.items())


# An INSERT ... SELECT that ends in its one SELECT (no SETTINGS or FORMAT clause, no comment to end it,
# no UNION whose last SELECT alone would take the clause).
_INSERT_SELECT = re.compile(r"\s*INSERT\s+INTO\s.*\bSELECT\s", re.IGNORECASE | re.DOTALL)
_ENDS_OTHERWISE = re.compile(r"\b(SETTINGS|FORMAT|UNION|INTERSECT|EXCEPT)\b|--|/\*|#|;", re.IGNORECASE)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def inline_settings(sql: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``sql`` and ``settings`` for chdb: an INSERT ... SELECT takes ``settings`` in its own SETTINGS
    clause (which applies to the insert too), the statement and no settings returned; any other
    statement is returned as it is. clickhouse-connect gives chdb a statement's settings with a SET
    of each on the session and restores them afterwards: 2n + 1 more engine calls per statement."""
    if (not _INSERT_SELECT.match(sql) or _ENDS_OTHERWISE.search(sql)
            or not all(_SETTING_NAME.fullmatch(k) for k in settings)
            or not all(isinstance(v, str | int | float) for v in settings.values())):
        return sql, settings
    return f"{sql}\nSETTINGS {settings_clause(settings)}", None


def insert_json(client: Client, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
    """Insert Python ``rows`` as JSONEachRow; on chdb through its own connection, the rows inline in
    the statement (clickhouse-connect would write them to a temporary file first)."""
    body = "\n".join(json.dumps(dict(zip(columns, row, strict=True)), default=json_value) for row in rows)
    handle, conn = _chdb_connection(client)
    if conn is None:
        client.raw_insert(table, list(columns), insert_block=body.encode(), fmt="JSONEachRow")
        return
    with handle.lock:
        conn.query(f"INSERT INTO {table} ({', '.join(map(quote_identifier, columns))}) FORMAT JSONEachRow\n{body}")


def _chdb_connection(client: Client) -> tuple[Any, Any]:
    """The chdb backend's handle (its ``lock`` serialises calls) and connection; ``(None, None)``
    for a client that has none (a server, or another clickhouse-connect)."""
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    conn = getattr(handle, "conn", None)
    return (handle, conn) if conn is not None and hasattr(handle, "lock") else (None, None)


def with_constants(data: pa.Table, constants: Mapping[str, str]) -> pa.Table:
    """``data`` with each constant as a string column (replacing a column of the same name)."""
    import struct

    import pyarrow as pa

    for name, value in constants.items():
        # Built from buffers: converting a Python value (pa.array, pa.scalar) makes pyarrow
        # import pandas (~0.4 s), for one string.
        encoded = value.encode()
        one = pa.StringArray.from_buffers(1, pa.py_buffer(struct.pack("<ii", 0, len(encoded))), pa.py_buffer(encoded))
        array = pa.nulls(data.num_rows, pa.string()).fill_null(one[0])
        if name in data.column_names:
            data = data.set_column(data.column_names.index(name), name, array)
        else:
            data = data.append_column(name, array)
    return data


def _setting_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return sql_literal(str(value))
