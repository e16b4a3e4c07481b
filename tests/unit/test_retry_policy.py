"""One retry policy (issue 26 §3): exponential backoff with +-20% jitter, capped, as a tenacity
wait object, used by run retries (runner) and HTTP request retries (the HTTP extractor)."""

from __future__ import annotations

import pytest
from tenacity import RetryCallState, Retrying

from core.retry import JITTER, Backoff
from pipelines.tools.extractors.http.transport import Transport


def state(attempt: int, exc: BaseException | None = None) -> RetryCallState:
    call = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    call.attempt_number = attempt
    if exc is not None:
        call.set_exception((type(exc), exc, None))
    return call


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (1, 8.0, 12.0), (2, 16.0, 24.0), (5, 128.0, 192.0),
    (6, 256.0, 300.0),    # 320 +-20% crosses the cap: jitter never goes past it
    (12, 300.0, 300.0),   # far past the cap: exactly the cap
])
def test_backoff_doubles_with_jitter_within_the_cap(attempt: int, low: float, high: float) -> None:
    wait = Backoff(10.0, 300.0)
    delays = [wait(state(attempt)) for _ in range(400)]
    assert low <= min(delays) and max(delays) <= high
    if low < high:  # jittered: spread over the range, not one value
        assert max(delays) - min(delays) > (high - low) / 2


def test_backoff_of_zero_is_no_wait_and_jitter_is_the_documented_spread() -> None:
    assert JITTER == 0.2
    assert {Backoff(0.0, 300.0)(state(n)) for n in (1, 2, 3)} == {0.0}


def test_the_http_transport_uses_the_policy_and_still_honours_retry_after() -> None:
    from pipelines.tools.extractors.http.transport import _Retryable

    transport = Transport("api", "GET", retries=5, backoff=1.0, max_backoff=60.0, rate_limit=None, timeout=5.0,
                          mask=None)  # type: ignore[arg-type]
    first = [transport._wait(state(1, _Retryable("HTTP 503"))) for _ in range(200)]
    assert min(first) >= 0.8 and max(first) <= 1.2
    third = [transport._wait(state(3, _Retryable("HTTP 503"))) for _ in range(200)]
    assert min(third) >= 3.2 and max(third) <= 4.8
    assert transport._wait(state(1, _Retryable("HTTP 429", 429, retry_after=7.0))) == 7.0
    assert transport._wait(state(1, _Retryable("HTTP 429", 429, retry_after=600.0))) == 60.0  # capped


def test_the_runner_uses_the_policy() -> None:
    from runner import runner

    assert runner.MAX_RETRY_DELAY == 300.0
    assert not hasattr(runner, "retry_delay")  # defined once, in core.retry
