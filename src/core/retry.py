"""The one retry policy: exponential backoff with jitter, capped, as a tenacity wait object.

Both retry loops use it: a run's retries of transient errors (``runner``: ``retry_delay`` of the
registry entry, capped at 5 minutes) and an HTTP request's retries (the HTTP extractor's
``backoff``/``max_backoff``, where a server's ``Retry-After`` comes first). Which errors retry, and
how often, stays with each loop.
"""

from __future__ import annotations

import random

from tenacity import RetryCallState
from tenacity.wait import wait_base

# Each delay is the exponential one times a random factor in [1 - JITTER, 1 + JITTER], so retries of
# many runs or requests that failed together do not all come back at the same moment.
JITTER = 0.2


class Backoff(wait_base):
    """Wait ``base * 2 ** (n - 1)`` seconds before retry ``n`` (1 for the first), +-``jitter``
    (a fraction), never more than ``cap``: ``Backoff(10, 300)`` waits 8-12 s, then 16-24 s, ...,
    at most 300 s. A tenacity wait: pass it as ``Retrying(wait=...)`` or call it with the state."""

    def __init__(self, base: float, cap: float, jitter: float = JITTER) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter

    def __call__(self, retry_state: RetryCallState) -> float:
        exponential = self.base * 2.0 ** min(retry_state.attempt_number - 1, 64)
        return min(self.cap, exponential * random.uniform(1 - self.jitter, 1 + self.jitter))
