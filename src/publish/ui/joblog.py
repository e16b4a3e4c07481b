"""The lines one run wrote to its job log (``LOG_DIR/jobs/<pipeline>.log`` and its rotated files).

A job log holds every run of its pipeline; a run's records carry its run id (``[job run_id]`` in
text logs, ``"run_id"`` in JSON logs). A text record's continuation lines (a traceback) have no
tag and belong to the record above them. Rotation drops the oldest file, so a run can be older
than everything kept: the page then says so instead of showing nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.config import Settings

TAIL_LINES = 200
# Lines of a text log start with "YYYY-MM-DD HH:MM:SS"; JSON lines with "{".
_RECORD_START = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) |^\{")


@dataclass
class LogTail:
    """The last lines of one run in its job log, and what to say when there are none."""

    path: Path
    lines: list[str] = field(default_factory=list)
    truncated: int = 0  # earlier lines of the run not shown
    note: str = ""


def _files(settings: Settings, pipeline: str) -> list[Path]:
    """The job log and its rotated copies, oldest first (``.log.5`` ... ``.log``)."""
    base = settings.log_dir / "jobs" / f"{pipeline}.log"
    rotated = [base.with_name(f"{base.name}.{n}") for n in range(settings.log_backup_count, 0, -1)]
    return [p for p in [*rotated, base] if p.is_file()]


def _is_run_record(line: str, run_id: str, tag: str) -> bool | None:
    """True/False for a record's first line of this run or another; None for a continuation line."""
    if not _RECORD_START.match(line):
        return None
    if line.startswith("{"):
        try:
            return json.loads(line).get("run_id") == run_id
        except ValueError:
            return False
    return tag in line


def _first_moment(path: Path) -> datetime | None:
    """When the oldest record of a log file was written (local time, as text logs write it)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _RECORD_START.match(line)
            if match and match.group(1):
                return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            if line.startswith("{"):
                try:
                    moment = datetime.fromisoformat(json.loads(line)["timestamp"]).astimezone()
                    return moment.replace(tzinfo=None, microsecond=0)
                except (ValueError, KeyError):
                    continue
    return None


def run_log(settings: Settings, pipeline: str, run_id: str, started_at: datetime,
            limit: int = TAIL_LINES) -> LogTail:
    """The last ``limit`` lines ``run_id`` wrote to the job log of ``pipeline``."""
    files = _files(settings, pipeline)
    base = settings.log_dir / "jobs" / f"{pipeline}.log"
    if not files:
        return LogTail(base, note=f"no job log at {base} (the run wrote none, or LOG_DIR differs)")
    tag = f"[{pipeline} {run_id}]"
    lines: list[str] = []
    for path in files:
        if run_id not in path.read_text(encoding="utf-8", errors="replace"):
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            ours = False
            for line in f:
                verdict = _is_run_record(line, run_id, tag)
                ours = ours if verdict is None else verdict
                if ours:
                    lines.append(line.rstrip("\n"))
    tail = LogTail(base, lines[-limit:], max(0, len(lines) - limit))
    oldest = _first_moment(files[0])
    moment = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    started = moment.astimezone().replace(tzinfo=None, microsecond=0)  # log lines have whole seconds
    rotated = oldest is not None and oldest > started  # the kept logs begin after the run began
    kept = f"oldest kept record: {oldest:%Y-%m-%d %H:%M:%S}" if oldest else "no records"
    if not lines:
        tail.note = (f"the log rotated past this run's lines ({kept} in {base} and its rotated copies)"
                     if rotated or (oldest is not None and oldest == started)
                     else f"no lines of this run in {base} ({kept})")
    elif rotated:
        tail.note = f"the first lines of this run may have rotated away ({kept})"
    elif tail.truncated:
        tail.note = f"the last {len(tail.lines)} of {len(lines)} lines"
    return tail
