"""Versioned SQL migrations for ClickHouse: parsing, tracking, locking, applying, rolling back.

Files live in ``MIGRATIONS_DIR`` (default ``migrations/sql``) and are named
``NNNN_description.sql``; an optional ``NNNN_description.down.sql`` undoes one. A file holds one or
more statements separated by ``;`` (semicolons inside quotes, comments and heredocs do not count).

Placeholders, substituted outside string literals and comments:

- ``{database}``: the configured database (``CLICKHOUSE_DATABASE``);
- ``{cluster}``: `` ON CLUSTER <name>`` when ``CLICKHOUSE_CLUSTER`` is set, else nothing;
- ``{{name}}``: a literal ``{name}``.

Any other ``{word}`` is an error naming the file and line. ClickHouse's query parameters
(``{name:Type}``) are left alone, and nothing inside a string literal is touched, so the macros of
Replicated engine paths (``'/clickhouse/tables/{shard}/{database}/{table}'``) reach ClickHouse as
written.

ClickHouse has no transactional DDL, so progress is recorded after every statement in
``_dp_migrations`` (a ReplacingMergeTree: every change is a new row version, read with
``argMax``). A migration that fails at statement 3 of 5 is resumed at statement 3 by the next
``migrate``. Two ``migrate`` processes are serialized by a local file lock (``DATA_DIR/migrate.lock``)
plus a lock row in ``_dp_locks`` that covers other hosts using the same server.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.exceptions import DataProcessorError, MigrationError, MigrationLocked
from core.locks import FileLock
from core.logging import get_logger
from core.store import Store

if TYPE_CHECKING:
    from core.config import Settings

log = get_logger("migrations")

MIGRATIONS_TABLE = "_dp_migrations"
LOCKS_TABLE = "_dp_locks"
LOCK_NAME = "migrate"
# A lock row older than this (since its last refresh, done after every statement) is taken to
# belong to a dead process on another host.
LOCK_TTL_SECONDS = 3600
# After writing its claim a process waits this long before checking who won, so that a claim
# written at the same moment by another host is visible to both.
LOCK_SETTLE_SECONDS = 0.25
DEFAULT_LOCK_TIMEOUT = 600.0

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(?P<down>\.down)?\.sql$")
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
PLACEHOLDER_PATTERN = _PLACEHOLDER  # also read by SQL pipelines (pipelines.tools.extractors.sql_source)
KNOWN_PLACEHOLDERS = ("database", "cluster")


# ---- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A piece of a statement: ``code``, ``string`` ('...' or a heredoc), ``ident`` ("..." or
    `...`) or ``comment``; ``line`` is the line it starts on."""

    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class Statement:
    """One statement of a file, as written (placeholders not substituted yet)."""

    segments: tuple[Segment, ...]

    @property
    def line(self) -> int:
        """Line of the statement's first token."""
        for seg in self.segments:
            if seg.kind != "comment" and seg.text.strip():
                lead = seg.text[: len(seg.text) - len(seg.text.lstrip())]
                return seg.line + lead.count("\n")
        return self.segments[0].line if self.segments else 1

    @property
    def raw(self) -> str:
        """The statement without comments and without substitution."""
        return _join(self.segments, lambda seg: seg.text)


@dataclass(frozen=True)
class RenderedStatement:
    """A statement ready to run: substituted SQL and the line it starts on."""

    sql: str
    line: int


def _join(segments: tuple[Segment, ...], text_of: Callable[[Segment], str]) -> str:
    parts = []
    for seg in segments:
        if seg.kind == "comment":
            # Keep the tokens around a comment apart, and keep the line structure.
            # (a line comment ends before its newline, which stays in the code)
            line_comment = not seg.text.startswith("/*")
            parts.append("" if line_comment else "\n" * seg.text.count("\n") or " ")
        else:
            parts.append(text_of(seg))
    return "".join(parts).strip()


