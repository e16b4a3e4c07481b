"""Migration manager (seed layout entry point). The logic lives in ``src/core/migrations.py``.

Usage, from anywhere (same as ``./run.sh migrate ...``)::

    python migrations/migration_manager.py status [--json]          # ./run.sh migrate_status
    python migrations/migration_manager.py up [--to N] [--dry-run]  # ./run.sh migrate
    python migrations/migration_manager.py down [--to N]            # ./run.sh migrate_down

Importable too: ``from migrations.migration_manager import Migrator, load_migrations``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[1] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from core.migrations import (  # noqa: E402
    MigrationFile,
    MigrationStatus,
    Migrator,
    load_migrations,
    render_sql,
    split_statements,
)

__all__ = ["MigrationFile", "MigrationStatus", "Migrator", "load_migrations", "render_sql", "split_statements",
           "main"]

COMMANDS = {"up": "migrate", "migrate": "migrate", "status": "migrate_status", "down": "migrate_down"}


def main(argv: list[str] | None = None) -> int:
    """Run ``up``, ``status`` or ``down`` through the CLI (same options, output and exit codes)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: {Path(__file__).name} {{up|status|down}} [OPTIONS]  (see ./run.sh migrate --help)",
              file=sys.stderr)
        return 2
    from cli import migrate  # noqa: F401  (registers the commands)
    from cli.app import run

    return run([COMMANDS[args[0]], *args[1:]])


if __name__ == "__main__":
    sys.exit(main())
