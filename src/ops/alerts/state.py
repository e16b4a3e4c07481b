"""Alert state in ClickHouse: which conditions are firing (``_dp_alerts``) and what was sent (``_dp_alert_log``).

A condition (``<pipeline>:failing``, ``<pipeline>:stale``, ``<pipeline>:warn:<check>``) alerts
when it starts, again as a reminder every ``ALERT_REMIND_HOURS`` while it lasts, and once
when it ends. The decision is a read-modify-write made under a lock that covers every process
using the store: the embedded store's own file lock (held for the whole decision), and on a
server the cross-host lock the migrations use (core/shared_locks.py), so two processes never both send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from core.framework_layout import framework_layout
from core.store import Store

ALERTS_TABLE = "_dp_alerts"
ALERT_LOG_TABLE = "_dp_alert_log"
LOCK_WAIT = 10.0  # seconds to wait for another process's decision before giving up (no double send)

Action = Literal["alert", "reminder", "recovered"]


@dataclass
class ConditionState:
    key: str
    firing: bool
    since: datetime
    last_sent_at: datetime
    updated_at: datetime


def ensure_alert_tables(store: Store) -> None:
    if getattr(store, "_dp_alert_tables", None) == store.database:
        return
    for statement in alert_ddl(store):
        store.command(statement)
    store._dp_alert_tables = store.database  # type: ignore[attr-defined]


def alert_ddl(store: Store) -> list[str]:
    """``CREATE`` of ``_dp_alerts`` and ``_dp_alert_log`` in the store's layout (:mod:`core.framework_layout`)."""
    layout, ttl = framework_layout(store.settings), int(store.settings.run_history_ttl_days)
    return [f"""CREATE TABLE IF NOT EXISTS {store.table(ALERTS_TABLE)}{layout.on_cluster} (
        key String, pipeline LowCardinality(String), firing UInt8,
        since DateTime64(3, 'UTC'), last_sent_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'),
        last_event LowCardinality(String), run_id String, version UInt64
    ) ENGINE = {layout.engine(ALERTS_TABLE, "ReplacingMergeTree", "version")} ORDER BY key""",
            f"""CREATE TABLE IF NOT EXISTS {store.table(ALERT_LOG_TABLE)}{layout.on_cluster} (
        sent_at DateTime64(3, 'UTC'), key String, pipeline LowCardinality(String), event LowCardinality(String),
        channel String, ok UInt8, error String
    ) ENGINE = {layout.engine(ALERT_LOG_TABLE)} PARTITION BY toYYYYMM(sent_at) ORDER BY (pipeline, sent_at)
    TTL toDateTime(sent_at) + INTERVAL {ttl} DAY"""]


def read_state(store: Store, key: str) -> ConditionState | None:
    ensure_alert_tables(store)
    rows = store.query_rows(
        f"SELECT key, firing, since, last_sent_at, updated_at FROM {store.table(ALERTS_TABLE)} FINAL "
        "WHERE key = {k:String}", {"k": key})
    if not rows:
        return None
    key, firing, since, sent, updated = rows[0]
    return ConditionState(key, bool(firing), _utc(since), _utc(sent), _utc(updated))


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _action(state: ConditionState | None, firing: bool, remind: timedelta | None, now: datetime) -> Action | None:
    if firing:
        if state is None or not state.firing:
            return "alert"
        if remind and now - state.last_sent_at >= remind:
            return "reminder"
        return None
    return "recovered" if state is not None and state.firing else None


def _write(store: Store, key: str, pipeline: str, firing: bool, since: datetime, sent: datetime, event: str,
           run_id: str) -> None:
    now = datetime.now(UTC)
    store.insert_rows(ALERTS_TABLE, [[key, pipeline, int(firing), since, sent, now, event, run_id, time.time_ns()]],
                      ["key", "pipeline", "firing", "since", "last_sent_at", "updated_at", "last_event", "run_id",
                       "version"])


def decide(store: Store, key: str, pipeline: str, firing: bool, event: str, run_id: str = "",
           remind: timedelta | None = None) -> Action | None:
    """Record the condition's new state; return what to send (``None``: nothing, already said)."""
    ensure_alert_tables(store)
    now = datetime.now(UTC)
    if _action(read_state(store, key), firing, remind, now) is None:
        return None  # the common case, decided without a lock
    with store.session(), DecisionLock(store, key) as held:
        if not held:
            return None  # another process is deciding this very condition: it sends
        state = read_state(store, key)
        action = _action(state, firing, remind, now)
        if action == "alert":
            _write(store, key, pipeline, True, now, now, event, run_id)
        elif action == "reminder" and state is not None:
            _write(store, key, pipeline, True, state.since, now, event, run_id)
        elif action == "recovered" and state is not None:
            _write(store, key, pipeline, False, state.since, now, event, run_id)
        return action


class DecisionLock:
    """Server mode: a cross-host lock per condition (core/shared_locks.py); embedded: the held session is the lock."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key, self.lock = store, key, None

    def __enter__(self) -> bool:
        if self.store.settings.is_embedded:
            return True
        from core.shared_locks import cross_host_lock

        self.lock = cross_host_lock(self.store, f"alert:{self.key}", ttl=60)
        deadline = time.monotonic() + LOCK_WAIT
        while self.lock.try_acquire() is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()


def record_delivery(store: Store, key: str, pipeline: str, event: str, channel: str, error: str) -> None:
    ensure_alert_tables(store)
    store.insert_rows(ALERT_LOG_TABLE, [[datetime.now(UTC), key, pipeline, event, channel, int(not error), error]],
                      ["sent_at", "key", "pipeline", "event", "channel", "ok", "error"])


def deliveries(store: Store, pipeline: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    ensure_alert_tables(store)
    where = "pipeline = {p:String}" if pipeline else "1"
    return store.query_dicts(f"SELECT * FROM {store.table(ALERT_LOG_TABLE)} WHERE {where} "
                             "ORDER BY sent_at DESC LIMIT {n:UInt32}", {"p": pipeline or "", "n": limit})
