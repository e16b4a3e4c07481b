"""HTTP extractor: JSON APIs with pagination, auth, retries and rate limiting.

    create_http_extractor(
        "https://api.example.com/orders?since={start_date}",
        records_path="data.items",
        pagination={"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor"},
        auth={"type": "bearer", "token_env": "API_TOKEN"},
    )

Responses are parsed straight into Arrow (see ``json_records``); pages are fetched (and parsed)
one ahead in a background thread, so the network and the parser work while the loader writes.
Secrets (auth values, secret-looking query parameters) never appear in logs or errors.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import httpx
import pyarrow as pa
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from core.exceptions import ConfigError, ExtractError, TransientError
from core.logging import in_run_context
from core.redaction import Redactor, header_secrets, param_secrets
from pipelines.interfaces import Extractor, RunContext
from pipelines.tools.extractors.json_records import (
    ArrowJsonReader,
    Batcher,
    FastPathUnavailable,
    flatten_records,
    records_from_arrow,
    rows_to_table,
)

_PLACEHOLDER = re.compile(r"\{(start|end|start_date|end_date|run_id|pipeline)\}")
_INTERVAL_PLACEHOLDER = re.compile(r"\{(start|end|start_date|end_date)\}")
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.I)
_PAGINATION_TYPES = {"page", "offset", "cursor", "next_url"}
_STOP = object()

# httpx logs every request URL at INFO, query string included: an API key passed as a query
# parameter would end up in any log that captures the root logger. Our own messages mask it.
logging.getLogger("httpx").setLevel(logging.WARNING)


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace the run's placeholders only (other braces, e.g. in JSON, stay as they are)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _uses_interval(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_INTERVAL_PLACEHOLDER.search(value))
    if isinstance(value, Mapping):
        return any(_uses_interval(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_uses_interval(v) for v in value)
    return False


def _render_any(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, Mapping):
        return {k: _render_any(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_any(v, values) for v in value]
    return value


def _dig(obj: Any, path: str | None) -> Any:
    if not path:
        return obj
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


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


@dataclass
class _Page:
    table: pa.Table
    records: int


class HttpExtractor(Extractor):
    """Reads JSON records from an HTTP API page by page (see :func:`create_http_extractor`)."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, name: str | None = None,
                 params: Mapping[str, Any] | None = None, records_path: str | None = None,
                 pagination: Mapping[str, Any] | str | None = None, auth: Mapping[str, Any] | None = None,
                 max_pages: int | None = 10_000, rate_limit: float | None = None, retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 60.0, flatten: bool = True,
                 explode: str | None = None, method: str = "GET", json_body: Any = None,
                 timeout: float | None = None, prefetch: bool = True) -> None:
        super().__init__(name or "http")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"http extractor {self.name!r}: url must be a non-empty string")
        self.url = url
        self.headers = dict(headers or {})
        self.params = dict(params or {})
        self.records_path = records_path
        self.pagination = self._check_pagination(pagination)
        self.auth = self._check_auth(auth)
        if max_pages is not None and max_pages < 1:
            raise ConfigError(f"http extractor {self.name!r}: max_pages must be at least 1, got {max_pages}")
        self.max_pages = max_pages
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigError(f"http extractor {self.name!r}: rate_limit must be > 0 requests/second")
        self.rate_limit = rate_limit
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.flatten = flatten
        self.explode = explode
        self.method = method.upper()
        self.json_body = json_body
        self.timeout = timeout
        self.prefetch = prefetch
        self.interval_aware = _uses_interval([url, self.params, json_body])
        self._last_request = 0.0
        self._redactor = Redactor()
        self._secret_params: set[str] = set()

    # ---- configuration ---------------------------------------------------------------------

    def _check_pagination(self, pagination: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
        if pagination is None:
            return None
        config = {"type": pagination} if isinstance(pagination, str) else dict(pagination)
        kind = str(config.get("type", "")).replace("-", "_").lower()
        kind = {"page_number": "page", "offset_limit": "offset", "next": "next_url", "link": "next_url",
                "link_header": "next_url"}.get(kind, kind)
        if kind not in _PAGINATION_TYPES:
            raise ConfigError(f"http extractor {self.name!r}: pagination type {config.get('type')!r} is not one of "
                              "page, offset, cursor, next_url")
        config["type"] = kind
        if kind == "page":
            config.setdefault("param", "page")
            config.setdefault("start", 1)
        elif kind == "offset":
            config.setdefault("offset_param", "offset")
            config.setdefault("limit_param", "limit")
            config.setdefault("limit", 100)
        elif kind == "cursor":
            config.setdefault("cursor_param", "cursor")
            if not config.get("cursor_path"):
                raise ConfigError(f"http extractor {self.name!r}: cursor pagination needs cursor_path "
                                  "(where the next token is in the response, e.g. 'meta.next_cursor')")
        return config

    def _check_auth(self, auth: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if auth is None:
            return None
        config = dict(auth)
        kind = str(config.get("type", "")).replace("-", "_").lower()
        if kind not in {"bearer", "basic", "api_key"}:
            raise ConfigError(f"http extractor {self.name!r}: auth type {config.get('type')!r} is not one of "
                              "bearer, basic, api_key")
        config["type"] = kind
        if kind == "api_key":
            config.setdefault("name", "X-API-Key")
            config.setdefault("in", "header")
            if config["in"] not in {"header", "query"}:
                raise ConfigError(f"http extractor {self.name!r}: api_key auth 'in' must be 'header' or 'query'")
        return config

    def _secret(self, context: RunContext, key: str) -> str:
        """An auth value: given directly (``key``) or read from env/.env (``key_env``)."""
        assert self.auth is not None
        if self.auth.get(key) is not None:
            return str(self.auth[key])
        env = self.auth.get(f"{key}_env")
        if not env:
            raise ConfigError(f"http extractor {self.name!r}: {self.auth['type']} auth needs {key!r} or {key}_env")
        value = context.settings.extra(env)
        if not value:
            raise ConfigError(f"http extractor {self.name!r}: {env} is not set (environment or .env); "
                              f"it holds the {self.auth['type']} auth {key}")
        return value

    def _auth_parts(self, context: RunContext) -> tuple[dict[str, str], dict[str, str], set[str]]:
        """Headers, query parameters and secret strings for the configured auth."""
        if self.auth is None:
            return {}, {}, set()
        kind = self.auth["type"]
        if kind == "bearer":
            token = self._secret(context, "token")
            return {"Authorization": f"Bearer {token}"}, {}, {token}
        if kind == "basic":
            user, password = self._secret(context, "username"), self._secret(context, "password")
            encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {encoded}"}, {}, {password, encoded}
        value = self._secret(context, "value")
        if self.auth["in"] == "query":
            return {}, {self.auth["name"]: value}, {value}
        return {self.auth["name"]: value}, {}, {value}

    # ---- extraction ------------------------------------------------------------------------

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        batcher = Batcher(context.settings.batch_size)
        pages = self._pages_in_thread(context) if self.prefetch else self._pages(context)
        try:
            for page in pages:
                yield from batcher.add(page.table)
            yield from batcher.flush()
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    def _pages_in_thread(self, context: RunContext) -> Iterator[_Page]:
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

    def _pages(self, context: RunContext, stop: threading.Event | None = None) -> Iterator[_Page]:
        values = context.template_values()
        auth_headers, auth_params, secrets = self._auth_parts(context)
        url: str | None = render(self.url, values)
        base_params = {k: _render_any(v, values) for k, v in self.params.items()}
        body = _render_any(self.json_body, values)
        headers = {"Accept": "application/json", **self.headers, **auth_headers}
        # Every value this run sends as a secret is masked wherever it appears (an error body
        # quoting the request back, the logs, the run's error in _dp_runs).
        secrets |= header_secrets(headers) | param_secrets(url or "", {**base_params, **auth_params})
        self._redactor = Redactor(secrets)
        self._secret_params = set(auth_params)
        context.add_secrets(secrets)
        reader = ArrowJsonReader()
        p = self.pagination
        kind = p["type"] if p else None
        page_no = int(p["start"]) if kind == "page" else 0
        offset = int(p.get("start", 0)) if kind == "offset" else 0
        cursor: Any = None
        seen: set[str] = set()
        pages = 0
        total_records = 0
        timeout = self._timeout(context)
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            while url is not None:
                params = dict(base_params)
                if kind == "page":
                    params[p["param"]] = page_no
                    if p.get("size_param"):
                        params[p["size_param"]] = p.get("size", 100)
                elif kind == "offset":
                    params[p["offset_param"]] = offset
                    params[p["limit_param"]] = p["limit"]
                elif kind == "cursor" and cursor is not None:
                    params[p["cursor_param"]] = cursor
                params.update(auth_params)
                response = self._request(client, context, url, params, headers, body, stop)
                pages += 1
                table, envelope = self._parse(response, reader)
                n = table.num_rows
                total_records += n
                context.logger.debug("%s: page %d of %s: %d records", self.name, pages, self._safe_url(url), n)
                yield _Page(table, n)
                # What comes next?
                next_url: str | None = None
                if kind is None:
                    break
                if kind == "page":
                    total_pages = _dig(envelope(), p["total_pages_path"]) if p.get("total_pages_path") else None
                    if n == 0 or (p.get("size") and n < int(p["size"]) and p.get("size_param")):
                        break
                    if total_pages is not None and page_no - int(p["start"]) + 1 >= int(total_pages):
                        break
                    page_no += 1
                    next_url = url
                elif kind == "offset":
                    total = _dig(envelope(), p["total_path"]) if p.get("total_path") else None
                    offset += n
                    if n == 0 or n < int(p["limit"]) or (total is not None and offset >= int(total)):
                        break
                    next_url = url
                elif kind == "cursor":
                    cursor = _dig(envelope(), p["cursor_path"])
                    if cursor in (None, "", False) or (p.get("stop_on_empty", True) and n == 0):
                        break
                    key = json.dumps(cursor, default=str)
                    if key in seen:
                        raise ExtractError(f"{self.name}: the API returned the same cursor twice "
                                           f"({self._redact(key)[:80]}) at {self._safe_url(url)}; stopping a loop")
                    seen.add(key)
                    next_url = url
                else:  # next_url: a body field, else the Link header
                    found = _dig(envelope(), p["next_path"]) if p.get("next_path") else None
                    if found is None and not p.get("next_path"):
                        match = _LINK_NEXT.search(response.headers.get("link", ""))
                        found = match.group(1) if match else None
                    if not found or n == 0:
                        break
                    next_url = urljoin(str(response.url), str(found))
                    # The next URL carries its own query: don't repeat ours (keep the auth param).
                    base_params = {}
                    if next_url in seen:
                        raise ExtractError(f"{self.name}: the API's next link repeats {self._safe_url(next_url)}; "
                                           "stopping a loop")
                    seen.add(next_url)
                if self.max_pages is not None and pages >= self.max_pages:
                    context.logger.warning("%s: stopped after max_pages=%d pages; the API has more",
                                           self.name, self.max_pages)
                    context.count("http_pages_capped", 1)
                    break
                url = next_url
        context.logger.info("%s: %d records in %d page(s) from %s", self.name, total_records, pages,
                            self._safe_url(render(self.url, values)))

    # ---- one request ---------------------------------------------------------------------------

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
        return wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff, jitter=self.backoff)(state)

    def _request(self, client: httpx.Client, context: RunContext, url: str, params: dict[str, Any],
                 headers: dict[str, str], body: Any, stop: threading.Event | None = None) -> httpx.Response:
        safe = self._safe_url(url, params)
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
            try:
                response = client.request(self.method, target, params=query or None, headers=headers,
                                          json=body if body is not None else None)
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timed out after {self._timeout(context):g}s ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                dns = _dns_failure(exc)
                if dns:  # a name that does not resolve will not resolve on retry: fail at once
                    raise ExtractError(f"{self.name}: {self.method} {safe}: the host name '{parts.hostname}' "
                                       f"does not resolve ({dns}); check the URL, or this machine's DNS "
                                       "and network") from None
                raise _Retryable(f"connection failed ({type(exc).__name__}: {self._redact(str(exc))})") from None
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}", status, parse_retry_after(response.headers.get("retry-after")),
                                 self._snippet(response))
            return response

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
                               f"body: {self._snippet(response)!r}")
        return response

    # ---- parsing -------------------------------------------------------------------------------

    def _parse(self, response: httpx.Response, reader: ArrowJsonReader) -> tuple[pa.Table, Any]:
        """Records of one response as a table, and a function returning the envelope (for paging)."""
        content = response.content
        if response.status_code == 204 or not content.strip():
            return pa.table({}), lambda: None
        path = ["d"] + (self.records_path.split(".") if self.records_path else [])
        if self.explode is None:
            try:
                doc = reader.read(b'{"d":' + content + b"}")
                column = doc.column("d")
                for part in path[1:]:
                    if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
                        raise FastPathUnavailable("path")
                    column = pa.chunked_array([c.field(part) for c in column.chunks], type=column.type.field(part).type)
                if not pa.types.is_list(column.type) or not pa.types.is_struct(column.type.value_type):
                    raise FastPathUnavailable("shape")
                items = column.combine_chunks()
                if items.null_count:
                    raise FastPathUnavailable("null list")
                structs = items.flatten()
                if structs.null_count:
                    raise FastPathUnavailable("null record")
                table = records_from_arrow(pa.Table.from_struct_array(structs), flatten=self.flatten)
                return table, _Envelope(doc)
            except FastPathUnavailable:
                pass
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ExtractError(f"{self.name}: {self.method} {self._safe_url(str(response.url))} returned a body that "
                               f"is not JSON ({exc}; HTTP {response.status_code}); body: {self._snippet(response)!r}"
                               ) from None
        records = _dig(data, self.records_path)
        if not isinstance(records, list):
            where = f"at '{self.records_path}'" if self.records_path else "at the top level"
            found = "nothing" if records is None else f"a JSON {type(records).__name__}"
            raise ExtractError(f"{self.name}: {self.method} {self._safe_url(str(response.url))}: expected a list of "
                               f"records {where}, found {found} (HTTP {response.status_code}); "
                               f"body: {self._snippet(response)!r}")
        try:
            rows = flatten_records(records, flatten=self.flatten, explode=self.explode)
        except ValueError as exc:
            raise ExtractError(f"{self.name}: {self.method} {self._safe_url(str(response.url))}: {exc}; "
                               f"body: {self._snippet(response)!r}") from None
        return rows_to_table(rows), lambda: data

    # ---- secrets -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._redactor(text)

    def _snippet(self, response: httpx.Response) -> str:
        try:
            text = response.content[:4000].decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001 (a body we cannot read is shown as empty)
            text = ""
        return self._redact(text)[:200]

    def _safe_url(self, url: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL with its query (plus ``params``), secret values masked, no userinfo password."""
        return self._redactor.url(url, params, self._secret_params)


class _Envelope:
    """The response document as a dict, built only when pagination needs it."""

    def __init__(self, doc: pa.Table) -> None:
        self.doc = doc

    def __call__(self) -> Any:
        # Only the non-record fields are needed: skip lists (the records) before converting.
        column = self.doc.column("d")
        if not pa.types.is_struct(column.type):
            return None
        return _struct_without_lists(column.combine_chunks())[0]


def _struct_without_lists(array: pa.StructArray) -> list[Any]:
    """Python values of a struct array, skipping list fields (the records) at every level."""
    names, children = [], []
    for i, field in enumerate(array.type):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            continue
        child = array.field(i)
        names.append(field.name)
        children.append(_struct_without_lists(child) if pa.types.is_struct(field.type) else child.to_pylist())
    if not names:
        return [{} for _ in range(len(array))]
    return [dict(zip(names, values, strict=True)) for values in zip(*children, strict=True)]


def create_http_extractor(url: str, headers: Mapping[str, str] | None = None, name: str | None = None, *,
                          params: Mapping[str, Any] | None = None, records_path: str | None = None,
                          pagination: Mapping[str, Any] | str | None = None, auth: Mapping[str, Any] | None = None,
                          max_pages: int | None = 10_000, rate_limit: float | None = None, retries: int = 5,
                          backoff: float = 1.0, max_backoff: float = 60.0, flatten: bool = True,
                          explode: str | None = None, method: str = "GET", json_body: Any = None,
                          timeout: float | None = None, prefetch: bool = True) -> HttpExtractor:
    """An extractor reading JSON records from an HTTP API.

    Args:
        url: the endpoint; may use ``{start}``, ``{end}``, ``{start_date}``, ``{end_date}`` (the run's
            interval; the extractor is then interval-aware and backfillable).
        headers: extra request headers.
        name: shown in logs and errors.
        params: query parameters (values may use the same placeholders).
        records_path: dotted path of the records list in the response (``None``: the body is the list).
        pagination: ``{"type": "page", "param": "page", "start": 1, "size_param": None, "size": 100,
            "total_pages_path": None}``, ``{"type": "offset", "offset_param": "offset",
            "limit_param": "limit", "limit": 100, "total_path": None}``, ``{"type": "cursor",
            "cursor_path": "meta.next", "cursor_param": "cursor"}`` or ``{"type": "next_url",
            "next_path": "links.next"}`` (without ``next_path``: the ``Link: <...>; rel="next"``
            header). Paging stops at an empty page, a short page, the total, or no next token.
        auth: ``{"type": "bearer", "token_env": "API_TOKEN"}``, ``{"type": "basic", "username_env": ...,
            "password_env": ...}`` or ``{"type": "api_key", "name": "X-API-Key", "in": "header"|"query",
            "value_env": ...}`` (``token``/``username``/``password``/``value`` give a value directly).
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
    """
    return HttpExtractor(url, headers=headers, name=name, params=params, records_path=records_path,
                         pagination=pagination, auth=auth, max_pages=max_pages, rate_limit=rate_limit,
                         retries=retries, backoff=backoff, max_backoff=max_backoff, flatten=flatten,
                         explode=explode, method=method, json_body=json_body, timeout=timeout, prefetch=prefetch)
