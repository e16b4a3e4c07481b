"""The files of a batch: the union of each interval's files, in interval order.

A path with ``{start_date}`` (or another time placeholder) names each interval's files; a batch
(several contiguous intervals as one run, the registry's ``batch_size``) reads every one of its
intervals' files, so the push-down reads them with one ``file('{a,b,c}')`` (or one bucket read)
and the Python path one after the other. An interval without a file is refused exactly as its run
alone would be (``no file matches ...``), unless ``allow_empty``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipelines.interfaces import RunContext


def batch_files(files_of: Callable[[RunContext], list[Any]], context: RunContext) -> list[Any]:
    """Each of the batch's intervals' files (``files_of`` one interval's context), each file once."""
    found: dict[str, Any] = {}
    for interval in context.intervals:
        for file in files_of(replace(context, start=interval.start, end=interval.end, intervals=[])):
            found.setdefault(str(file), file)
    return list(found.values())
