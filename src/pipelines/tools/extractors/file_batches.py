"""The files of a run: a local pattern's matches, and a batch's union of each interval's files, in interval order.

A path with ``{start_date}`` (or another time placeholder) names each interval's files; a batch
(several contiguous intervals as one run, the registry's ``batch_size``) reads every one of its
intervals' files, so the push-down reads them with one ``file('{a,b,c}')`` (or one bucket read)
and the Python path one after the other. An interval without a file is refused exactly as its run
alone would be (``no file matches ...``), unless ``allow_empty``.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import PROJECT_ROOT
from pipelines.interfaces import RunContext

_GLOB_CHARS = re.compile(r"[*?\[]")


def local_matches(pattern: str) -> tuple[Path, list[Path]]:
    """A rendered local path (relative: to the project) and the files it matches, sorted (a glob
    recursively, a plain path when it is a file)."""
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = PROJECT_ROOT / full
    if _GLOB_CHARS.search(pattern):
        return full, sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
    return full, [full] if full.is_file() else []


def batch_files(files_of: Callable[[RunContext], list[Any]], context: RunContext) -> list[Any]:
    """Each of the batch's intervals' files (``files_of`` one interval's context), each file once."""
    found: dict[str, Any] = {}
    for interval in context.intervals:
        for file in files_of(replace(context, start=interval.start, end=interval.end, intervals=[])):
            found.setdefault(str(file), file)
    return list(found.values())
