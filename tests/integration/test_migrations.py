"""Migrations against the real embedded ClickHouse: apply, resume, detect edits, lock, roll back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, database, run_cli
from core.config import load_settings
from core.exceptions import MigrationError, MigrationLocked
from core.health import check_migrations
from core.migrations import LOCKS_TABLE, MIGRATIONS_TABLE, ClickHouseLock, Migrator, Tracker, load_migrations


@pytest.fixture
def mig_dir(tmp_path: Path, project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    monkeypatch.setenv("MIGRATIONS_DIR", str(directory))
    project_env["MIGRATIONS_DIR"] = str(directory)
    return directory


@pytest.fixture
def migrator(mig_dir: Path, settings, store) -> Migrator:
    return Migrator(settings, store, mig_dir)


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql)
    return path


def states(m: Migrator) -> dict[int, str]:
    return {s.version: s.label for s in m.status()}


def count(store, table: str) -> int:
    return int(store.command(f"SELECT count() FROM {store.table(table)}"))


EVENTS = """-- events; the first migration
CREATE TABLE IF NOT EXISTS {database}.events{cluster} (id UInt32, note String) ENGINE = MergeTree ORDER BY id;
INSERT INTO {database}.events VALUES (1, 'semi;colon'), (2, 'it''s -- not a comment');
"""
ORDERS = """CREATE TABLE IF NOT EXISTS `{database}`.orders (id UInt32) ENGINE = MergeTree ORDER BY id;
/* a comment; with semicolons */
INSERT INTO {database}.orders SELECT number FROM numbers(5);
"""


def test_fresh_apply_then_rerun_is_a_no_op(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0002_orders.sql", ORDERS)
    assert states(migrator) == {1: "pending", 2: "pending"}

    result = migrator.migrate(lock_timeout=5)
    assert [(a.file, a.statements_run, a.statements_total, a.resumed_at) for a in result.applied] == [
        ("0001_events.sql", 2, 2, 1), ("0002_orders.sql", 2, 2, 1)]
    assert store.query_rows("SELECT id, note FROM events ORDER BY id") == [
        (1, "semi;colon"), (2, "it's -- not a comment")]
    assert count(store, "orders") == 5
    statuses = migrator.status()
    assert [s.label for s in statuses] == ["applied", "applied"]
    assert statuses[0].statements_applied == 2 and statuses[0].recorded_checksum == statuses[0].checksum
    assert statuses[0].duration_seconds is not None and statuses[0].applied_at is not None

    again = migrator.migrate(lock_timeout=5)
    assert again.applied == []
    assert count(store, "events") == 2 and count(store, "orders") == 5
    # The lock row was released both times.
    assert ClickHouseLock(store).live() == []


def test_failure_mid_file_records_progress_and_resumes_at_that_statement(migrator: Migrator, mig_dir: Path,
                                                                         store) -> None:
    path = write(mig_dir, "0001_five.sql", """CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;
INSERT INTO a VALUES (1);
CREATE TABLE b (x UInt8) ENGINE = MergeTree ORDER BY x;

