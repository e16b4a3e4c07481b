"""The migrator: everything ``migrate``, ``migrate_status`` and ``migrate_down`` do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.exceptions import DataProcessorError, MigrationError, MigrationLocked
from core.framework_layout import create_tables, framework_layout
from core.locks import FileLock
from core.logging import get_logger
from core.migrations.files import display_path, load_migrations
from core.migrations.lock import LOCK_NAME, LOCK_TTL_SECONDS, ClickHouseLock
from core.migrations.placeholders import settings_placeholders
from core.migrations.planner import (
    AppliedMigration,
    MigrateResult,
    MigrationStatus,
    PlannedMigration,
    migration_statuses,
    plan_down,
    plan_up,
)
from core.migrations.tables import LOCKS_TABLE, MIGRATIONS_TABLE, framework_ddl
from core.migrations.tracking import Tracker
from core.shared_locks import cross_host_lock
from core.store import Store

if TYPE_CHECKING:
    from core.config import Settings
    from core.keeper_lock import KeeperLock

log = get_logger("migrations")

DEFAULT_LOCK_TIMEOUT = 600.0


class Migrator:
    """Everything ``migrate``, ``migrate_status`` and ``migrate_down`` do.

    ``directory`` defaults to ``MIGRATIONS_DIR``. Writes go through ``store`` only.
    """

    def __init__(self, settings: Settings, store: Store, directory: Path | None = None) -> None:
        self.settings = settings
        self.store = store
        self.directory = directory or settings.migrations_dir
        self.tracker = Tracker(store)
        self.values = settings_placeholders(settings)

    # ---- reading -----------------------------------------------------------------------

    def status(self) -> list[MigrationStatus]:
        """Every migration on disk or in the tracking table, by version."""
        files = {m.version: m for m in load_migrations(self.directory)}
        with self.store.session():
            records = self.tracker.read()
            # "running" rows are only running while somebody holds the lock; else they were interrupted.
            lock_live = (any(r.status == "running" for r in records.values())
                         and bool(cross_host_lock(self.store, LOCK_NAME, LOCK_TTL_SECONDS).live()))
            return migration_statuses(files, records, lock_live)

    def plan(self, statuses: list[MigrationStatus], target: int | None = None,
             allow_modified: bool = False) -> list[PlannedMigration]:
        """What ``migrate`` would run, validating every file before anything runs."""
        return plan_up(statuses, self.values, self.directory, target, allow_modified)


    # ---- writing -----------------------------------------------------------------------

    @contextmanager
    def locked(self, timeout: float = DEFAULT_LOCK_TIMEOUT, force_unlock: bool = False,
               on_wait: Callable[[str], None] | None = None) -> Iterator[ClickHouseLock | KeeperLock]:
        """Hold the local file lock and the ClickHouse lock row (creating the tracking tables)."""
        file_lock = FileLock(self.settings.data_dir / "migrate.lock")
        started = time.monotonic()

        def waiting(holder: str) -> None:
            (on_wait or (lambda h: log.warning("Waiting for another migrate: %s", h)))(holder)

        if not file_lock.acquire(timeout, note="migrate", on_wait=waiting):
            raise MigrationLocked(
                f"another migrate on this machine ({file_lock.holder()}) still runs after {timeout:.0f} s; "
                "wait for it or stop it"
            )
        # One store session for the whole run: the embedded store is then opened once, not per
        # statement (other processes wait for it; they would wait for the migration lock anyway).
        stack = ExitStack()
        ch_lock: ClickHouseLock | KeeperLock | None = None
        try:
            stack.enter_context(self.store.session())
            if not self.store.database_exists():
                raise MigrationError(
                    f"database '{self.store.database}' does not exist in {self.store.description}: "
                    "run ./run.sh setup_db first"
                )
            layout = framework_layout(self.settings)
            misfit = layout.misfit(self.store.adapter.create_statements([MIGRATIONS_TABLE, LOCKS_TABLE]),
                                   self.store.database)
            if misfit is not None:  # a plain tracking table would be this node's history only
                raise MigrationError(str(misfit))
            create_tables(self.store, framework_ddl(self.store, layout.cluster))
            # (On an embedded store the file lock already decides: its claim row waits for no other host.)
            ch_lock = cross_host_lock(self.store, LOCK_NAME, LOCK_TTL_SECONDS)
            if force_unlock:
                ch_lock.force_unlock()
            ch_lock.acquire(max(timeout - (time.monotonic() - started), 0),
                            on_wait=lambda h: waiting(f"lock row held by {h}"))
            yield ch_lock
        finally:
            try:
                if ch_lock is not None:
                    ch_lock.release()
            except DataProcessorError as exc:
                log.warning("Could not release the migration lock row (it expires by itself): %s", exc)
            finally:
                stack.close()
                file_lock.release()

    def migrate(self, target: int | None = None, dry_run: bool = False, allow_modified: bool = False,
                force_unlock: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                on_wait: Callable[[str], None] | None = None) -> MigrateResult:
        """Apply pending migrations in order (up to ``target``); ``dry_run`` only plans.

        Raises :class:`MigrationError` when a statement fails, after recording how far it got.
        """
        result = MigrateResult()
        if dry_run:
            # No locks, no tracking table: a dry run writes nothing at all.
            result.planned = self.plan(self.status(), target, allow_modified)
            return result
        with self.locked(lock_timeout, force_unlock, on_wait) as lock:
            # Read the state only under the lock: whoever held it before may have applied everything.
            statuses = self.status()
            plan = self.plan(statuses, target, allow_modified)
            if allow_modified:
                for s in statuses:
                    if s.state == "modified" and s.migration and s.record:
                        self.tracker.write(s.migration, s.record, total=s.statements_total,
                                           applied=s.statements_applied, status="applied",
                                           duration=s.duration_seconds or 0.0, applied_at=s.applied_at,
                                           error=f"checksum accepted by --allow-modified; was {s.recorded_checksum}")
                        log.warning("Accepted the edited %s (checksum %s, was %s); its statements were not re-run",
                                    s.migration.source, s.checksum, s.recorded_checksum)
                        result.accepted.append(s.file)
            for item in plan:
                result.applied.append(self._apply(item, lock))
        return result

    def _apply(self, item: PlannedMigration, lock: ClickHouseLock | KeeperLock) -> AppliedMigration:
        m, statements, total = item.migration, item.statements, len(item.statements)
        started = time.monotonic()
        if item.start:
            log.info("Resuming %s at statement %d of %d", m.source, item.start + 1, total)
        else:
            log.info("Applying %s (%d statement%s)", m.source, total, "" if total == 1 else "s")
        record = self.tracker.write(m, item.record, total=total, applied=item.start, status="running", duration=0)
        for index in range(item.start, total):
            statement = statements[index]
            try:
                self.store.command(statement.sql)
            except Exception as exc:
                message = str(exc) if isinstance(exc, DataProcessorError) else f"{type(exc).__name__}: {exc}"
                self.tracker.write(m, record, total=total, applied=index, status="failed",
                                   duration=time.monotonic() - started, error=message)
                done = f"statements 1-{index} are applied and recorded; " if index else ""
                raise MigrationError(
                    f"{m.source} failed at statement {index + 1} of {total} (line {statement.line}): {message}; "
                    f"{done}fix the file and run ./run.sh migrate again to resume at statement {index + 1}"
                ) from exc
            last = index + 1 == total
            record = self.tracker.write(m, record, total=total, applied=index + 1,
                                        status="applied" if last else "running",
                                        duration=time.monotonic() - started)
            lock.refresh()
        duration = time.monotonic() - started
        log.info("Applied %s in %.2f s", m.source, duration)
        return AppliedMigration(m.file, total - item.start, total, item.start + 1, duration)

    def down(self, target: int | None = None, dry_run: bool = False, force_unlock: bool = False,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
             on_wait: Callable[[str], None] | None = None) -> MigrateResult:
        """Roll back, newest first, every migration above ``target`` (default: only the newest).

        Refuses before running anything when one of them has no down file. Partially applied
        (failed) migrations are rolled back too: down files should use ``IF EXISTS``.
        """
        result = MigrateResult()
        if dry_run:
            result.planned = plan_down(self.status(), self.values, self.directory, target)
            return result
        with self.locked(lock_timeout, force_unlock, on_wait) as lock:
            for item in plan_down(self.status(), self.values, self.directory, target):
                m = item.migration
                started = time.monotonic()
                log.info("Rolling back %s (%d statement%s)", m.down_path.name if m.down_path else m.file,
                         len(item.statements), "" if len(item.statements) == 1 else "s")
                for index, statement in enumerate(item.statements):
                    try:
                        self.store.command(statement.sql)
                    except Exception as exc:
                        message = str(exc) if isinstance(exc, DataProcessorError) else f"{type(exc).__name__}: {exc}"
                        source = display_path(m.down_path) if m.down_path else m.file
                        raise MigrationError(
                            f"{source} failed at statement {index + 1} of {len(item.statements)} "
                            f"(line {statement.line}): {message}; {m.file} is still recorded as applied"
                        ) from exc
                    lock.refresh()
                self.tracker.remove(m.version)
                log.info("Rolled back %s in %.2f s", m.file, time.monotonic() - started)
                result.rolled_back.append(m.file)
        return result
