"""A run's counters: the one type for what a run moved (``context.counters``, ``Pipeline.run``'s result)."""

from __future__ import annotations

from typing import Any, overload


class _Count:
    """A named counter read and written as an attribute (``counts.rows_loaded += n``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, counts: None, owner: type) -> _Count: ...

    @overload
    def __get__(self, counts: RunCounts, owner: type) -> int: ...

    def __get__(self, counts: RunCounts | None, owner: type) -> Any:
        return self if counts is None else counts.get(self.name, 0)

    def __set__(self, counts: RunCounts, value: int) -> None:
        counts[self.name] = value


class RunCounts(dict[str, int]):
    """Counters by name, 0 until counted. The pipeline keeps the standard ones (attributes below);
    components add their own with ``context.count(name)`` (``files_read``, ``http_requests``, and
    ``rows_quarantined``, which the run record keeps)."""

    batches = _Count()
    rows_extracted = _Count()
    rows_transformed = _Count()
    rows_loaded = _Count()
    rows_quarantined = _Count()

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        self[name] = self.get(name, 0) + n
