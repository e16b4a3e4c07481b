"""HTTP extractor: JSON APIs with pagination, auth, retries and rate limiting.

    create_http_extractor(
        "https://api.example.com/orders?since={start_date}",
        records_path="data.items",
        pagination={"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor"},
        auth={"type": "bearer", "token_env": "API_TOKEN"},
    )

The code lives in the ``pipelines.tools.extractors.http`` package (``extractor``, ``paginators``,
``auth``, ``transport``, ``parsing``, ``placeholders``); this module is the import path users
know, with every public name.
"""

from pipelines.tools.extractors.http.auth import ApiKeyAuth, Auth, AuthParts, BasicAuth, BearerAuth
from pipelines.tools.extractors.http.extractor import HttpExtractor, create_http_extractor
from pipelines.tools.extractors.http.paginators import (
    CursorPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    PageRequest,
    Paginator,
    SinglePagePaginator,
)
from pipelines.tools.extractors.http.placeholders import render
from pipelines.tools.extractors.http.transport import parse_retry_after

__all__ = [
    "ApiKeyAuth", "Auth", "AuthParts", "BasicAuth", "BearerAuth", "CursorPaginator", "HttpExtractor",
    "NextUrlPaginator", "OffsetPaginator", "Page", "PageNumberPaginator", "PageRequest", "Paginator",
    "SinglePagePaginator", "create_http_extractor", "parse_retry_after", "render",
]
