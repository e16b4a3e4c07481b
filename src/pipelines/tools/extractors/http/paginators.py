"""HTTP pagination strategies: given one page's response, what to request next.

Built-ins: :class:`PageNumberPaginator`, :class:`OffsetPaginator`, :class:`CursorPaginator`,
:class:`NextUrlPaginator` (also written as a dict or a string, e.g. ``pagination="page"``) and
:class:`SinglePagePaginator` (no pagination). Your own is a subclass of :class:`Paginator` passed
as ``pagination=``. It gets what a built-in gets: the first request already has the run's
placeholders rendered, every request goes through the extractor's auth, rate limit and retries,
``max_pages`` caps it, asking for the same page twice stops the run (an API loop), and an
``ExtractError`` it raises names the extractor.
"""

from __future__ import annotations

import dataclasses
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import httpx

from core.exceptions import ConfigError, ExtractError
from pipelines.interfaces import RunContext
from pipelines.tools.extractors.http.parsing import dig

_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.I)


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """One page's request. ``url`` may carry its own query; ``params`` are added to it (the
    auth's parameters are added when sending, and replace the same names in ``url``)."""

    url: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    json_body: Any = None

    def with_params(self, params: Mapping[str, Any]) -> PageRequest:
        """A copy with these query parameters set (others kept)."""
        return dataclasses.replace(self, params={**self.params, **params})

    def key(self) -> str:
        """Identifies the request (two equal keys: the same page asked twice)."""
        return json.dumps([self.url, sorted((str(k), str(v)) for k, v in self.params.items()), self.json_body],
                          default=str)


class Page:
    """One page's response as a paginator sees it."""

    def __init__(self, response: httpx.Response, records: int, document: Callable[[], Any],
                 safe_url: Callable[[str], str]) -> None:
        self.response = response
        #: How many records the page held.
        self.records = records
        self._document = document
        self._safe_url = safe_url

    def document(self) -> Any:
        """The JSON body (built on first use; its lists, the records, may be left out)."""
        return self._document()

    def get(self, path: str) -> Any:
        """The value at a dotted path of the JSON body (``"meta.next"``), None if absent."""
        return dig(self.document(), path)

    def safe_url(self, url: str | None = None) -> str:
        """``url`` (default: this page's) with secrets masked, for error messages."""
        return self._safe_url(url if url is not None else str(self.response.url))


class Paginator(ABC):
    """Base of pagination strategies: subclass it and implement :meth:`next`.

    Set ``interval_aware = True`` when your requests select the run's interval themselves (from
    ``context.start``/``context.end``): the extractor, and so the pipeline, is then backfillable.
    """

    interval_aware: bool = False

    def first(self, request: PageRequest, context: RunContext) -> PageRequest:
        """The first request of a run (default: as configured). Reset any per-run state here."""
        return request

    @abstractmethod
    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        """The request after ``page`` (the response to ``request``), or None: it was the last page."""


class SinglePagePaginator(Paginator):
    """One request (no pagination)."""

    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        return None


class PageNumberPaginator(Paginator):
    """``?page=1``, ``2``, ... Stops at an empty page, after ``total_pages_path``'s count, or at a
    page shorter than ``size`` (only when both ``size_param`` and ``size`` are given: an API that
    caps the page size below the default would otherwise end early)."""

    def __init__(self, param: str = "page", start: int = 1, size_param: str | None = None,
                 size: int | None = None, total_pages_path: str | None = None) -> None:
        self.param, self.start, self.size_param = param, int(start), size_param
        self.size, self.total_pages_path = (int(size) if size is not None else None), total_pages_path

    def first(self, request: PageRequest, context: RunContext) -> PageRequest:
        params: dict[str, Any] = {self.param: self.start}
        if self.size_param:
            params[self.size_param] = self.size if self.size is not None else 100
        return request.with_params(params)

    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        total_pages = page.get(self.total_pages_path) if self.total_pages_path else None
        n, number = page.records, int(request.params[self.param])
        if n == 0 or (self.size and self.size_param and n < self.size):
            return None
        if total_pages is not None and number - self.start + 1 >= int(total_pages):
            return None
        return request.with_params({self.param: number + 1})


class OffsetPaginator(Paginator):
    """``?offset=0&limit=100``, ``offset=100``, ... Stops at a short page or at ``total_path``'s total."""

    def __init__(self, offset_param: str = "offset", limit_param: str = "limit", limit: int = 100,
                 start: int = 0, total_path: str | None = None) -> None:
        self.offset_param, self.limit_param, self.limit = offset_param, limit_param, int(limit)
        self.start, self.total_path = int(start), total_path

    def first(self, request: PageRequest, context: RunContext) -> PageRequest:
        return request.with_params({self.offset_param: self.start, self.limit_param: self.limit})

    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        total = page.get(self.total_path) if self.total_path else None
        n = page.records
        offset = int(request.params[self.offset_param]) + n
        if n == 0 or n < self.limit or (total is not None and offset >= int(total)):
            return None
        return request.with_params({self.offset_param: offset})


