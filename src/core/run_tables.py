"""Run-private tables in the store: named ``_dp_stage_<base>_<run id>``, dropped when their run died.

A run may keep rows out of sight until it commits in tables only it uses (the ClickHouse
loader's staging table, the run's staged quarantine rows, a user loader's own). Named with
:func:`run_table_name`, they are the framework's to clean: the crashed-run reaper and ``kill``
drop those of a dead run, ``clean`` those of every run that is not running.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.store import Store

#: Every table the framework owns in the store starts with this (``_dp_runs``, ``_dp_coverage``,
#: ``_dp_state``, run-private tables...); discovery refuses it as a pipeline's target table.
FRAMEWORK_PREFIX = "_dp_"
STAGING_PREFIX = f"{FRAMEWORK_PREFIX}stage_"


def is_framework_table(name: str) -> bool:
    """True for a name reserved for the framework's own tables (compared case-insensitively)."""
    return name.lower().startswith(FRAMEWORK_PREFIX)


def run_suffix(run_id: str) -> str:
    """``_<run id>`` made safe for a table name: every run-private table ends with it."""
    return "_" + re.sub(r"[^A-Za-z0-9_]", "_", run_id)


def run_table_name(base: str, run_id: str) -> str:
    """The name of a run-private table: ``_dp_stage_<base>_<run id>``."""
    return f"{STAGING_PREFIX}{base}{run_suffix(run_id)}"


def run_tables(store: Store, run_id: str | None = None) -> list[str]:
    """Run-private tables in the store's database (of one run, or of every run)."""
    return store.adapter.tables(STAGING_PREFIX, run_suffix(run_id) if run_id else "")
