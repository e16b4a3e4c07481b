"""The tracking table ``_dp_migrations``: one row version per change of a migration's progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.migrations.files import MigrationFile
from core.migrations.tables import MIGRATIONS_TABLE, next_version, owner, utcnow
from core.store import Store


@dataclass
class Record:
    """The newest tracking row of one version."""

    version: int
    name: str
    file: str
    checksum: str
    statements_total: int
    statements_applied: int
    status: str  # applied, failed or running
    applied_at: datetime | None
    duration_seconds: float
    error: str
    host: str
    row_version: int



class Tracker:
    """Reads and writes ``_dp_migrations``."""

    COLUMNS = ("version", "name", "file", "checksum", "statements_total", "statements_applied", "status",
               "applied_at", "duration_seconds", "error", "host", "row_version")

    _TYPES = {"version": "UInt64", "name": "String", "file": "String", "checksum": "String",
              "statements_total": "UInt32", "statements_applied": "UInt32", "status": "String",
              "duration_seconds": "Float64", "error": "String", "host": "String", "row_version": "UInt64"}

    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self) -> bool:
        return self.store.database_exists() and self.store.table_exists(MIGRATIONS_TABLE)

    def read(self) -> dict[int, Record]:
        """Newest row per version; empty when the database or the table does not exist yet."""
        if not self.exists():
            return {}
        # Aliases differ from the column names: ClickHouse would substitute an alias named like a
        # column into the other aggregates' arguments.
        fields = [c for c in self.COLUMNS if c not in ("version", "row_version")]
        columns = ", ".join(f"argMax({c}, row_version) AS _{c}" for c in fields)
        rows = self.store.query_rows(
            f"SELECT version, {columns}, max(row_version) AS _row_version "
            f"FROM {self.store.table(MIGRATIONS_TABLE)} GROUP BY version ORDER BY version"
        )
        records = {}
        for row in rows:
            record = Record(**dict(zip(["version", *fields, "row_version"], row, strict=True)))
            record.version = int(record.version)
            if record.applied_at is not None and record.applied_at.tzinfo is None:
                record.applied_at = record.applied_at.replace(tzinfo=UTC)
            records[record.version] = record
        return records

    def write(self, migration: MigrationFile, previous: Record | None, *, total: int, applied: int, status: str,
              duration: float, error: str = "", applied_at: datetime | None = None) -> Record:
        """Insert a new row version for ``migration`` (superseding ``previous``)."""
        record = Record(
            version=migration.version, name=migration.name, file=migration.file,
            checksum=migration.checksum, statements_total=total, statements_applied=applied,
            status=status, applied_at=applied_at or utcnow(), duration_seconds=round(duration, 3), error=error[:2000],
            host=owner(), row_version=next_version(previous.row_version if previous else 0),
        )
        # A server-side parameterised INSERT: clickhouse-connect's row insert imports pandas (~0.7 s
        # per process), which is most of a short migrate's run time.
        assert record.applied_at is not None
        params = {c: getattr(record, c) for c in self.COLUMNS if c != "applied_at"}
        params["applied_at"] = int(record.applied_at.timestamp() * 1000)
        values = ", ".join(
            "fromUnixTimestamp64Milli({applied_at:Int64}, 'UTC')" if c == "applied_at" else f"{{{c}:{self._TYPES[c]}}}"
            for c in self.COLUMNS
        )
        self.store.command(
            f"INSERT INTO {self.store.table(MIGRATIONS_TABLE)} ({', '.join(self.COLUMNS)}) SELECT {values}", params
        )
        return record

    def remove(self, version: int) -> None:
        """Forget a version (after it was rolled back)."""
        self.store.command(
            f"DELETE FROM {self.store.table(MIGRATIONS_TABLE)} WHERE version = {{v:UInt64}}", {"v": version}
        )

