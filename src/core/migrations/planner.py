"""What ``migrate_status`` shows and what ``migrate`` / ``migrate_down`` would run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.exceptions import MigrationError
from core.logging import get_logger
from core.migrations.files import MigrationFile, display_path
from core.migrations.tracking import Record
from core.sql_text import RenderedStatement

log = get_logger("migrations")


@dataclass
class MigrationStatus:
    """One line of ``migrate_status``."""

    version: int
    name: str
    file: str
    state: str  # applied, pending, failed, running, interrupted, modified, missing
    statements_total: int = 0
    statements_applied: int = 0
    applied_at: datetime | None = None
    duration_seconds: float | None = None
    error: str = ""
    checksum: str = ""  # of the file on disk
    recorded_checksum: str = ""  # when it was applied
    migration: MigrationFile | None = field(default=None, repr=False)
    record: Record | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The status as shown: ``failed at statement 3 of 5`` etc."""
        at = f"statement {self.statements_applied + 1} of {self.statements_total}"
        if self.state == "failed":
            changed = " (file changed since)" if self.checksum and self.checksum != self.recorded_checksum else ""
            return f"failed at {at}{changed}"
        if self.state == "running":
            return f"running ({at})"
        if self.state == "interrupted":
            return f"interrupted at {at}"
        return self.state

    @property
    def problem(self) -> bool:
        """True for states that make the database "not up to date"."""
        return self.state in ("pending", "failed", "running", "interrupted", "modified")

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "file": self.file, "status": self.state,
            "label": self.label, "statements_total": self.statements_total,
            "statements_applied": self.statements_applied,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "duration_seconds": self.duration_seconds, "error": self.error or None,
            "checksum": self.checksum or None, "recorded_checksum": self.recorded_checksum or None,
        }


@dataclass
class PlannedMigration:
    """A migration ``migrate`` would run, from statement ``start`` (0-based)."""

    migration: MigrationFile
    statements: list[RenderedStatement]
    start: int
    record: Record | None

    @property
    def remaining(self) -> list[RenderedStatement]:
        return self.statements[self.start:]


@dataclass
class AppliedMigration:
    file: str
    statements_run: int
    statements_total: int
    resumed_at: int  # 1-based statement the run started at
    duration_seconds: float


@dataclass
class MigrateResult:
    applied: list[AppliedMigration] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # modified files whose new checksum was recorded
    planned: list[PlannedMigration] = field(default_factory=list)  # dry-run
    rolled_back: list[str] = field(default_factory=list)



def migration_statuses(files: dict[int, MigrationFile], records: dict[int, Record],
                       lock_live: bool) -> list[MigrationStatus]:
    """Every migration on disk (``files``) or tracked (``records``), by version; ``lock_live``: the
    migration lock is held, so a ``running`` record is really running."""
    result = []
    for version in sorted(set(files) | set(records)):
        m, r = files.get(version), records.get(version)
        if r is None:
            assert m is not None
            result.append(MigrationStatus(version, m.name, m.file, "pending", checksum=m.checksum, migration=m))
            continue
        if m is None:
            state = "missing"
        elif r.status == "applied":
            state = "modified" if m.checksum != r.checksum else "applied"
        elif r.status == "running":
            state = "running" if lock_live else "interrupted"
        else:
            state = "failed"
        result.append(MigrationStatus(
            version, r.name, r.file, state, r.statements_total, r.statements_applied, r.applied_at,
            r.duration_seconds, r.error, m.checksum if m else "", r.checksum, m, r,
        ))
    return result


def plan_up(statuses: list[MigrationStatus], values: dict[str, str], directory: Path, target: int | None = None,
            allow_modified: bool = False) -> list[PlannedMigration]:
    """What ``migrate`` would run, validating (rendering with ``values``) every file before anything runs."""
    if target is not None and target not in {s.version for s in statuses}:
        raise MigrationError(f"no migration has version {target} (see ./run.sh migrate_status)")
    modified = [s for s in statuses if s.state == "modified"]
    if modified and not allow_modified:
        s = modified[0]
        raise MigrationError(
            f"{s.migration.source if s.migration else s.file} was changed after it was applied "
            f"(checksum when applied {s.recorded_checksum}, now {s.checksum}); restore it and put the change "
            "in a new migration, or run ./run.sh migrate --allow-modified to accept the edited file"
            + (f" ({len(modified) - 1} more modified)" if len(modified) > 1 else "")
        )
    for s in statuses:
        if s.state == "missing":
            log.warning("Migration %s was applied but its file is gone from %s",
                        s.file, display_path(directory))
    planned = []
    newest_applied = max((s.version for s in statuses if s.state in ("applied", "modified")), default=0)
    for s in statuses:
        if s.migration is None or s.state not in ("pending", "failed", "interrupted", "running"):
            continue
        if target is not None and s.version > target:
            continue
        statements = s.migration.statements(values)
        start = s.statements_applied if s.state != "pending" else 0
        if start and s.checksum != s.recorded_checksum:
            log.warning(
                "%s changed since it stopped at statement %d of %d: statements 1-%d are taken as applied "
                "and it resumes at statement %d of the edited file",
                s.migration.source, start + 1, s.statements_total, start, start + 1,
            )
        if start >= len(statements):
            raise MigrationError(
                f"{s.migration.source} has {len(statements)} statements now, but statements 1-{start} were "
                f"already applied before it failed; restore the applied statements at the start of the file"
            )
        if s.state == "pending" and s.version < newest_applied:
            log.warning("%s is older than the newest applied migration (%d); applying it now",
                        s.migration.source, newest_applied)
        planned.append(PlannedMigration(s.migration, statements, start, s.record))
    return planned


def plan_down(statuses: list[MigrationStatus], values: dict[str, str], directory: Path,
              target: int | None) -> list[PlannedMigration]:
    """What ``migrate_down`` would roll back, newest first; refuses when a down file is missing."""
    done = [s for s in statuses if s.record is not None]
    if target is None:
        chosen = done[-1:]
    else:
        if target != 0 and target not in {s.version for s in statuses}:
            raise MigrationError(f"no migration has version {target} (see ./run.sh migrate_status)")
        chosen = [s for s in done if s.version > target]
    chosen.reverse()
    for s in chosen:
        if s.migration is None:
            raise MigrationError(
                f"cannot roll back {s.file}: its file is missing from {display_path(directory)}")
        if s.migration.down_path is None:
            expected = s.migration.path.with_name(s.migration.path.name[:-4] + ".down.sql")
            raise MigrationError(
                f"cannot roll back {s.file}: down file {display_path(expected)} does not exist; "
                "nothing was rolled back"
            )
    return [PlannedMigration(s.migration, s.migration.down_statements(values), 0, s.record)
            for s in chosen if s.migration is not None]


def summarize(statuses: list[MigrationStatus]) -> tuple[str, str]:
    """``(status, detail)`` for the health check: ok, warn (pending, missing) or fail."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    bad = [s for s in statuses if s.state in ("failed", "interrupted", "modified")]
    if bad:
        return "fail", "; ".join(f"{s.file} {s.label}" for s in bad) + " -- see ./run.sh migrate_status"
    if counts.get("pending") or counts.get("running"):
        pending = counts.get("pending", 0)
        return "warn", f"{pending} pending migration{'s' if pending != 1 else ''}: run ./run.sh migrate"
    if counts.get("missing"):
        files = ", ".join(s.file for s in statuses if s.state == "missing")
        return "warn", f"applied but missing from MIGRATIONS_DIR: {files}"
    applied = counts.get("applied", 0)
    if not applied:
        return "ok", "no migrations"
    return "ok", f"up to date ({applied} applied)"
