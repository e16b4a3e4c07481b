"""Sending one HTTP request: rate limit, retries with backoff (``Retry-After`` honoured), and
errors that name the request with its secrets masked."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from core.exceptions import ExtractError, TransientError
from core.redaction import Redactor
from core.retry import Backoff
from pipelines.interfaces import RunContext


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Masker:
    """A run's secrets masked in text, URLs (plus their query) and quoted response bodies."""

    def __init__(self, redactor: Redactor | None = None, secret_params: set[str] | None = None) -> None:
        self.redactor = redactor or Redactor()
        self.secret_params = secret_params or set()

    def text(self, text: str) -> str:
        return self.redactor(text)

    def url(self, url: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL with its query (plus ``params``), secret values masked, no userinfo password."""
        return self.redactor.url(url, params, self.secret_params)

    def snippet(self, response: httpx.Response) -> str:
        """The body's first 200 characters, masked."""
        try:
            text = response.content[:4000].decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001 (a body we cannot read is shown as empty)
            text = ""
        return self.text(text)[:200]


class _Stopped(Exception):  # noqa: N818
    """The consumer went away (the run ended or was killed) during a retry backoff."""


def _backoff_sleep(stop: threading.Event | None) -> Callable[[float], None]:
    """A backoff sleep that ends at once when ``stop`` is set (SIGTERM/SIGINT on the run)."""

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)  # the main thread: a signal interrupts it by itself
        elif stop.wait(seconds):
            raise _Stopped()

    return sleep


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None,
                 body: str = "") -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after, self.body = reason, status, retry_after, body


def _dns_failure(exc: BaseException) -> str | None:
    """The resolver's message when ``exc`` comes from a host name lookup (socket.gaierror)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class Transport:
    """How one run of an extractor sends its requests (see :meth:`send`)."""

    name: str
    method: str
    retries: int
    backoff: float
    max_backoff: float
    rate_limit: float | None
    timeout: float
    mask: Masker
    _last_request: float = 0.0

    def send(self, client: httpx.Client, context: RunContext, url: str, params: Mapping[str, Any],
             headers: Mapping[str, str], body: Any, stop: threading.Event | None = None) -> httpx.Response:
        """One request, retried on timeouts, connection errors, 429 and 5xx (then ``TransientError``);
        other non-2xx answers and unresolvable hosts fail at once (``ExtractError``)."""
        safe = self.mask.url(url, params)
        # httpx replaces a URL's query with ``params``: merge them so both are sent.
        parts = urlsplit(url)
        target = urlunsplit(parts._replace(query=""))
        # A parameter we set (e.g. the API key) replaces the same name echoed in a next-page URL.
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
        query += [(k, str(v)) for k, v in params.items()]

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0
            context.logger.warning("%s: %s %s: %s; retry %d/%d in %.1fs", self.name, self.method, safe,
                                   getattr(exc, "reason", exc), state.attempt_number, self.retries, wait)

        def attempt() -> httpx.Response:
            self._throttle()
            return self._attempt(client, target, query, headers, body, safe, parts.hostname)

        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(_Retryable), before_sleep=before_sleep, reraise=True,
                            sleep=_backoff_sleep(stop))
        try:
            response = retrying(attempt)
        except _Retryable as exc:
            detail = f"; body: {exc.body!r}" if exc.body else ""
            raise TransientError(f"{self.name}: {self.method} {safe} failed after {self.retries + 1} attempt(s): "
                                 f"{exc.reason}{detail}") from None
        context.count("http_requests", 1)
        if response.status_code >= 400 or response.status_code < 200:
            raise ExtractError(f"{self.name}: {self.method} {safe} returned HTTP {response.status_code}; "
                               f"body: {self.mask.snippet(response)!r}")
        return response

    def _attempt(self, client: httpx.Client, target: str, query: list[tuple[str, str]],
                 headers: Mapping[str, str], body: Any, safe: str, host: str | None) -> httpx.Response:
        try:
            response = client.request(self.method, target, params=query or None, headers=dict(headers),
                                      json=body if body is not None else None)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {self.timeout:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            dns = _dns_failure(exc)
            if dns:  # a name that does not resolve will not resolve on retry: fail at once
                raise ExtractError(f"{self.name}: {self.method} {safe}: the host name '{host}' "
                                   f"does not resolve ({dns}); check the URL, or this machine's DNS "
                                   "and network") from None
            raise _Retryable(f"connection failed ({type(exc).__name__}: {self.mask.text(str(exc))})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", status, parse_retry_after(response.headers.get("retry-after")),
                             self.mask.snippet(response))
        return response

    def _throttle(self) -> None:
        if not self.rate_limit:
            return
        gap = 1.0 / self.rate_limit - (time.monotonic() - self._last_request)
        if gap > 0:
            time.sleep(gap)
        self._last_request = time.monotonic()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff)
        return Backoff(self.backoff, self.max_backoff)(state)
