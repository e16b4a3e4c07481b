"""The HTTP extractor: JSON records from an API, page by page (see :class:`HttpExtractor`).

Pages are fetched (and parsed) one ahead in a background thread, so the network and the parser
work while the loader writes. Pagination and auth are strategies (``paginators``, ``auth``);
sending with retries is ``transport``; a response becomes Arrow in ``parsing``.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pyarrow as pa

from core.exceptions import ConfigError, ExtractError
from core.logging import in_run_context
from core.redaction import Redactor, header_secrets, param_secrets
from pipelines.interfaces import Extractor, RunContext, declared
from pipelines.tools.extractors.http.auth import Auth, AuthParts, auth_from_config
from pipelines.tools.extractors.http.paginators import Page, PageRequest, Paginator, paginator_from_config
from pipelines.tools.extractors.http.parsing import RecordsParser
from pipelines.tools.extractors.http.placeholders import render, render_any, uses_interval
from pipelines.tools.extractors.http.transport import Masker, Transport
from pipelines.tools.extractors.json_records import ArrowJsonReader, Batcher
from pipelines.tools.factory import component_factory

_STOP = object()
T = TypeVar("T")

# httpx logs every request URL at INFO, query string included: an API key passed as a query
# parameter would end up in any log that captures the root logger. Our own messages mask it.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class _Run:
    """What stays the same for every request of one run."""

    headers: dict[str, str]
    auth_params: dict[str, str]
    transport: Transport
    first: PageRequest


class HttpExtractor(Extractor):
    """Reads JSON records from an HTTP API page by page.

    ``create_http_extractor`` takes the same parameters. Secrets (auth values, secret-looking
    query parameters) never appear in logs or errors.

    Args:
        url: the endpoint; may use ``{start}``, ``{end}``, ``{start_date}``, ``{end_date}`` (the run's
            interval; the extractor is then interval-aware and backfillable).
        headers: extra request headers.
        name: shown in logs and errors.
        params: query parameters (values may use the same placeholders).
        records_path: dotted path of the records list in the response (``None``: the body is the list).
        pagination: a :class:`~pipelines.tools.extractors.http.paginators.Paginator` (a built-in or
            your own subclass), or a built-in as a dict: ``{"type": "page", "param": "page",
            "start": 1, "size_param": None, "size": 100, "total_pages_path": None}``,
            ``{"type": "offset", "offset_param": "offset", "limit_param": "limit", "limit": 100,
            "total_path": None}``, ``{"type": "cursor", "cursor_path": "meta.next", "cursor_param":
            "cursor"}`` or ``{"type": "next_url", "next_path": "links.next"}`` (without
            ``next_path``: the ``Link: <...>; rel="next"`` header), or its name (``"page"``).
            Paging stops at an empty page, a short page, the total, or no next token.
        auth: an :class:`~pipelines.tools.extractors.http.auth.Auth` (a built-in or your own
            subclass), or a built-in as a dict: ``{"type": "bearer", "token_env": "API_TOKEN"}``,
            ``{"type": "basic", "username_env": ..., "password_env": ...}`` or ``{"type": "api_key",
            "name": "X-API-Key", "in": "header"|"query", "value_env": ...}``
            (``token``/``username``/``password``/``value`` give a value directly).
        max_pages: page cap (a warning is logged when it stops the extraction).
        rate_limit: at most this many requests per second.
        retries: retries on timeouts, connection errors, 429 and 5xx (then ``TransientError``).
        backoff, max_backoff: exponential backoff start and cap in seconds (jittered); a
            ``Retry-After`` header is honoured up to ``max_backoff``.
        flatten: nested objects become ``parent_child`` columns.
        explode: dotted path of a list field to turn into one row per element (other lists are
            kept as JSON strings).
        method, json_body: request method and JSON body (e.g. for POST search APIs).
        timeout: seconds per request (default: the ``TIMEOUT`` setting).
        prefetch: fetch the next page in a background thread while the current one is processed.
        interval_aware: declare whether the source reads only the run's interval (``True``: runs can
            be backfilled); default (``None``): inferred from the URL, params and body (``{start}``-like
            placeholders) and the paginator.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, name: str | None = None, *,
                 params: Mapping[str, Any] | None = None, records_path: str | None = None,
                 pagination: Paginator | Mapping[str, Any] | str | None = None,
                 auth: Auth | Mapping[str, Any] | None = None, max_pages: int | None = 10_000,
                 rate_limit: float | None = None, retries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 60.0, flatten: bool = True, explode: str | None = None,
                 method: str = "GET", json_body: Any = None, timeout: float | None = None,
                 prefetch: bool = True, interval_aware: bool | None = None) -> None:
        super().__init__(name or "http")
        owner = f"http extractor {self.name!r}"
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{owner}: url must be a non-empty string")
        if max_pages is not None and max_pages < 1:
            raise ConfigError(f"{owner}: max_pages must be at least 1, got {max_pages}")
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigError(f"{owner}: rate_limit must be > 0 requests/second")
        self.url = url
        self.headers = dict(headers or {})
        self.params = dict(params or {})
        self.records_path, self.flatten, self.explode = records_path, flatten, explode
        self.paginator = paginator_from_config(pagination, owner)
        self.auth = auth_from_config(auth, owner)
        self.max_pages, self.rate_limit = max_pages, rate_limit
        self.retries, self.backoff, self.max_backoff = max(0, int(retries)), backoff, max_backoff
        self.method, self.json_body = method.upper(), json_body
        self.timeout, self.prefetch = timeout, prefetch
        self.interval_aware = declared(
            interval_aware, uses_interval([url, self.params, json_body]) or self.paginator.interval_aware)
        self._mask = Masker()

    # ---- extraction ------------------------------------------------------------------------

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        batcher = Batcher(context.settings.batch_size)
        pages = self._pages_in_thread(context) if self.prefetch else self._pages(context)
        try:
            for table in pages:
                yield from batcher.add(table)
            yield from batcher.flush()
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    def _pages_in_thread(self, context: RunContext) -> Iterator[pa.Table]:
        """Fetch and parse the next page while the caller processes this one (bounded: 2 pages)."""
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for page in self._pages(context, stop):
                    if not put(page):
                        return
                put(_STOP)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)

        # The thread runs in the run's logging context: its lines reach the run's job log.
        thread = threading.Thread(target=in_run_context(produce), name=f"http-extract-{self.name}", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _STOP:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=max(5.0, self._timeout(context) + 1))

    def _timeout(self, context: RunContext) -> float:
        return float(self.timeout if self.timeout is not None else context.settings.timeout)

    def _pages(self, context: RunContext, stop: threading.Event | None = None) -> Iterator[pa.Table]:
        """Each page's records, following the paginator from the run's first request."""
        run = self._start(context)
        parser = RecordsParser(self.records_path, self.flatten, self.explode)
        reader = ArrowJsonReader()
        request: PageRequest | None = run.first
        seen = {self._fingerprint(run.first)}
        pages = total_records = 0
        with httpx.Client(timeout=run.transport.timeout, follow_redirects=True) as client:
            while request is not None:
                response = run.transport.send(client, context, request.url, {**request.params, **run.auth_params},
                                              run.headers, request.json_body, stop)
                pages += 1
                table, document = parser.parse(response, reader, self._where(response),
                                               lambda response=response: self._mask.snippet(response))
                total_records += table.num_rows
                context.logger.debug("%s: page %d of %s: %d records", self.name, pages,
                                     self._mask.url(request.url), table.num_rows)
                yield table
                page = Page(response, table.num_rows, document, self._mask.url)
                request = self._next_request(request, page, context, seen, pages)
        context.logger.info("%s: %d records in %d page(s) from %s", self.name, total_records, pages,
                            self._mask.url(run.first.url))

    def _start(self, context: RunContext) -> _Run:
        """The run's first request (placeholders rendered), headers, auth and masking."""
        values = context.template_values()
        parts = self._strategy(self.auth.parts, context) if self.auth else AuthParts()
        url = render(self.url, values)
        params = {k: render_any(v, values) for k, v in self.params.items()}
        headers = {"Accept": "application/json", **self.headers, **parts.headers}
        # Every value this run sends as a secret is masked wherever it appears (an error body
        # quoting the request back, the logs, the run's error in _dp_runs).
        secrets = set(parts.secrets) | header_secrets(headers) | param_secrets(url, {**params, **parts.params})
        self._mask = Masker(Redactor(secrets), set(parts.params))
        context.add_secrets(secrets)
        transport = Transport(self.name, self.method, self.retries, self.backoff, self.max_backoff,
                              self.rate_limit, self._timeout(context), self._mask)
        first = PageRequest(url, params, render_any(self.json_body, values))
        first = self._strategy(self.paginator.first, first, context)
        return _Run(headers, dict(parts.params), transport, first)

    def _next_request(self, request: PageRequest, page: Page, context: RunContext, seen: set[bytes],
                      pages: int) -> PageRequest | None:
        """The paginator's next request, unless ``max_pages`` is reached or it repeats a page."""
        following = self._strategy(self.paginator.next, request, page, context)
        if following is None:
            return None
        if self.max_pages is not None and pages >= self.max_pages:
            context.logger.warning("%s: stopped after max_pages=%d pages; the API has more", self.name, self.max_pages)
            context.count("http_pages_capped", 1)
            return None
        fingerprint = self._fingerprint(following)
        if fingerprint in seen:  # any paginator, also your own: an API loop must not run to max_pages
            raise ExtractError(f"{self.name}: {type(self.paginator).__name__} asked for the same page twice "
                               f"({self._mask.url(following.url, following.params)}); stopping a loop")
        seen.add(fingerprint)
        return following

    @staticmethod
    def _fingerprint(request: PageRequest) -> bytes:
        # A digest per page keeps the loop check small for long paginations.
        return hashlib.blake2b(request.key().encode(), digest_size=16).digest()

    def _strategy(self, call: Callable[..., T], *args: Any) -> T:
        """Call a paginator/auth method; its own ``ConfigError``/``ExtractError`` gets our name."""
        try:
            return call(*args)
        except (ConfigError, ExtractError) as exc:
            if type(exc) is ConfigError:
                raise ConfigError(f"http extractor {self.name!r}: {self._mask.text(str(exc))}") from None
            if type(exc) is ExtractError:
                raise ExtractError(f"{self.name}: {self._mask.text(str(exc))}") from None
            raise

    def _where(self, response: httpx.Response) -> Callable[[], str]:
        return lambda: f"{self.name}: {self.method} {self._mask.url(str(response.url))}"


create_http_extractor = component_factory(HttpExtractor, "create_http_extractor")