def split_statements(sql: str, source: str = "<sql>") -> list[Statement]:
    """Split SQL text into statements at ``;``, honouring quotes, comments and heredocs.

    Handles '...' strings (with ``\\'`` and ``''`` escapes), "..." and `...` identifiers,
    ``-- ``, ``#`` and (nested) ``/* */`` comments and ``$tag$...$tag$`` heredocs. Raises
    :class:`MigrationError` naming ``source`` and the line of an unterminated quote or comment.
    Statements that hold only comments are dropped.
    """
    statements: list[Statement] = []
    current: list[Segment] = []
    n = len(sql)
    i = 0
    line = 1
    code_start, code_line = 0, 1

    def flush_code(end: int) -> None:
        if end > code_start:
            current.append(Segment("code", sql[code_start:end], code_line))

    def end_statement() -> None:
        if any(seg.kind != "comment" and seg.text.strip() for seg in current):
            statements.append(Statement(tuple(current)))
        current.clear()

    while i < n:
        c = sql[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in "'\"`":
            flush_code(i)
            j = i + 1
            while j < n:
                ch = sql[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote: an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                what = "string" if c == "'" else f"quoted identifier ({c})"
                raise MigrationError(f"{source} line {line}: unterminated {what} starting here")
            text = sql[i:j + 1]
            current.append(Segment("string" if c == "'" else "ident", text, line))
            line += text.count("\n")
            i = code_start = j + 1
            code_line = line
            continue
        if (c == "-" and sql.startswith("--", i)) or (c == "#" and (i + 1 == n or sql[i + 1] in "! \t\r\n")):
            flush_code(i)
            j = sql.find("\n", i)
            j = n if j < 0 else j
            current.append(Segment("comment", sql[i:j], line))
            i = code_start = j
            code_line = line
            continue
        if c == "/" and sql.startswith("/*", i):
            flush_code(i)
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise MigrationError(f"{source} line {line}: unterminated /* comment starting here")
            text = sql[i:j]
            current.append(Segment("comment", text, line))
            line += text.count("\n")
            i = code_start = j
            code_line = line
            continue
        if c == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            match = _HEREDOC.match(sql, i)
            if match:
                flush_code(i)
                close = sql.find(match.group(0), match.end())
                if close < 0:
                    raise MigrationError(f"{source} line {line}: unterminated heredoc {match.group(0)} starting here")
                text = sql[i:close + len(match.group(0))]
                current.append(Segment("string", text, line))
                line += text.count("\n")
                i = code_start = i + len(text)
                code_line = line
                continue
        if c == ";":
            flush_code(i)
            end_statement()
            i = code_start = i + 1
            code_line = line
            continue
        i += 1
    flush_code(n)
    end_statement()
    return statements


def cluster_clause(cluster: str | None) -> str:
    """What ``{cluster}`` renders to: `` ON CLUSTER <name>`` or nothing."""
    return f" ON CLUSTER {cluster}" if cluster else ""


def placeholder_values(database: str, cluster: str | None) -> dict[str, str]:
    """The placeholder table for a database and an optional cluster."""
    return {"database": database, "cluster": cluster_clause(cluster)}


def settings_placeholders(settings: Settings) -> dict[str, str]:
    return placeholder_values(settings.database, settings.clickhouse_cluster)


def render_statement(statement: Statement, values: dict[str, str], source: str = "<sql>") -> RenderedStatement:
    """Substitute placeholders in code and quoted identifiers (never in strings or comments)."""

    def substitute(seg: Segment) -> str:
        if seg.kind == "string":
            return seg.text

        def replace(match: re.Match[str]) -> str:
            if match.group(1) is not None:  # {{name}}: a literal {name}
                return "{" + match.group(1) + "}"
            name = match.group(2)
            if name not in values:
                at = seg.line + seg.text[: match.start()].count("\n")
                known = ", ".join("{" + k + "}" for k in values)
                raise MigrationError(
                    f"{source} line {at}: unknown placeholder {{{name}}} (known: {known}; "
                    f"write {{{{{name}}}}} for a literal {{{name}}})"
                )
            return values[name]

        return _PLACEHOLDER.sub(replace, seg.text)

    return RenderedStatement(_join(statement.segments, substitute), statement.line)


def render_sql(sql: str, values: dict[str, str], source: str = "<sql>") -> list[RenderedStatement]:
    """Split and substitute a whole file's text."""
    return [render_statement(s, values, source) for s in split_statements(sql, source)]


# ---- files -----------------------------------------------------------------------------------


def display_path(path: Path) -> str:
    """The path relative to the project when it is inside it (shorter in messages)."""
    from core.config import PROJECT_ROOT

    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class MigrationFile:
    """A migration on disk: ``NNNN_description.sql`` and maybe its ``.down.sql``."""

    version: int
    name: str
    path: Path
    down_path: Path | None
    checksum: str

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def source(self) -> str:
        return display_path(self.path)

    def statements(self, values: dict[str, str]) -> list[RenderedStatement]:
        """The rendered statements; an empty file is an error."""
        rendered = render_sql(self.path.read_text(encoding="utf-8"), values, self.source)
        if not rendered:
            raise MigrationError(f"{self.source} contains no SQL statement")
        return rendered

    def down_statements(self, values: dict[str, str]) -> list[RenderedStatement]:
        if self.down_path is None:
            raise MigrationError(f"{self.source} has no down file {self.path.name[:-4]}.down.sql")
        source = display_path(self.down_path)
        rendered = render_sql(self.down_path.read_text(encoding="utf-8"), values, source)
        if not rendered:
            raise MigrationError(f"{source} contains no SQL statement")
        return rendered


def file_checksum(path: Path) -> str:
    """SHA-256 of the file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_migrations(directory: Path) -> list[MigrationFile]:
    """The migrations in ``directory`` ordered by version.

    A ``.sql`` file not named ``NNNN_description.sql``, two files with the same version, or a
    down file without its migration are errors (each would otherwise be silently ignored).
    """
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise MigrationError(f"MIGRATIONS_DIR {directory} is not a directory")
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{display_path(path)}: migration files must be named NNNN_description.sql "
                "(or NNNN_description.down.sql), e.g. 0002_add_orders_table.sql"
            )
        version = int(match.group("version"))
        target = downs if match.group("down") else ups
        if version in target:
            raise MigrationError(
                f"two migration files have version {version}: {target[version].name} and {path.name}"
            )
        target[version] = path
    migrations = []
    for version, path in sorted(ups.items()):
        down = downs.pop(version, None)
        if down is not None and down.name[: -len(".down.sql")] != path.name[: -len(".sql")]:
            raise MigrationError(f"down file {down.name} does not match its migration {path.name}")
        name = _FILE_NAME.match(path.name).group("name")  # type: ignore[union-attr]
        migrations.append(MigrationFile(version, name, path, down, file_checksum(path)))
    if downs:
        orphan = next(iter(downs.values()))
        up_name = orphan.name.replace(".down", "")
        raise MigrationError(f"down file {orphan.name} in {display_path(directory)} has no migration {up_name}")
    return migrations


# ---- tracking --------------------------------------------------------------------------------


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


def framework_ddl(store: Store, cluster: str | None) -> list[str]:
    """DDL of the tracking and lock tables.

    On a cluster both are created ``ON CLUSTER`` as Replicated tables sharing ONE replication
    path for the whole cluster (not one per shard), so every node sees the same history and locks.
    ``{database}`` and ``{replica}`` there are ClickHouse's own macros.
    """
    on_cluster = cluster_clause(cluster)

    def engine(table: str, version_column: str) -> str:
        if not cluster:
            return f"ReplacingMergeTree({version_column})"
        path = f"/clickhouse/data_processor/{{database}}/{table}"
        return f"ReplicatedReplacingMergeTree('{path}', '{{replica}}', {version_column})"

    return [
        f"""CREATE TABLE IF NOT EXISTS {store.table(MIGRATIONS_TABLE)}{on_cluster} (
            version UInt64,
            name String,
            file String,
            checksum String,
            statements_total UInt32,
            statements_applied UInt32,
            status LowCardinality(String),
            applied_at DateTime64(3, 'UTC'),
            duration_seconds Float64,
            error String,
            host String,
            row_version UInt64
        ) ENGINE = {engine(MIGRATIONS_TABLE, 'row_version')}
        ORDER BY version""",
        f"""CREATE TABLE IF NOT EXISTS {store.table(LOCKS_TABLE)}{on_cluster} (
            name String,
            token String,
            owner String,
            acquired_at DateTime64(3, 'UTC'),
            expires_at DateTime64(3, 'UTC'),
            released UInt8,
            version UInt64
        ) ENGINE = {engine(LOCKS_TABLE, 'version')}
        ORDER BY (name, token)
        TTL toDateTime(expires_at) + INTERVAL 30 DAY""",
    ]


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _next_version(previous: int = 0) -> int:
    # Wall-clock nanoseconds, but always above the row it supersedes, even if this host's clock
    # is behind the host that wrote that row.
    return max(time.time_ns(), previous + 1)


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
            status=status, applied_at=applied_at or _utcnow(), duration_seconds=round(duration, 3), error=error[:2000],
            host=_owner(), row_version=_next_version(previous.row_version if previous else 0),
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


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ---- locking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockRow:
    token: str
    owner: str
    acquired_at: datetime
    expires_at: datetime
    version: int

    def describe(self) -> str:
        return f"{self.owner} (since {_fmt_time(self.acquired_at)} UTC, expires {_fmt_time(self.expires_at)} UTC)"


def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


class ClickHouseLock:
    """A named lock as rows in ``_dp_locks``: covers processes on other hosts using the same server.

    Each contender inserts a claim (owner, server-side acquired_at and expires_at); the earliest
    live claim wins. After claiming, a contender waits :data:`LOCK_SETTLE_SECONDS` and re-reads,
    so two claims written at the same moment are both seen and both sides agree on the winner.
    Claims expire unless refreshed; a claim by a dead process on this host is broken at once.
    """

    def __init__(self, store: Store, name: str = LOCK_NAME, ttl: float = LOCK_TTL_SECONDS,
                 settle: float = LOCK_SETTLE_SECONDS) -> None:
        self.store = store
        self.name = name
        self.ttl = int(ttl)
        self.settle = settle
        self.token = uuid.uuid4().hex
        self.owner = _owner()
        self._version = 0
        self.held = False

    def live(self) -> list[LockRow]:
        """Unreleased, unexpired claims, winner first."""
        if not self.store.table_exists(LOCKS_TABLE):
            return []
        rows = self.store.query_rows(
            "SELECT token, argMax(owner, version) AS o, argMax(acquired_at, version) AS a, "
            "argMax(expires_at, version) AS e, argMax(released, version) AS r, max(version) AS v "
            f"FROM {self.store.table(LOCKS_TABLE)} WHERE name = {{n:String}} GROUP BY token "
            "HAVING r = 0 AND e > now64(3, 'UTC') ORDER BY a, token",
            {"n": self.name},
        )
        return [LockRow(token, owner, acq, exp, int(v)) for token, owner, acq, exp, _, v in rows]

    def _insert(self, token: str, owner: str, version: int, released: int) -> None:
        # Times come from the server: hosts' clocks may disagree, the server's is the one reference.
        self.store.command(
            f"INSERT INTO {self.store.table(LOCKS_TABLE)} "
            "(name, token, owner, acquired_at, expires_at, released, version) "
            "SELECT {n:String}, {t:String}, {o:String}, now64(3, 'UTC'), "
            "now64(3, 'UTC') + toIntervalSecond({ttl:UInt32}), {r:UInt8}, {v:UInt64}",
            {"n": self.name, "t": token, "o": owner, "ttl": self.ttl, "r": released, "v": version},
        )

    def _stale_here(self, row: LockRow) -> bool:
        """A claim by a process of this host that no longer exists."""
        import psutil

        host, _, pid = row.owner.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))

    def break_claim(self, row: LockRow) -> None:
        self._insert(row.token, row.owner, _next_version(row.version), released=1)

    def try_acquire(self) -> LockRow | None:
        """Take the lock if nobody else holds it; returns the holder's claim when busy."""
        for row in self.live():
            if row.token != self.token and self._stale_here(row):
                log.warning("Breaking the migration lock of %s: that process no longer exists", row.describe())
                self.break_claim(row)
        others = [r for r in self.live() if r.token != self.token]
        if others:
            return others[0]
        self._version = _next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=0)
        time.sleep(self.settle)
        claims = self.live()
        if claims and claims[0].token == self.token:
            self.held = True
            return None
        # Lost a race with a claim written at the same moment: withdraw ours.
        self._version = _next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=1)
        winner = next((r for r in claims if r.token != self.token), None)
        return winner or LockRow("", "another process", _utcnow(), _utcnow(), 0)

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None, poll: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        next_report = 0.0
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            now = time.monotonic()
            if now >= deadline:
                raise MigrationLocked(
                    f"migrations are locked by {holder.describe()} (lock row in {self.store.database}.{LOCKS_TABLE}); "
                    "if that process is gone, run ./run.sh migrate --force-unlock"
                )
            if on_wait and now >= next_report:
                on_wait(holder.describe())
                next_report = now + 10
            time.sleep(min(poll, max(deadline - now, 0.05)))

    def refresh(self) -> None:
        """Push the expiry forward (called after every statement)."""
        if not self.held:
            return
        self._version = _next_version(self._version)
        self.store.command(
            f"INSERT INTO {self.store.table(LOCKS_TABLE)} "
            "(name, token, owner, acquired_at, expires_at, released, version) "
            "SELECT name, token, owner, acquired_at, now64(3, 'UTC') + toIntervalSecond({ttl:UInt32}), 0, {v:UInt64} "
            f"FROM {self.store.table(LOCKS_TABLE)} WHERE name = {{n:String}} AND token = {{t:String}} "
            "ORDER BY version DESC LIMIT 1",
            {"n": self.name, "t": self.token, "ttl": self.ttl, "v": self._version},
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._version = _next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=1)

    def force_unlock(self) -> list[LockRow]:
        """Release every live claim (for a lock left behind by a dead process on another host)."""
        broken = [r for r in self.live() if r.token != self.token]
        for row in broken:
            log.warning("Force-unlocking the migration lock held by %s", row.describe())
            self.break_claim(row)
        return broken


