"""What a process learnt about the store's catalogue, kept while nothing else can change it.

A backfill runs hundreds of intervals of one pipeline; each asked ClickHouse again whether the
framework tables exist, what the target's engine, partition key and columns are, and whether runs
died. On the embedded engine those answers cannot change behind the process's back while it holds
the engine open: another process must first take the store, which closes this process's engine.
So :class:`CatalogueMemo` keeps them from the engine's opening to its closing (``Store`` calls
:meth:`CatalogueMemo.reset`), and forgets everything at any statement of this process that may
change a table's structure (:meth:`CatalogueMemo.note`: DDL other than a run's own staging tables
and partition swaps), a migration's included. With a server (other hosts may change the catalogue
at any time) or a store taken in turns (the status page) it remembers nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from core.run_tables import STAGING_PREFIX

T = TypeVar("T")

_LEAD = r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"  # blanks and comments before the statement
_FLAGS = re.IGNORECASE | re.DOTALL
_DDL = re.compile(_LEAD + r"(ALTER|CREATE|DROP|RENAME|EXCHANGE|ATTACH|DETACH|TRUNCATE|UNDROP|REPLACE)\b", _FLAGS)
# DDL that changes no structure the memo holds: a run's staging tables, partitions swapped or dropped
# (an ALTER with nothing else in it).
_HARMLESS = re.compile(
    _LEAD + r"(?:(?:CREATE|DROP|TRUNCATE)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?:`[^`]*`\.)?`" + STAGING_PREFIX
    + r"|ALTER\s+TABLE\s+\S+\s+(?:REPLACE|DROP|ATTACH)\s+PARTITION\s(?!.*\b(?:ADD|MODIFY|COLUMN|RENAME|REMOVE|"
    r"CLEAR|COMMENT|MATERIALIZE|TTL|ORDER|INDEX|PROJECTION|CONSTRAINT|SETTING|RESET)\b))", _FLAGS)

class CatalogueMemo:
    """Answers about the store's catalogue by key, while :attr:`active` (see the module doc)."""

    def __init__(self) -> None:
        self.active = False
        self._facts: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered answer for ``key``, else ``compute()`` (remembered while active). Answers about
        a run's staging tables are never kept: :meth:`note` lets their DDL pass (``key`` names them)."""
        if not self.active or STAGING_PREFIX in str(key):
            return compute()
        if key not in self._facts:
            self._facts[key] = compute()
        return self._facts[key]  # type: ignore[no-any-return]

    def first(self, key: Hashable) -> bool:
        """True unless ``key`` was marked since the memo was last reset (always True when inactive)."""
        if not self.active:
            return True
        if key in self._facts:
            return False
        self._facts[key] = True
        return True

    def forget(self, key: Hashable) -> None:
        """Forget the answer for ``key`` (this process just changed what it says)."""
        self._facts.pop(key, None)

    def note(self, sql: str) -> None:
        """Forget everything when ``sql`` may change a table's structure (any DDL but harmless ones)."""
        if self._facts and _DDL.match(sql) and not _HARMLESS.match(sql):
            self._facts.clear()

    def reset(self, active: bool) -> None:
        """Forget everything; remember from now on only when ``active`` (the engine was just opened here)."""
        self._facts.clear()
        self.active = active
