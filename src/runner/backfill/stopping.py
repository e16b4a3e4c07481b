"""Stopping a backfill between runs (SIGINT from Ctrl-C, SIGTERM from ``kill``)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Literal


class StopRequest:
    """SIGINT/SIGTERM between runs: finish cleanly instead of dying mid-report.

    During a run the runner's own handlers apply (the run is recorded as failed: interrupted or
    killed); here the first signal only asks the loop to stop, a second Ctrl-C aborts at once.
    """

    def __init__(self) -> None:
        self.reason: Literal["", "interrupted", "killed"] = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.reason:
            raise KeyboardInterrupt
        self.reason = "interrupted" if signum == signal.SIGINT else "killed"

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