# ---- status ----------------------------------------------------------------------------------


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
            return self._status(files)

    def _status(self, files: dict[int, MigrationFile]) -> list[MigrationStatus]:
        records = self.tracker.read()
        # "running" rows are only running while somebody holds the lock; else they were interrupted.
        lock_live = any(r.status == "running" for r in records.values()) and bool(ClickHouseLock(self.store).live())
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

    def plan(self, statuses: list[MigrationStatus], target: int | None = None,
             allow_modified: bool = False) -> list[PlannedMigration]:
        """What ``migrate`` would run, validating every file before anything runs."""
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
                            s.file, display_path(self.directory))
        planned = []
        newest_applied = max((s.version for s in statuses if s.state in ("applied", "modified")), default=0)
        for s in statuses:
            if s.migration is None or s.state not in ("pending", "failed", "interrupted", "running"):
                continue
            if target is not None and s.version > target:
                continue
            statements = s.migration.statements(self.values)
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

    # ---- writing -----------------------------------------------------------------------

    @contextmanager
    def locked(self, timeout: float = DEFAULT_LOCK_TIMEOUT, force_unlock: bool = False,
               on_wait: Callable[[str], None] | None = None) -> Iterator[ClickHouseLock]:
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
        # An embedded store is reachable from this host only, where the file lock already decides:
        # no need to wait for claims from other hosts to become visible.
        ch_lock = ClickHouseLock(self.store, settle=0 if self.settings.is_embedded else LOCK_SETTLE_SECONDS)
        # One store session for the whole run: the embedded store is then opened once, not per
        # statement (other processes wait for it; they would wait for the migration lock anyway).
        stack = ExitStack()
        try:
            stack.enter_context(self.store.session())
            if not self.store.database_exists():
                raise MigrationError(
                    f"database '{self.store.database}' does not exist in {self.store.description}: "
                    "run ./run.sh setup_db first"
                )
            for ddl in framework_ddl(self.store, self.settings.clickhouse_cluster):
                self.store.command(ddl)
            if force_unlock:
                ch_lock.force_unlock()
            ch_lock.acquire(max(timeout - (time.monotonic() - started), 0),
                            on_wait=lambda h: waiting(f"lock row held by {h}"))
            yield ch_lock
        finally:
            try:
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

    def _apply(self, item: PlannedMigration, lock: ClickHouseLock) -> AppliedMigration:
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
            result.planned = self._down_plan(self.status(), target)
            return result
        with self.locked(lock_timeout, force_unlock, on_wait) as lock:
            for item in self._down_plan(self.status(), target):
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

    def _down_plan(self, statuses: list[MigrationStatus], target: int | None) -> list[PlannedMigration]:
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
                    f"cannot roll back {s.file}: its file is missing from {display_path(self.directory)}")
            if s.migration.down_path is None:
                expected = s.migration.path.with_name(s.migration.path.name[:-4] + ".down.sql")
                raise MigrationError(
                    f"cannot roll back {s.file}: down file {display_path(expected)} does not exist; "
                    "nothing was rolled back"
                )
        return [PlannedMigration(s.migration, s.migration.down_statements(self.values), 0, s.record)
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
