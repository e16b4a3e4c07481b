"""What the built-in transformers share: cast errors, row numbers across batches, column checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from core.exceptions import TransformError
from pipelines.interfaces import Batch, RunContext, Transformer, batch_rows

CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError)


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RowCounting(Transformer):
    """Counts rows seen in the run so errors can give a row number across batches."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._run: str | None = None
        self._offset = 0

    def _start(self, context: RunContext, batch: Batch) -> int:
        """Row number of this batch's first row within the run (resets for a new run)."""
        if self._run != context.run_id:
            self._run, self._offset = context.run_id, 0
            self._new_run()
        first = self._offset
        self._offset += batch_rows(batch)
        return first

    def _new_run(self) -> None:  # noqa: B027 (optional hook)
        pass


def check_columns(name: str, table: pa.Table, wanted: Iterable[str]) -> None:
    """Fail naming the columns of ``wanted`` the batch lacks, and those it has."""
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise TransformError(f"{name}: unknown column {', '.join(map(repr, missing))}; the batch has "
                             f"{', '.join(table.column_names) or 'no columns'}")
