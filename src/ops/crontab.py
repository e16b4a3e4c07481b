"""The user's crontab: the ``crontab`` command that reads and writes it, and the text of this
project's block in it (markers, entries, rendering). :mod:`ops.cron` decides what the block holds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.config import PROJECT_ROOT
from core.exceptions import CronError
from core.locks import FileLock

MARKER = "data-processor"
MAINTENANCE = "clean"            # the block's housekeeping entry (not a pipeline)
MAINTENANCE_SPEC = "17 4 * * *"  # daily, off the hour when most schedules fire
HEALTH = "check"                 # optional entry: ./run.sh check --alert on CHECK_CRON_SCHEDULE
HOUSEKEEPING = (MAINTENANCE, HEALTH)
# What the user chose, recorded in the block so that a re-sync keeps it: every scheduled pipeline
# (setup_cron --all; also a block written before the scope line existed) or the ones chosen.
SCOPE_ALL, SCOPE_CHOSEN = "all", "chosen"
_SCOPE_LINES = {
    SCOPE_ALL: "# Scope: all (setup_cron --all): every scheduled pipeline; cron fires add, update and remove entries.",
    SCOPE_CHOSEN: "# Scope: chosen (setup_cron NAME): only these pipelines; cron fires update or remove them, "
                  "never add others.",
}



def begin_marker(root: Path = PROJECT_ROOT) -> str:
    return f"# BEGIN {MARKER} {root}"


def end_marker(root: Path = PROJECT_ROOT) -> str:
    return f"# END {MARKER} {root}"


# ---- the crontab command ---------------------------------------------------------------------

def crontab_command() -> str | None:
    """Path of ``crontab``; ``CRONTAB_COMMAND`` may name another path to the real binary."""
    configured = os.environ.get("CRONTAB_COMMAND")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("crontab") or next((p for p in ("/usr/bin/crontab", "/bin/crontab") if os.access(p, os.X_OK)),
                                           None)


def _require_crontab() -> str:
    command = crontab_command()
    if command is None:
        raise CronError("the 'crontab' command is not installed (Debian/Ubuntu: apt-get install cron); "
                        "on hosts without cron run ./run.sh scheduler instead")
    return command


def read_crontab() -> str:
    """The user's crontab as text ('' when the user has none)."""
    command = _require_crontab()
    result = subprocess.run([command, "-l"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode == 0:
        return result.stdout
    message = (result.stderr or result.stdout).strip()
    if "no crontab for" in message:
        return ""
    raise CronError(f"crontab -l failed: {message or f'exit code {result.returncode}'}")


def write_crontab(text: str) -> None:
    """Replace the user's crontab with ``text`` (validated by ``crontab`` itself); '' removes it."""
    command = _require_crontab()
    if not text.strip():
        # Nothing left (the block was all there was): remove the table rather than install an
        # empty one, so the user is back to "no crontab".
        result = subprocess.run([command, "-r"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0 and "no crontab for" not in (result.stderr + result.stdout):
            raise CronError(f"crontab -r failed: {(result.stderr or result.stdout).strip()}")
        return
    if text and not text.endswith("\n"):
        text += "\n"  # cron ignores a last line without a newline
    result = subprocess.run([command, "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().replace("\n", " ")
        raise CronError(f"crontab refused the new table: {message or f'exit code {result.returncode}'}")


def crontab_lock() -> FileLock:
    """One lock per user for read-modify-write of the crontab (shared by every project)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return FileLock(base / f"data-processor-crontab-{os.getuid()}.lock")


# ---- the block ------------------------------------------------------------------------------

@dataclass
class Entry:
    """One pipeline's lines in the block: a comment naming it, then one or more cron lines."""

    name: str
    comment: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> list[str]:
        return [self.comment, *self.lines]


_COMMENT = re.compile(r"^# (pipeline|maintenance) (\S+?)(?::|$)")


def split_block(text: str, root: Path = PROJECT_ROOT) -> tuple[list[str], list[str] | None, list[str]]:
    """(lines before, the block's inner lines or None when absent, lines after)."""
    lines = text.splitlines()
    begin, end = begin_marker(root), end_marker(root)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == begin)
    except StopIteration:
        return lines, None, []
    stop = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == end), None)
    if stop is None:
        raise CronError(f"the crontab has '{begin}' without its '{end}' line; fix it with crontab -e")
    return lines[:start], lines[start + 1:stop], lines[stop + 1:]


def parse_entries(inner: list[str]) -> dict[str, Entry]:
    """The block's entries by pipeline name (the maintenance entry under ``MAINTENANCE``)."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    for line in inner:
        match = _COMMENT.match(line)
        if match:
            current = Entry(match.group(2), line)
            entries[current.name] = current
        elif current is not None and line.strip() and not line.startswith("#"):
            current.lines.append(line)
    return entries


def block_scope(inner: list[str] | None) -> str:
    """The scope recorded in the block's inner lines (``SCOPE_ALL`` when none is)."""
    for line in inner or []:
        for scope, text in _SCOPE_LINES.items():
            if line.strip() == text:
                return scope
    return SCOPE_ALL


def render_block(entries: dict[str, Entry], root: Path = PROJECT_ROOT, scope: str = SCOPE_ALL) -> list[str]:
    """The block's lines, pipelines sorted by name, housekeeping last; [] when nothing is scheduled."""
    pipelines = [entries[name] for name in sorted(entries) if name not in HOUSEKEEPING]
    if not pipelines:
        return []
    lines = [begin_marker(root),
             "# Managed by ./run.sh setup_cron / remove_cron: edits inside this block are overwritten.",
             _SCOPE_LINES[scope]]
    for entry in pipelines:
        lines.extend(entry.text())
    for name in (HEALTH, MAINTENANCE):
        if name in entries:
            lines.extend(entries[name].text())
    lines.append(end_marker(root))
    return lines


def replace_block(text: str, block: list[str], root: Path = PROJECT_ROOT) -> str:
    """``text`` with this project's block replaced by ``block`` (appended when absent)."""
    before, inner, after = split_block(text, root)
    if inner is None:
        while before and not before[-1].strip() and not block:
            before.pop()
        joined = before + ([""] if before and before[-1].strip() and block else []) + block
    else:
        joined = before + block + after
        if not block:  # drop the blank separator we added when the block was appended
            while joined and not joined[-1].strip():
                joined.pop()
    return "\n".join(joined) + ("\n" if joined else "")
