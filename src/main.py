"""Entry point of ``./run.sh``: builds the command group and runs it."""

from __future__ import annotations

import sys

from cli import db  # noqa: F401  (registers its commands)
from cli import migrate  # noqa: F401  (registers migrate, migrate_status, migrate_down)
from cli.app import run

if __name__ == "__main__":
    sys.exit(run())
