"""Alert events: what happened, to which pipeline, and how it reads in a message."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["run_failed", "run_crashed", "check_failed", "check_warned", "recovered", "stale", "fresh",
               "backfill_failed", "reminder", "test"]

_TITLES = {
    "run_failed": "Run failed", "run_crashed": "Run crashed", "check_failed": "Data check failed",
    "check_warned": "Data check warning", "recovered": "Recovered", "stale": "Data is stale",
    "fresh": "Data is fresh again", "backfill_failed": "Backfill finished with failures",
    "reminder": "Still failing", "test": "Test alert",
}


@dataclass
class AlertEvent:
    """One alert. ``key`` groups events about one condition (for de-duplication)."""

    kind: Kind
    pipeline: str
    summary: str
    key: str = ""
    run_id: str = ""
    interval: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def title(self) -> str:
        return f"[data-processor] {_TITLES[self.kind]}: {self.pipeline}"

    def text(self) -> str:
        """The message body as plain text."""
        lines = [self.title, self.summary]
        for label, value in (("interval", self.interval), ("run", self.run_id), ("host", self.host),
                             ("at", self.at)):
            if value:
                lines.append(f"{label}: {value}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, **asdict(self)}
