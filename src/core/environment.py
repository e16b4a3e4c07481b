"""Variables set in this process's environment for one block only.

The embedded engine runs in this process, and some of its client libraries take a setting from the
environment alone, read when they connect (libpq's ``PGTZ``): such a variable is set around the
statements that need it and restored after, not left for every later connection of the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_ENVIRONMENT = threading.Lock()


@contextmanager
def scoped_environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, the earlier values (or their absence) restored
    after; blocks of different threads take turns (the embedded engine runs one statement at a time)."""
    if not values:
        yield
        return
    with _ENVIRONMENT:
        before = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
