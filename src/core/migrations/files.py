"""Migration files on disk: ``NNNN_description.sql`` and their ``.down.sql``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.exceptions import MigrationError
from core.migrations.placeholders import render_sql
from core.sql_text import RenderedStatement

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(?P<down>\.down)?\.sql$")


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

