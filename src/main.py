"""Entry point of ``./run.sh``: builds the command group and runs it."""

from __future__ import annotations

import sys

from cli import backfill, coverage, db, migrate, ops, pipelines, quality, scaffold, server, sql, status, ui  # noqa: F401  (importing registers their commands)
from cli.app import run

if __name__ == "__main__":
    sys.exit(run())
