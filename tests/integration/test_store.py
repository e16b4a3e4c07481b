from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conftest import SRC, cli_env, run_cli
from core.exceptions import StoreError, StoreLockTimeout
from core.store import Store


def test_helpers_round_trip(store: Store) -> None:
    store.command("CREATE TABLE events (id UInt32, name String, amount Float64) ENGINE = MergeTree ORDER BY id")
    assert store.table_exists("events")
    assert not store.table_exists("nope")
    written = store.insert_arrow("events", pa.table({
        "id": pa.array([1, 2, 3], pa.uint32()), "name": ["a", "b", "c"], "amount": [1.5, 2.5, 3.5],
    }))
    assert written == 3
    assert store.insert_df("events", pd.DataFrame({"id": [4], "name": ["d"], "amount": [4.5]})) == 1
    assert store.query_rows("SELECT id, name FROM events ORDER BY id") == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert store.query_df("SELECT sum(amount) AS s FROM events")["s"].tolist() == [12.0]
    assert store.query_arrow("SELECT name FROM events WHERE id > {n:UInt32} ORDER BY id", {"n": 2}) \
        .column("name").to_pylist() == ["c", "d"]
    assert store.query_dicts("SELECT id FROM events WHERE id = 1") == [{"id": 1}]
    assert store.list_tables() == [{"name": "events", "engine": "MergeTree", "rows": 4}]
    assert store.server_version().startswith("26.")


def test_clickhouse_errors_name_the_statement(store: Store) -> None:
    with pytest.raises(StoreError) as err:
        store.query_rows("SELECT * FROM missing_table")
    message = str(err.value)
    assert message.startswith("ClickHouse error: ")
    assert "UNKNOWN_TABLE" in message
    assert message.endswith("(while running: SELECT * FROM missing_table)")


def test_create_and_drop_database_are_idempotent(store: Store) -> None:
    assert store.create_database() is False
    store.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
    store.drop_database()
    assert not store.database_exists()
    assert store.create_database() is True
    assert store.list_tables() == []


_WORKER = textwrap.dedent("""
    import sys
    from core.config import load_settings
    from core.store import Store
    store = Store(load_settings(), linger=0)
    for i in range(int(sys.argv[1])):
        store.command("INSERT INTO shared VALUES ({i:UInt32}, {w:String})", {"i": i, "w": sys.argv[2]})
        store.close()  # release the store between statements so the other process gets turns
    print("done", sys.argv[2])
""")


def test_two_processes_take_turns_on_the_embedded_store(store: Store, project_env) -> None:
    store.command("CREATE TABLE shared (i UInt32, worker String) ENGINE = MergeTree ORDER BY i")
    store.close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, "15", name], env=cli_env(), cwd=SRC,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert store.query_rows("SELECT worker, count() FROM shared GROUP BY worker ORDER BY worker") == [
        ("a", 15), ("b", 15)]


_HOLDER = textwrap.dedent("""
    import sys, time
    from core.config import load_settings
    from core.store import Store
    store = Store(load_settings())
    with store.session():
        print("holding", flush=True)
        sys.stdin.readline()  # hold until the test says so (or kills us)
""")


def _hold_store() -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], env=cli_env(), cwd=SRC, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    return holder


@pytest.mark.embedded_only("the embedded store's file lock")
def test_a_held_store_times_out_with_the_holders_pid(project_env, monkeypatch) -> None:
    holder = _hold_store()
    try:
        result = run_cli("setup_db", env={"STORE_LOCK_TIMEOUT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"is still in use by pid {holder.pid}" in result.stderr
    assert "after 1 s (STORE_LOCK_TIMEOUT)" in result.stderr
    assert f"Waiting for the embedded store {project_env['DATA_DIR']}/clickhouse: it is in use by pid {holder.pid}" \
        in result.stderr


@pytest.mark.embedded_only("the embedded store's file lock")
def test_a_waiting_process_gets_the_store_when_it_is_released(project_env) -> None:
    holder = _hold_store()
    waiter = subprocess.Popen([sys.executable, str(SRC / "main.py"), "setup_db"],
                              env=cli_env({"STORE_LOCK_TIMEOUT": "60"}), cwd=SRC, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiter.stderr is not None and holder.stdin is not None
    first_line = waiter.stderr.readline()  # blocks until the waiter reports that it waits
    assert f"Waiting for the embedded store {project_env['DATA_DIR']}/clickhouse: it is in use by pid {holder.pid}" \
        in first_line
    released = time.monotonic()
    holder.stdin.write("release\n")
    holder.stdin.flush()
    out, err = waiter.communicate(timeout=60)
    holder.wait(timeout=30)
    assert waiter.returncode == 0, err
    assert "Got the embedded store" in err
    assert "Created 'data_warehouse'" in out
    assert time.monotonic() - released < 30


@pytest.mark.embedded_only("chdb's own directory lock")
def test_store_opened_outside_the_framework_is_reported(settings, project_env) -> None:
    script = textwrap.dedent(f"""
        import time, clickhouse_connect
        c = clickhouse_connect.get_client(dsn="chdb://{settings.store_path}")
        print("open", flush=True)
        time.sleep(30)
    """)
    Path(settings.store_path).mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "open"
        settings.store_lock_timeout = 1
        store = Store(settings)
        with pytest.raises(StoreLockTimeout) as err:
            store.command("SELECT 1")
    finally:
        other.kill()
        other.wait()
    assert "is open in a process that is not data-processor" in str(err.value)


@pytest.mark.embedded_only("idle release of the embedded store")
def test_an_idle_store_stays_open_until_another_process_waits(settings, project_env, monkeypatch) -> None:
    import core.store

    # Past its linger, an idle store is kept while nobody waits (a run's next batch would
    # otherwise reopen it); a waiting process gets it at once, long before MAX_IDLE.
    monkeypatch.setattr(core.store, "MAX_IDLE", 600.0)
    store = Store(settings)
    store.create_database()
    time.sleep(core.store.DEFAULT_LINGER + 0.5)
    assert store._client is not None
    started = time.monotonic()
    result = run_cli("setup_db", env={"STORE_LOCK_TIMEOUT": "60"})
    assert result.returncode == 0, result.stderr
    assert store._client is None
    assert time.monotonic() - started < 60
    store.close()
