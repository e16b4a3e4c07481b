"""Connecting the store to a ClickHouse server over HTTP(S): the configured one or the project's
own local server (``clickhouse_server``).

One bounded attempt: a TCP connect within ``CLICKHOUSE_CONNECT_TIMEOUT``, then the client's first
query within the same time, so a host that is down, or a server that accepts connections but does
not answer, costs that once per command, in one line. A local server must also prove it serves
this project's store (its store id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.exceptions import StoreError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from core.config import Settings
    from core.local_server import ServerRecord


def connect(settings: Settings, local: ServerRecord | None, description: str, password: str | None = None) -> Client:
    """A client for the configured server (or ``local``, with ``password`` when it is a store
    turn's private listener); :class:`StoreError` in one line if none answers."""
    import logging

    import clickhouse_connect
    from urllib3 import Timeout

    # Its "Unexpected Http Driver Exception" warning duplicates the error we raise in one line.
    logging.getLogger("clickhouse_connect.driver._backend.http_sync").setLevel(logging.ERROR)
    args = server_args(settings, local, password)
    wait = settings.clickhouse_connect_timeout
    try:
        _reachable(args, wait)
        # The client's first query (its version probe) gets the connect timeout too: a server
        # that accepts connections but does not answer (stopped, overloaded) fails in `wait`
        # seconds instead of hanging for the query timeout.
        client = clickhouse_connect.get_client(**{**args, "send_receive_timeout": wait})
    except Exception as exc:
        reason = short(exc)
        if "Read timed out" in reason:
            reason = f"it accepts connections but did not answer within {wait:g} s"
        raise StoreError(f"Cannot connect to ClickHouse at {description} (connect timeout {wait:g} s): "
                         f"{reason}") from None
    client.timeout = Timeout(connect=wait, read=args["send_receive_timeout"])
    if local and local.store_id:
        from core.local_server import verify_store_id

        try:
            verify_store_id(client, local)
        except BaseException:
            client.close()
            raise
    return client


def server_args(settings: Settings, local: ServerRecord | None, password: str | None = None) -> dict[str, Any]:
    """``clickhouse_connect.get_client`` arguments for the configured server (or ``local``)."""
    s = settings
    # No HTTP session: the client is shared by threads (an extractor's prefetch thread and the
    # loader), and a server refuses concurrent queries in one session. Nothing uses session state.
    # Inserts are synchronous whatever the server's profile says (26.x defaults to async
    # inserts; with wait_for_async_insert=0 a run's rows and records would be fire-and-forget).
    common = {"connect_timeout": s.clickhouse_connect_timeout, "send_receive_timeout": max(s.timeout, 300),
              "autogenerate_session_id": False,
              "settings": {"async_insert": 0, "wait_for_async_insert": 1}}
    if local:
        from core.local_server import server_password

        return {"host": local.host, "port": local.port, "username": local.user,
                "password": server_password(s) if password is None else password, **common}
    if s.url:
        return {"dsn": s.url, **common}
    return {
        "host": s.clickhouse_host,
        "port": s.clickhouse_port,
        "username": s.clickhouse_user,
        "password": s.clickhouse_password.get_secret_value(),
        "secure": s.clickhouse_secure,
        **common,
    }


#: Sent on every request to a cluster or a ``Replicated``/``Shared`` database so that what this
#: process wrote is what it reads next, whichever node a load balancer picks (as dbt-clickhouse
#: does in cluster mode): inserts into a Distributed table reach the shards before they return,
#: ALTERs and mutations return once every active replica has applied them, replicated inserts
#: return once a majority of replicas has the block, and a Replicated database applies its DDL
#: synchronously. A single server needs none of it (nothing to lag behind).
CLUSTER_CONSISTENCY: dict[str, Any] = {
    "insert_distributed_sync": 1,
    "alter_sync": 3,
    "mutations_sync": 3,
    "insert_quorum": "auto",
    "database_replicated_enforce_synchronous_settings": 1,
}
#: ClickHouse Cloud's ``Shared`` database (SharedMergeTree): quorum settings do not apply there, a
#: SELECT instead first fetches the newest parts list from Keeper.
SHARED_CONSISTENCY: dict[str, Any] = {**CLUSTER_CONSISTENCY, "select_sequential_consistency": 1}


def consistency_settings(cluster: str | None, database_engine: str) -> dict[str, Any]:
    """The read-after-write settings for a store on a cluster (``CLICKHOUSE_CLUSTER``) or whose
    database has ``database_engine`` (empty: it does not exist yet); empty for a single server."""
    if database_engine == "Shared":
        return SHARED_CONSISTENCY
    if cluster or database_engine == "Replicated":
        return CLUSTER_CONSISTENCY
    return {}


def use_database(client: Client, database: str, cluster: str | None, description: str) -> None:
    """Point ``client`` at ``database`` when it exists (before setup_db, queries use qualified
    names) and give it the topology's read-after-write settings; a client that cannot even
    answer that is closed, with a :class:`StoreError` in one line."""
    try:
        rows = client.query("SELECT engine FROM system.databases WHERE name = {db:String}",
                            parameters={"db": database}).result_rows
        client.database = database if rows else client.database
        for key, value in consistency_settings(cluster, rows[0][0] if rows else "").items():
            client.set_client_setting(key, value)
    except Exception as exc:
        client.close()
        raise StoreError(f"ClickHouse at {description} does not answer: {short(exc)}") from None


def _reachable(args: dict[str, Any], timeout: float) -> None:
    """One TCP connection attempt within ``timeout``: clickhouse-connect's own probe retries the
    connect (2 x the timeout) before failing, on every command when a host is down."""
    import socket
    from urllib.parse import urlsplit

    if "dsn" in args:
        parts = urlsplit(args["dsn"])
        host, port = parts.hostname, parts.port or (8443 if parts.scheme == "https" else 8123)
    else:
        host, port = args["host"], args["port"]
    socket.create_connection((host, port), timeout=timeout).close()


def is_transport_error(exc: BaseException) -> bool:
    """A broken HTTP connection (as opposed to an error ClickHouse answered with)."""
    from clickhouse_connect.driver.exceptions import OperationalError
    from urllib3.exceptions import HTTPError

    return isinstance(exc, OperationalError) and isinstance(exc.__cause__, HTTPError)


def short(exc: BaseException) -> str:
    """An exception's text on one line, at most 500 characters."""
    text = " ".join(str(exc).split())
    return text[:500] + ("..." if len(text) > 500 else "")
