"""Incremental state: small JSON values per pipeline (e.g. the highest ``updated_at`` seen).

Values set during a run are staged and written only after the loader committed (the runner calls
:meth:`RunState.commit`), so a failed run reads the same data again next time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core.store import Store
from record.tables import STATE_TABLE


class RunState:
    """State of one pipeline as seen by one run."""

    def __init__(self, store: Store, pipeline: str) -> None:
        self.store = store
        self.pipeline = pipeline
        self._committed: dict[str, Any] | None = None
        self._pending: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        if self._committed is None:
            self._committed = read_state(self.store, self.pipeline)
        return self._committed

    def get(self, key: str, default: Any = None) -> Any:
        """The value set by this run, else the last committed value, else ``default``."""
        if key in self._pending:
            return self._pending[key]
        return self._load().get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Stage a JSON-serialisable value; it is saved only if the run succeeds."""
        json.dumps(value, default=str)  # fail now, not at commit, on a value that cannot be saved
        self._pending[key] = value

    @property
    def pending(self) -> dict[str, Any]:
        return dict(self._pending)

    def commit(self, run_id: str) -> None:
        """Save the staged values (called by the runner after the loader committed)."""
        if not self._pending:
            return
        now = datetime.now(UTC)
        rows = [[self.pipeline, key, json.dumps(value, default=str), 0, now, run_id]
                for key, value in self._pending.items()]
        self.store.insert_rows(STATE_TABLE, rows, ["pipeline", "key", "value", "deleted", "updated_at", "run_id"])
        self._load().update(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()


def read_state(store: Store, pipeline: str) -> dict[str, Any]:
    """The committed state of a pipeline: ``{key: value}``."""
    rows = store.query_rows(
        f"SELECT key, argMax(value, updated_at), argMax(deleted, updated_at) FROM {store.table(STATE_TABLE)} "
        "WHERE pipeline = {p:String} GROUP BY key ORDER BY key",
        {"p": pipeline},
    )
    return {key: json.loads(value) for key, value, deleted in rows if not deleted}


def read_state_rows(store: Store, pipeline: str) -> list[dict[str, Any]]:
    """Committed state with when and by which run each value was written (for ``state``)."""
    rows = store.query_dicts(
        "SELECT key, argMax(value, updated_at) AS value, argMax(run_id, updated_at) AS run_id, "
        "argMax(deleted, updated_at) AS deleted, max(updated_at) AS updated "
        f"FROM {store.table(STATE_TABLE)} WHERE pipeline = {{p:String}} GROUP BY key ORDER BY key",
        {"p": pipeline},
    )
    return [r for r in rows if not r.pop("deleted")]


def reset_state(store: Store, pipeline: str) -> int:
    """Forget every value of a pipeline (written as tombstones); returns how many keys were set."""
    keys = list(read_state(store, pipeline))
    if keys:
        now = datetime.now(UTC)
        store.insert_rows(STATE_TABLE, [[pipeline, key, "null", 1, now, "reset"] for key in keys],
                          ["pipeline", "key", "value", "deleted", "updated_at", "run_id"])
    return len(keys)