class CursorPaginator(Paginator):
    """The next token from the body (``cursor_path``) sent as ``cursor_param``. Stops when it is
    missing or empty (or at an empty page, unless ``stop_on_empty=False``); the same token twice
    is an error (an API loop)."""

    def __init__(self, cursor_path: str | None = None, cursor_param: str = "cursor",
                 stop_on_empty: bool = True) -> None:
        if not cursor_path:
            raise ConfigError("cursor pagination needs cursor_path (where the next token is in the response, "
                              "e.g. 'meta.next_cursor')")
        self.cursor_path, self.cursor_param, self.stop_on_empty = cursor_path, cursor_param, stop_on_empty
        self._seen: set[str] = set()

    def first(self, request: PageRequest, context: RunContext) -> PageRequest:
        self._seen = set()
        return request

    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        cursor = page.get(self.cursor_path)
        if cursor in (None, "", False) or (self.stop_on_empty and page.records == 0):
            return None
        key = json.dumps(cursor, default=str)
        if key in self._seen:
            raise ExtractError(f"the API returned the same cursor twice ({key[:80]}) at "
                               f"{page.safe_url(request.url)}; stopping a loop")
        self._seen.add(key)
        return request.with_params({self.cursor_param: cursor})


class NextUrlPaginator(Paginator):
    """The next URL from the body (``next_path``; relative URLs resolved) or, without ``next_path``,
    the ``Link: <...>; rel="next"`` header. Stops at an empty page or no link; a repeated URL is an error."""

    def __init__(self, next_path: str | None = None) -> None:
        self.next_path = next_path
        self._seen: set[str] = set()

    def first(self, request: PageRequest, context: RunContext) -> PageRequest:
        self._seen = set()
        return request

    def next(self, request: PageRequest, page: Page, context: RunContext) -> PageRequest | None:
        if self.next_path:
            found = page.get(self.next_path)
        else:
            match = _LINK_NEXT.search(page.response.headers.get("link", ""))
            found = match.group(1) if match else None
        if not found or page.records == 0:
            return None
        next_url = urljoin(str(page.response.url), str(found))
        if next_url in self._seen:
            raise ExtractError(f"the API's next link repeats {page.safe_url(next_url)}; stopping a loop")
        self._seen.add(next_url)
        # The next URL carries its own query: don't repeat ours (the auth's parameters stay).
        return PageRequest(next_url, {}, request.json_body)


_ALIASES = {"page_number": "page", "offset_limit": "offset", "next": "next_url", "link": "next_url",
            "link_header": "next_url"}
_BUILT_IN: dict[str, tuple[type[Paginator], tuple[str, ...]]] = {
    "page": (PageNumberPaginator, ("param", "start", "size_param", "size", "total_pages_path")),
    "offset": (OffsetPaginator, ("offset_param", "limit_param", "limit", "start", "total_path")),
    "cursor": (CursorPaginator, ("cursor_path", "cursor_param", "stop_on_empty")),
    "next_url": (NextUrlPaginator, ("next_path",)),
}


def paginator_from_config(pagination: Paginator | Mapping[str, Any] | str | None, owner: str) -> Paginator:
    """The strategy for ``pagination=``: a :class:`Paginator` as is, a dict or a string as its
    built-in, ``None`` as a single page (``owner`` names the extractor in errors)."""
    if pagination is None:
        return SinglePagePaginator()
    if isinstance(pagination, Paginator):
        return pagination
    if not isinstance(pagination, (str, Mapping)):
        raise ConfigError(f"{owner}: pagination must be a style name, a dict such as {{'type': 'page'}} or a "
                          f"Paginator instance, got {type(pagination).__name__}")
    config = {"type": pagination} if isinstance(pagination, str) else dict(pagination)
    kind = str(config.get("type", "")).replace("-", "_").lower()
    kind = _ALIASES.get(kind, kind)
    if kind not in _BUILT_IN:
        raise ConfigError(f"{owner}: pagination type {config.get('type')!r} is not one of "
                          "page, offset, cursor, next_url")
    cls, names = _BUILT_IN[kind]
    try:
        return cls(**{name: config[name] for name in names if name in config})
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. a page number that is not a number
        raise ConfigError(f"{owner}: {kind} pagination {config!r}: {exc}") from None