INSERT INTO no_such_table VALUES (1);
CREATE TABLE c (x UInt8) ENGINE = MergeTree ORDER BY x;
""")
    with pytest.raises(MigrationError) as err:
        migrator.migrate(lock_timeout=5)
    message = str(err.value)
    assert message.startswith(f"{path} failed at statement 4 of 5 (line 5): ClickHouse error: ")
    assert "no_such_table" in message
    assert message.endswith("statements 1-3 are applied and recorded; "
                            "fix the file and run ./run.sh migrate again to resume at statement 4")
    [status] = migrator.status()
    assert status.label == "failed at statement 4 of 5"
    assert "no_such_table" in status.error
    assert not store.table_exists("c")
    assert ClickHouseLock(store).live() == []  # released although the migration failed

    path.write_text(path.read_text().replace("no_such_table", "b"))
    assert states(migrator) == {1: "failed at statement 4 of 5 (file changed since)"}
    result = migrator.migrate(lock_timeout=5)
    assert [(a.statements_run, a.resumed_at) for a in result.applied] == [(2, 4)]
    assert count(store, "a") == 1  # statement 2 was not run again
    assert count(store, "b") == 1 and store.table_exists("c")
    [status] = migrator.status()
    assert (status.label, status.statements_applied, status.recorded_checksum) == ("applied", 5, status.checksum)


def test_resume_refuses_when_the_file_lost_applied_statements(migrator: Migrator, mig_dir: Path) -> None:
    path = write(mig_dir, "0001_x.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;\nSELECT * FROM nope;")
    with pytest.raises(MigrationError):
        migrator.migrate(lock_timeout=5)
    path.write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"0001_x.sql has 1 statements now, but statements 1-1 were already "
                                             r"applied before it failed"):
        migrator.migrate(lock_timeout=5)


def test_an_interrupted_migration_is_reported_and_resumed(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_x.sql", "CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x; INSERT INTO a VALUES (1); "
                                 "INSERT INTO a VALUES (2)")
    migrator.migrate(lock_timeout=5)
    store.command("TRUNCATE TABLE a")
    # What a process killed after statement 1 leaves behind: a "running" row and no lock.
    [m] = load_migrations(mig_dir)
    Tracker(store).write(m, migrator.status()[0].record, total=3, applied=1, status="running", duration=0.1)
    assert states(migrator) == {1: "interrupted at statement 2 of 3"}
    assert check_migrations(migrator.settings).status == "fail"
    migrator.migrate(lock_timeout=5)
    assert store.query_rows("SELECT x FROM a ORDER BY x") == [(1,), (2,)]


def test_modified_blocks_migrate_unless_allowed(migrator: Migrator, mig_dir: Path, store) -> None:
    path = write(mig_dir, "0001_events.sql", EVENTS)
    migrator.migrate(lock_timeout=5)
    old = migrator.status()[0].checksum
    path.write_text(EVENTS + "-- an edited comment\n")
    write(mig_dir, "0002_orders.sql", ORDERS)
    [first, _] = migrator.status()
    assert (first.label, first.recorded_checksum) == ("modified", old)
    with pytest.raises(MigrationError) as err:
        migrator.migrate(lock_timeout=5)
    assert str(err.value) == (
        f"{path} was changed after it was applied (checksum when applied {old}, now {first.checksum}); restore it "
        "and put the change in a new migration, or run ./run.sh migrate --allow-modified to accept the edited file")
    assert not store.table_exists("orders")  # nothing ran

    result = migrator.migrate(allow_modified=True, lock_timeout=5)
    assert result.accepted == ["0001_events.sql"]
    assert [a.file for a in result.applied] == ["0002_orders.sql"]
    assert count(store, "events") == 2  # the accepted file was not re-run
    assert states(migrator) == {1: "applied", 2: "applied"}


def test_missing_file_is_reported_but_does_not_block(migrator: Migrator, mig_dir: Path, store) -> None:
    path = write(mig_dir, "0001_events.sql", EVENTS)
    migrator.migrate(lock_timeout=5)
    path.unlink()
    write(mig_dir, "0002_orders.sql", ORDERS)
    assert states(migrator) == {1: "missing", 2: "pending"}
    migrator.migrate(lock_timeout=5)
    assert states(migrator) == {1: "missing", 2: "applied"}
    check = check_migrations(migrator.settings)
    assert (check.status, check.detail) == ("warn", "applied but missing from MIGRATIONS_DIR: 0001_events.sql")


def test_an_invalid_later_file_stops_migrate_before_anything_runs(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    bad = write(mig_dir, "0002_bad.sql", "SELECT 1;\nCREATE TABLE {databse}.x (a UInt8) ENGINE = Memory")
    with pytest.raises(MigrationError, match=rf"^{bad} line 2: unknown placeholder {{databse}}"):
        migrator.migrate(lock_timeout=5)
    assert not store.table_exists("events")


def test_to_applies_only_up_to_a_version(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0002_orders.sql", ORDERS)
    write(mig_dir, "0003_more.sql", "CREATE TABLE more (x UInt8) ENGINE = Memory")
    migrator.migrate(target=2, lock_timeout=5)
    assert states(migrator) == {1: "applied", 2: "applied", 3: "pending"}
    with pytest.raises(MigrationError, match=r"^no migration has version 7 \(see ./run.sh migrate_status\)$"):
        migrator.migrate(target=7, lock_timeout=5)
    migrator.migrate(lock_timeout=5)
    assert store.table_exists("more")


def test_dry_run_prints_sql_and_changes_nothing(mig_dir: Path, store, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    result = run_cli("migrate", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"-- {mig_dir / '0001_events.sql'} (2 statements)\n"
        f"CREATE TABLE IF NOT EXISTS {database()}.events (id UInt32, note String) ENGINE = MergeTree ORDER BY id;\n\n"
        f"INSERT INTO {database()}.events VALUES (1, 'semi;colon'), (2, 'it''s -- not a comment');\n\n"
    )
    assert store.list_tables() == []  # not even the tracking or lock table


def test_dry_run_shows_where_a_failed_migration_resumes(migrator: Migrator, mig_dir: Path) -> None:
    write(mig_dir, "0001_x.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory; SELECT * FROM nope; SELECT 3")
    with pytest.raises(MigrationError):
        migrator.migrate(lock_timeout=5)
    [plan] = migrator.migrate(dry_run=True).planned
    assert (plan.start, [s.sql for s in plan.remaining]) == (1, ["SELECT * FROM nope", "SELECT 3"])


@pytest.mark.slow
def test_down_rolls_back_newest_first_and_forgets_them(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0001_events.down.sql", "DROP TABLE IF EXISTS {database}.events{cluster}")
    write(mig_dir, "0002_orders.sql", ORDERS)
    write(mig_dir, "0002_orders.down.sql", "DROP TABLE IF EXISTS {database}.orders")
    write(mig_dir, "0003_more.sql", "CREATE TABLE more (x UInt8) ENGINE = Memory")
    migrator.migrate(lock_timeout=5)

    with pytest.raises(MigrationError) as err:
        migrator.down(target=0, lock_timeout=5)
    assert str(err.value) == (f"cannot roll back 0003_more.sql: down file {mig_dir / '0003_more.down.sql'} "
                              "does not exist; nothing was rolled back")
    assert states(migrator) == {1: "applied", 2: "applied", 3: "applied"}

    write(mig_dir, "0003_more.down.sql", "DROP TABLE IF EXISTS more")
    assert migrator.down(lock_timeout=5).rolled_back == ["0003_more.sql"]  # default: the newest only
    assert states(migrator) == {1: "applied", 2: "applied", 3: "pending"}
    assert migrator.down(target=0, lock_timeout=5).rolled_back == ["0002_orders.sql", "0001_events.sql"]
    assert not store.table_exists("events") and not store.table_exists("orders")
    assert count(store, MIGRATIONS_TABLE) == 0
    assert migrator.down(lock_timeout=5).rolled_back == []
    # And forward again.
    migrator.migrate(lock_timeout=5)
    assert count(store, "events") == 2


@pytest.mark.slow
def test_migrate_status_exit_codes_and_json(mig_dir: Path, store, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0002_bad.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;\nSELECT * FROM nope")

    pending = run_cli("migrate_status", env={"COLUMNS": "200"})
    assert pending.returncode == 1
    assert "pending" in pending.stdout and "not up to date: run ./run.sh migrate" in pending.stdout

    failed = run_cli("migrate")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.strip().splitlines()[-1].startswith(
        f"error: {mig_dir / '0002_bad.sql'} failed at statement 2 of 2 (line 2): ClickHouse error: ")
    status = run_cli("migrate_status", "--json")
    assert status.returncode == 1
    report = json.loads(status.stdout)
    assert report["up_to_date"] is False
    assert [(m["version"], m["status"], m["label"]) for m in report["migrations"]] == [
        (1, "applied", "applied"), (2, "failed", "failed at statement 2 of 2")]
    human = run_cli("migrate_status", env={"COLUMNS": "200"})
    assert "failed at statement 2 of 2" in human.stdout and "0002_bad.sql: ClickHouse error" in human.stdout

    write(mig_dir, "0002_bad.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;\nSELECT 1")
    fixed = run_cli("migrate")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "Applied 0002_bad.sql (1 of 2 statements, resumed at statement 2) in " + \
        fixed.stdout.strip().rsplit(" in ", 1)[1]
    ok = run_cli("migrate_status", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["up_to_date"] is True
    again = run_cli("migrate")
    assert (again.returncode, again.stdout.strip()) == (
        0, f"Database '{database()}' is up to date: no migration to apply")


def test_migrate_needs_the_database(mig_dir: Path, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    result = run_cli("migrate")
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"does not exist in {load_settings().store_description}: "
                                          "run ./run.sh setup_db first")
    assert f"error: database '{database()}'" in result.stderr


def test_a_lock_held_by_another_host_blocks_until_forced(migrator: Migrator, mig_dir: Path, store) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    migrator.migrate(lock_timeout=5)
    write(mig_dir, "0002_orders.sql", ORDERS)
    other = ClickHouseLock(store)
    other.owner = "build-7.example.com:4242"
    assert other.try_acquire() is None

    started = time.monotonic()
    with pytest.raises(MigrationLocked) as err:
        migrator.migrate(lock_timeout=1)
    assert time.monotonic() - started < 5
    assert err.value.exit_code == 75
    assert str(err.value).startswith("migrations are locked by build-7.example.com:4242 (since ")
    assert str(err.value).endswith(f"(lock row in {database()}.{LOCKS_TABLE}); "
                                   "if that process is gone, run ./run.sh migrate --force-unlock")
    assert not store.table_exists("orders")

    migrator.migrate(force_unlock=True, lock_timeout=1)
    assert count(store, "orders") == 5
    assert ClickHouseLock(store).live() == []


def test_a_lock_left_by_a_dead_process_on_this_host_is_broken(migrator: Migrator, mig_dir: Path, store) -> None:
    import socket

    write(mig_dir, "0001_events.sql", EVENTS)
    migrator.migrate(lock_timeout=5)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ghost = ClickHouseLock(store)
    ghost.owner = f"{socket.gethostname()}:{dead.stdout.strip()}"
    assert ghost.try_acquire() is None
    write(mig_dir, "0002_orders.sql", ORDERS)
    migrator.migrate(lock_timeout=1)
    assert count(store, "orders") == 5


@pytest.mark.slow
def test_two_concurrent_migrate_processes_apply_each_migration_once(mig_dir: Path, store, project_env) -> None:
    store.close()
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0002_slow.sql", "CREATE TABLE log (who String) ENGINE = MergeTree ORDER BY who;\n"
                                    "SELECT sleep(1); SELECT sleep(1);\n"
                                    "INSERT INTO log VALUES ('applied');")
    processes = [
        subprocess.Popen([sys.executable, str(SRC / "main.py"), "migrate"], env=cli_env(), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    stdouts = sorted(out for out, _ in outputs)
    assert stdouts[0].startswith("Applied 0001_events.sql") and "Applied 0002_slow.sql" in stdouts[0]
    assert stdouts[1].strip() == f"Database '{database()}' is up to date: no migration to apply"
    waiting = [err for _, err in outputs if "Waiting for another migrate" in err]
    assert len(waiting) == 1
    assert count(store, "events") == 2
    assert store.query_rows("SELECT who FROM log") == [("applied",)]


def test_health_check_pending_warns_and_failed_fails(migrator: Migrator, mig_dir: Path) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    check = check_migrations(migrator.settings)
    assert (check.status, check.detail) == ("warn", "1 pending migration: run ./run.sh migrate")
    migrator.migrate(lock_timeout=5)
    assert check_migrations(migrator.settings).detail == "up to date (1 applied)"
    write(mig_dir, "0002_bad.sql", "SELECT * FROM nope")
    with pytest.raises(MigrationError):
        migrator.migrate(lock_timeout=5)
    check = check_migrations(migrator.settings)
    assert (check.status, check.detail) == (
        "fail", "0002_bad.sql failed at statement 1 of 1 -- see ./run.sh migrate_status")


def test_check_command_reports_pending_migrations_as_warning(mig_dir: Path, store, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    store.close()
    result = run_cli("check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["migrations"] == {"name": "migrations", "status": "warn",
                                    "detail": "1 pending migration: run ./run.sh migrate"}


@pytest.mark.slow
def test_migration_manager_script_and_help(mig_dir: Path, store, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    store.close()
    script = ROOT / "migrations" / "migration_manager.py"

    def manager(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], env=cli_env(), cwd="/", capture_output=True,
                              text=True, timeout=120)

    assert manager("status", "--json").returncode == 1
    applied = manager("up")
    assert applied.returncode == 0 and applied.stdout.startswith("Applied 0001_events.sql"), applied.stderr
    assert manager("status").returncode == 0
    assert manager("sideways").returncode == 2
    help_text = run_cli("help").stdout
    assert "migrate [--to|--dry-run|--allow-modified|--force-unlock|--lock-timeout]" in help_text
    assert "migrate_status [--json]" in help_text and "migrate_down [--to|--dry-run" in help_text


def test_two_claims_at_the_same_moment_agree_on_the_earliest(store) -> None:
    from core.migrations import framework_ddl

    for ddl in framework_ddl(store, None):
        store.command(ddl)
    rival = ClickHouseLock(store, settle=0)
    rival.owner = "rival-host:1"

    class Racing(ClickHouseLock):
        """Its rival's claim lands between its "is anyone there?" check and its own claim."""

        def _insert(self, *args, **kwargs) -> None:
            if rival._version == 0:
                assert rival.try_acquire() is None
            super()._insert(*args, **kwargs)

    late = Racing(store, settle=0)
    holder = late.try_acquire()
    assert holder is not None and holder.owner == "rival-host:1"
    assert not late.held
    assert [r.owner for r in ClickHouseLock(store).live()] == ["rival-host:1"]  # the loser withdrew its claim
    rival.release()
    assert late.try_acquire() is None and late.held


@pytest.mark.slow
def test_migrate_down_command(mig_dir: Path, migrator: Migrator, store, project_env) -> None:
    write(mig_dir, "0001_events.sql", EVENTS)
    write(mig_dir, "0001_events.down.sql", "DROP TABLE IF EXISTS {database}.events{cluster} SYNC")
    migrator.migrate(lock_timeout=5)
    store.close()
    dry = run_cli("migrate_down", "--dry-run")
    assert (dry.returncode, dry.stdout) == (
        0, f"-- {mig_dir / '0001_events.down.sql'} (1 statement)\nDROP TABLE IF EXISTS {database()}.events SYNC;\n\n")
    assert store.table_exists("events")
    done = run_cli("migrate_down")
    assert (done.returncode, done.stdout) == (0, "Rolled back 0001_events.sql\n"), done.stderr
    assert not store.table_exists("events")
    nothing = run_cli("migrate_down")
    assert (nothing.returncode, nothing.stdout) == (0, "Nothing to roll back\n")
