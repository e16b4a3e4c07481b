"""Driver errors as the framework's own (:class:`StoreError`, naming the statement), for :mod:`core.store`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.exceptions import StoreConnectionLost, StoreError
from core.redaction import mask_query
from core.sql_literals import sql_literal
from core.store_server import is_transport_error
from core.store_server import short as _short


def setting_literal(value: Any) -> str:
    """A setting's value in a ``SET`` statement: a number as is, anything else a string literal."""
    return str(value) if isinstance(value, int) else sql_literal(str(value))


@contextmanager
def errors(sql: str) -> Iterator[None]:
    """Turn driver errors into :class:`StoreError` naming the statement."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        if not isinstance(exc, ClickHouseError) and type(exc).__module__.split(".")[0] != "chdb":
            raise
        # Masked before it is cut short, so a cut cannot leave half a credential unrecognised.
        statement = mask_query(" ".join(sql.split()))
        statement = statement[:200] + ("..." if len(statement) > 200 else "")
        if is_transport_error(exc):
            raise StoreConnectionLost(f"Lost the connection to ClickHouse: {_short(exc)} "
                                      f"(while running: {statement})") from exc
        raise StoreError(f"ClickHouse error: {_short(exc)} (while running: {statement})") from exc
