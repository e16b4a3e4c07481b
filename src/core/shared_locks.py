"""Locks that hold across hosts when the store is a ClickHouse server.

On the embedded engine one machine owns the store, and the kernel file locks under ``RUN_DIR``
suffice. A server can be written by processes on several hosts with separate ``RUN_DIR``s, so
there the same exclusions are also claimed in ClickHouse: one run per pipeline (and interval), one
partition rebuild at a time per table for rebuilds that copy rows from outside the run's slice,
one migrate, one alert decision. :func:`cross_host_lock` chooses how, per topology (issue 28):

- a single server: a claim row in ``_dp_locks`` (:class:`core.migrations.ClickHouseLock`), safe
  there because every reader reads the one server;
- a cluster or a ``Replicated``/``Shared`` database: a key in Keeper (:class:`core.keeper_lock.KeeperLock`),
  because a claim row read on a lagging replica lets two processes win (measured in issue 28);
  without ``keeper_map_path_prefix`` in the server config: :class:`ConfigError`, never the claim row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from core.exceptions import AlreadyRunning, ConfigError, LoadError, StoreError
from core.store import Store

if TYPE_CHECKING:
    from core.keeper_lock import KeeperLock
    from core.migrations.lock import ClickHouseLock

# A claim not refreshed for this long is considered abandoned (a process killed on another host);
# claims of dead processes on this host are broken at once. (Keeper claims have a renewed lease.)
RUN_LOCK_TTL = 6 * 3600.0
REBUILD_LOCK_TTL = 3600.0
KEEPER_MAP_HELP = ("set <keeper_map_path_prefix> (and <zookeeper>) in every node's server config, "
                   "see docs/deployment.md, 'Clusters and Cloud'")


def cross_host_lock(store: Store, name: str, ttl: float, settle: float | None = None) -> ClickHouseLock | KeeperLock:
    """The lock ``name`` for this store's topology (see the module's docstring); ``ttl`` and
    ``settle`` are the claim row's (``settle`` None: the default wait, 0 on the embedded engine)."""
    from core.migrations.lock import LOCK_SETTLE_SECONDS, ClickHouseLock
    from core.migrations.tables import LOCKS_TABLE, create_locks_table
    from core.topology import kind

    found = kind(store)
    if found in ("cluster", "replicated"):
        return _keeper_lock(store, name, found)
    if not store.table_exists(LOCKS_TABLE):
        store.create_database()
        create_locks_table(store)
    if settle is None:
        settle = 0 if found == "embedded" else LOCK_SETTLE_SECONDS
    return ClickHouseLock(store, name=name, ttl=ttl, settle=settle)


def _keeper_lock(store: Store, name: str, found: str) -> KeeperLock:
    from core.keeper_lock import KEEPER_LOCKS_TABLE, KeeperLock

    if not store.table_exists(KEEPER_LOCKS_TABLE):
        try:
            _create_keeper_table(store, found)
        except StoreError as exc:
            text = str(exc)
            if not any(sign in text for sign in ("keeper_map_path_prefix", "NO_ZOOKEEPER", "ZooKeeper")):
                raise  # not about Keeper (a node down, no rights): said as it is
            where = (f"cluster '{store.settings.clickhouse_cluster}'" if found == "cluster"
                     else f"the Replicated/Shared database '{store.database}'")
            reason = "keeper_map_path_prefix is not set" if "keeper_map_path_prefix" in text else text
            raise ConfigError(f"Locks on {where} need KeeperMap (a claim row is not safe across replicas), "
                              f"which this server refused: {KEEPER_MAP_HELP} ({reason[:300]})") from None
    return KeeperLock(store, name)


def _create_keeper_table(store: Store, found: str) -> None:
    """On a cluster, on every node (a load balancer may send the next statement to any of them)."""
    from core.keeper_lock import keeper_table_ddl
    from core.topology import Topology, cluster_nodes, node_store
    from core.validators import quote_identifier

    cluster = store.settings.clickhouse_cluster
    if found != "cluster" or not cluster:
        store.command(keeper_table_ddl(store))
        return
    try:
        store.command(keeper_table_ddl(store, f" ON CLUSTER {quote_identifier(cluster)}"))
        return
    except StoreError as exc:
        if "Code: 392" not in str(exc):  # distributed DDL disabled (nodes run from the chdb wheel)
            raise
    topology = Topology("cluster", cluster, tuple(cluster_nodes(store, cluster)))
    problems = topology.problems()
    if problems:
        raise StoreError(problems[0])
    for node in topology.nodes:
        on_node = node_store(store, node)
        try:
            on_node.command(keeper_table_ddl(on_node))
        finally:
            on_node.close()


@contextmanager
def run_lock(store: Store, name: str, what: str, timeout: float | None = None) -> Iterator[None]:
    """Claim run ``name`` (e.g. ``hours@20260115T000000``) in ClickHouse on a server; raise
    :class:`AlreadyRunning` when a process (on any host) holds it."""
    if not store.is_server:
        yield
        return
    ttl = max(RUN_LOCK_TTL, (timeout or 0) + 60)
    lock = cross_host_lock(store, f"{store.database}:run:{name}", ttl)
    holder = lock.try_acquire()
    if holder is not None:
        raise AlreadyRunning(f"{what} is already running on {holder.describe()} ({lock_place(lock)}); "
                             "not starting a second run")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def rebuild_lock(store: Store, table: str, wait: float, note: str) -> Iterator[None]:
    """Serialise partition rebuilds of ``table`` across hosts (no-op on the embedded engine)."""
    if not store.is_server:
        yield
        return
    lock = cross_host_lock(store, f"{store.database}:rebuild:{table}", REBUILD_LOCK_TTL)
    try:
        lock.acquire(wait, poll=0.2)
    except Exception as exc:
        raise LoadError(f"Timed out waiting for another run's rebuild of {table} ({note}): {exc}") from None
    try:
        yield
    finally:
        lock.release()


def lock_place(lock: ClickHouseLock | KeeperLock) -> str:
    """Where ``lock`` keeps its claim, for messages."""
    from core.keeper_lock import KEEPER_LOCKS_TABLE, KeeperLock
    from core.migrations.tables import LOCKS_TABLE

    if isinstance(lock, KeeperLock):
        return f"key in {lock.store.database}.{KEEPER_LOCKS_TABLE}, kept in Keeper"
    return f"lock row in {lock.store.database}.{LOCKS_TABLE}"
