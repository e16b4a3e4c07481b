"""Wrong passwords on the status page, throttled per client address.

The first ``FREE_FAILURES`` wrong passwords of an address within ``WINDOW`` seconds are answered
401 as usual. From then on each wrong password blocks the address for twice as long as the last
one (1, 2, 4 ... up to ``MAX_BLOCK`` seconds): while blocked, every request of that address (the
right password included) is answered 429 with ``Retry-After``, without looking at the password.
A right password outside a block forgives the address's failures.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

FREE_FAILURES = 5
WINDOW = 600.0
MAX_BLOCK = 60.0
# Addresses remembered at most (the oldest forgotten first): a flood of addresses costs bounded memory.
MAX_ADDRESSES = 10_000


@dataclass
class _Failures:
    count: int
    last: float
    blocked_until: float = 0.0


class AuthThrottle:
    """Failed-auth bookkeeping per address (thread-safe)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._by_address: dict[str, _Failures] = {}

    def blocked_for(self, address: str) -> int:
        """Whole seconds ``address`` must still wait (0: it may try)."""
        with self._mutex:
            entry = self._by_address.get(address)
            left = entry.blocked_until - time.monotonic() if entry else 0.0
        return math.ceil(left) if left > 0 else 0

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._mutex:
            entry = self._by_address.pop(address, None)
            if entry is None or now - entry.last > WINDOW:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            if entry.count >= FREE_FAILURES:
                entry.blocked_until = now + min(2.0 ** (entry.count - FREE_FAILURES), MAX_BLOCK)
            self._by_address[address] = entry  # re-inserted: the dict's order is the age order
            while len(self._by_address) > MAX_ADDRESSES:
                del self._by_address[next(iter(self._by_address))]

    def succeeded(self, address: str) -> None:
        with self._mutex:
            self._by_address.pop(address, None)
