"""HTTP extractor against a real HTTP server on 127.0.0.1 (ephemeral port, a thread)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from core.exceptions import ConfigError, ExtractError, TransientError
from pipelines.tools.extractors.http_extractor import (
    ApiKeyAuth,
    Auth,
    AuthParts,
    HttpExtractor,
    Page,
    PageNumberPaginator,
    PageRequest,
    Paginator,
    create_http_extractor,
    parse_retry_after,
)

Response = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_query: str = ""


@dataclass
class Api:
    base: str
    routes: dict[str, Callable[[Seen], Response]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def json(self, path: str, fn: Callable[[Seen], Any], status: int = 200) -> None:
        self.routes[path] = lambda req: (status, {"Content-Type": "application/json"}, json.dumps(fn(req)).encode())


@pytest.fixture
def make_context(settings):
    """A RunContext without a store: the HTTP extractor needs none (keeps these tests fast)."""
    from datetime import timedelta

    from core.logging import get_logger
    from pipelines.interfaces import RunContext

    def build(start: datetime | None = None) -> RunContext:
        start = start or datetime(2026, 1, 15, tzinfo=UTC)
        return RunContext(run_id="run-http-1", pipeline="test_pipeline", start=start, end=start + timedelta(days=1),
                          logger=get_logger("job.test_pipeline"), settings=settings, store=None,  # type: ignore[arg-type]
                          state=None)  # type: ignore[arg-type]

    return build


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api(base="")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            req = Seen(parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                       {k.lower(): v for k, v in self.headers.items()}, parts.query)
            state.seen.append(req)
            route = state.routes.get(parts.path)
            status, headers, body = route(req) if route else (404, {}, b'{"error": "no such route"}')
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def rows(extractor, context) -> list[dict[str, Any]]:
    return [r for batch in extractor.extract(context) for r in batch.to_pylist()]


FAST = {"backoff": 0.01, "max_backoff": 0.05}


def test_plain_list_nested_objects_flattened_lists_as_json(api: Api, make_context) -> None:
    api.json("/items", lambda r: [
        {"id": 1, "user": {"name": "ann", "address": {"city": "Oslo"}}, "tags": ["a", "b"]},
        {"id": 2, "user": {"name": "bob", "address": None}, "tags": []},
    ])
    ext = create_http_extractor(f"{api.base}/items", {"Accept": "application/json"}, "items")
    assert not ext.interval_aware
    out = rows(ext, make_context())
    assert out == [
        {"id": 1, "user_name": "ann", "user_address_city": "Oslo", "tags": '["a", "b"]', "user_address": None},
        {"id": 2, "user_name": "bob", "user_address_city": None, "tags": "[]", "user_address": None},
    ]


def test_flat_records_take_the_arrow_path_and_keep_strings(api: Api, make_context) -> None:
    api.json("/flat", lambda r: {"data": [
        {"id": 1, "ts": "2026-01-15T10:00:00", "v": 1.5, "o": {"x": 1}},
        {"id": 2, "ts": "2026-01-15T11:00:00", "v": None, "extra": "only here"},
    ]})
    ext = create_http_extractor(f"{api.base}/flat", records_path="data")
    (batch,) = list(ext.extract(make_context()))
    assert isinstance(batch, pa.Table)
    assert batch.schema.field("ts").type == pa.string()  # an ISO string stays a string
    assert batch.to_pylist() == [
        {"id": 1, "ts": "2026-01-15T10:00:00", "v": 1.5, "o_x": 1, "extra": None},
        {"id": 2, "ts": "2026-01-15T11:00:00", "v": None, "o_x": None, "extra": "only here"},
    ]


def test_mixed_types_fall_back_to_strings(api: Api, make_context) -> None:
    api.json("/mixed", lambda r: [{"code": 1}, {"code": "A7"}, {"code": None}])
    assert rows(create_http_extractor(f"{api.base}/mixed"), make_context()) == [
        {"code": "1"}, {"code": "A7"}, {"code": None}]


def test_explode(api: Api, make_context) -> None:
    api.json("/orders", lambda r: {"orders": [
        {"id": 1, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
        {"id": 2, "lines": []},
    ]})
    ext = create_http_extractor(f"{api.base}/orders", records_path="orders", explode="lines")
    assert rows(ext, make_context()) == [
        {"id": 1, "lines_sku": "a", "lines_qty": 2},
        {"id": 1, "lines_sku": "b", "lines_qty": 1},
        {"id": 2, "lines_sku": None, "lines_qty": None},
    ]


def _paged(total: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(total)]


def test_page_number_pagination(api: Api, make_context) -> None:
    data = _paged(25)

    def page(req: Seen) -> Any:
        n, size = int(req.query["page"]), int(req.query["per_page"])
        return data[(n - 1) * size:n * size]

    api.json("/p", page)
    ext = create_http_extractor(f"{api.base}/p", pagination={"type": "page", "size_param": "per_page", "size": 10})
    assert [r["id"] for r in rows(ext, make_context())] == list(range(25))
    assert [s.query["page"] for s in api.seen] == ["1", "2", "3"]  # the short page ends it


def test_page_number_without_size_stops_at_empty_page(api: Api, make_context) -> None:
    data = _paged(20)
    api.json("/p", lambda req: data[(int(req.query["page"]) - 1) * 10:int(req.query["page"]) * 10])
    ext = create_http_extractor(f"{api.base}/p", pagination="page")
    assert len(rows(ext, make_context())) == 20
    assert [s.query["page"] for s in api.seen] == ["1", "2", "3"]


def test_offset_limit_pagination_with_total(api: Api, make_context) -> None:
    data = _paged(30)

    def page(req: Seen) -> Any:
        o, n = int(req.query["offset"]), int(req.query["limit"])
        return {"results": data[o:o + n], "total": 30}

    api.json("/o", page)
    ext = create_http_extractor(f"{api.base}/o", records_path="results",
                                pagination={"type": "offset", "limit": 10, "total_path": "total"})
    assert [r["id"] for r in rows(ext, make_context())] == list(range(30))
    assert [s.query["offset"] for s in api.seen] == ["0", "10", "20"]  # the total ends it, no empty 4th call


def test_cursor_pagination(api: Api, make_context) -> None:
    data = _paged(7)

    def page(req: Seen) -> Any:
        start = int(req.query.get("after", 0))
        nxt = start + 3 if start + 3 < 7 else None
        return {"data": {"items": data[start:start + 3]}, "meta": {"next": None if nxt is None else str(nxt)}}

    api.json("/c", page)
    ext = create_http_extractor(f"{api.base}/c", records_path="data.items",
                                pagination={"type": "cursor", "cursor_path": "meta.next", "cursor_param": "after"})
    assert [r["id"] for r in rows(ext, make_context())] == list(range(7))
    assert [s.query.get("after") for s in api.seen] == [None, "3", "6"]


def test_cursor_loop_is_detected(api: Api, make_context) -> None:
    api.json("/loop", lambda req: {"items": [{"id": 1}], "next": "same"})
    ext = create_http_extractor(f"{api.base}/loop", records_path="items",
                                pagination={"type": "cursor", "cursor_path": "next"})
    with pytest.raises(ExtractError, match="same cursor twice"):
        rows(ext, make_context())


def test_next_url_in_body(api: Api, make_context) -> None:
    def page(req: Seen) -> Any:
        n = int(req.query.get("p", 1))
        return {"items": [{"id": n}], "links": {"next": f"/n?p={n + 1}" if n < 3 else None}}

    api.json("/n", page)
    ext = create_http_extractor(f"{api.base}/n", records_path="items",
                                pagination={"type": "next_url", "next_path": "links.next"})
    assert [r["id"] for r in rows(ext, make_context())] == [1, 2, 3]


def test_next_url_echoing_the_api_key_sends_it_once(api: Api, make_context) -> None:
    def page(req: Seen) -> Any:
        n = int(req.query.get("p", 1))
        return {"items": [{"id": n}], "next": f"{api.base}/e?p={n + 1}&key=abc" if n < 2 else None}

    api.json("/e", page)
    ext = create_http_extractor(f"{api.base}/e", records_path="items", pagination={"type": "next_url",
                                "next_path": "next"}, auth={"type": "api_key", "name": "key", "in": "query",
                                                            "value": "abc"})
    assert [r["id"] for r in rows(ext, make_context())] == [1, 2]
    assert [s.raw_query for s in api.seen] == ["key=abc", "p=2&key=abc"]


def test_next_url_from_link_header(api: Api, make_context) -> None:
    def page(req: Seen) -> Response:
        n = int(req.query.get("p", 1))
        headers = {"Content-Type": "application/json"}
        if n < 3:
            headers["Link"] = f'<{api.base}/l?p={n + 1}>; rel="next", <{api.base}/l?p=1>; rel="first"'
        return 200, headers, json.dumps([{"id": n}]).encode()

    api.routes["/l"] = page
    ext = create_http_extractor(f"{api.base}/l", pagination="next_url")
    assert [r["id"] for r in rows(ext, make_context())] == [1, 2, 3]


def test_max_pages_caps_and_warns(api: Api, make_context, caplog: pytest.LogCaptureFixture) -> None:
    api.json("/p", lambda req: [{"page": int(req.query["page"])}])
    ext = create_http_extractor(f"{api.base}/p", pagination="page", max_pages=4)
    context = make_context()
    with caplog.at_level(logging.WARNING, logger="dp"):
        assert [r["page"] for r in rows(ext, context)] == [1, 2, 3, 4]
    assert "max_pages=4" in caplog.text
    assert context.counters["http_pages_capped"] == 1


def test_batches_never_exceed_batch_size(api: Api, make_context) -> None:
    data = _paged(95)
    api.json("/p", lambda req: data[(int(req.query["page"]) - 1) * 20:int(req.query["page"]) * 20])
    context = make_context()
    context.settings.batch_size = 30
    batches = list(create_http_extractor(f"{api.base}/p", pagination="page").extract(context))
    assert [b.num_rows for b in batches] == [30, 30, 30, 5]
    assert [r["id"] for b in batches for r in b.to_pylist()] == list(range(95))


def test_interval_placeholders(api: Api, make_context) -> None:
    api.json("/range", lambda req: [{"from": req.query["from"], "to": req.query["to"]}])
    ext = create_http_extractor(f"{api.base}/range?from={{start_date}}", params={"to": "{end}"})
    assert ext.interval_aware
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert rows(ext, make_context(start=start)) == [{"from": "2026-03-01", "to": "2026-03-02T00:00:00+00:00"}]


# ---- auth ---------------------------------------------------------------------------------------

SECRET = "s3cr3t-T0KEN-value"


def _fail_with_echo(api: Api) -> None:
    # A hostile 4xx that echoes the credentials: the error must still not show them.
    api.routes["/private"] = lambda req: (403, {}, json.dumps(
        {"error": "forbidden", "auth": req.headers.get("authorization"), "q": req.query}).encode())


def test_bearer_token_from_env(api: Api, make_context, monkeypatch, caplog) -> None:
    monkeypatch.setenv("MY_API_AUTH", SECRET)
    api.json("/me", lambda req: [{"ok": 1}])
    _fail_with_echo(api)
    context = make_context()
    ext = create_http_extractor(f"{api.base}/me", auth={"type": "bearer", "token_env": "MY_API_AUTH"})
    with caplog.at_level(logging.DEBUG):
        assert rows(ext, context) == [{"ok": 1}]
        assert api.seen[-1].headers["authorization"] == f"Bearer {SECRET}"
        bad = create_http_extractor(f"{api.base}/private", auth={"type": "bearer", "token_env": "MY_API_AUTH"})
        with pytest.raises(ExtractError) as err:
            rows(bad, context)
    assert "HTTP 403" in str(err.value) and f"{api.base}/private" in str(err.value)
    assert SECRET not in str(err.value) and "***" in str(err.value)
    assert SECRET not in caplog.text


def test_basic_auth_from_dotenv(api: Api, make_context, project_env) -> None:
    with open(project_env["ENV_FILE"], "w") as fh:
        fh.write(f"SRC_USER=reader\nSRC_PASSWORD={SECRET}\n")
    from core.config import load_settings

    api.json("/b", lambda req: [{"ok": 1}])
    context = make_context()
    context.settings = load_settings()
    ext = create_http_extractor(f"{api.base}/b", auth={"type": "basic", "username_env": "SRC_USER",
                                                       "password_env": "SRC_PASSWORD"})
    assert rows(ext, context) == [{"ok": 1}]
    import base64

    assert base64.b64decode(api.seen[-1].headers["authorization"].split()[1]).decode() == f"reader:{SECRET}"


def test_api_key_in_query_is_masked_in_errors_and_logs(api: Api, make_context, monkeypatch, caplog) -> None:
    monkeypatch.setenv("VENDOR_KEY", SECRET)
    _fail_with_echo(api)
    api.json("/k", lambda req: [{"ok": 1}])
    auth = {"type": "api_key", "name": "appid", "in": "query", "value_env": "VENDOR_KEY"}
    context = make_context()
    with caplog.at_level(logging.DEBUG):
        assert rows(create_http_extractor(f"{api.base}/k", auth=auth), context) == [{"ok": 1}]
        assert api.seen[-1].query["appid"] == SECRET
        with pytest.raises(ExtractError) as err:
            rows(create_http_extractor(f"{api.base}/private", auth=auth, params={"q": "x"}), context)
    message = str(err.value)
    assert SECRET not in message
    assert "appid=%2A%2A%2A" in message or "appid=***" in message
    assert "q=x" in message
    assert SECRET not in caplog.text


def test_api_key_header(api: Api, make_context) -> None:
    api.json("/h", lambda req: [{"ok": 1}])
    ext = create_http_extractor(f"{api.base}/h", auth={"type": "api_key", "name": "X-Key", "value": "abc123"})
    rows(ext, make_context())
    assert api.seen[-1].headers["x-key"] == "abc123"


def test_missing_auth_variable_is_a_config_error(api: Api, make_context, monkeypatch) -> None:
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    ext = create_http_extractor(f"{api.base}/x", auth={"type": "bearer", "token_env": "NOT_SET_TOKEN"})
    with pytest.raises(ConfigError, match="NOT_SET_TOKEN is not set"):
        rows(ext, make_context())
    assert api.seen == []


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="pagination type 'pages'"):
        create_http_extractor("http://x", pagination="pages")
    with pytest.raises(ConfigError, match="cursor_path"):
        create_http_extractor("http://x", pagination={"type": "cursor"})
    with pytest.raises(ConfigError, match="auth type"):
        create_http_extractor("http://x", auth={"type": "oauth"})


# ---- retries and errors -------------------------------------------------------------------------

def _sequence(*responses: Response) -> Callable[[Seen], Response]:
    queue = list(responses)
    return lambda req: queue.pop(0) if len(queue) > 1 else queue[0]


OK = (200, {"Content-Type": "application/json"}, b'[{"id": 1}]')


def test_429_with_retry_after_then_ok(api: Api, make_context, caplog) -> None:
    api.routes["/r"] = _sequence((429, {"Retry-After": "0.3"}, b"slow down"), OK)
    ext = create_http_extractor(f"{api.base}/r", backoff=0.01, max_backoff=5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dp"):
        assert rows(ext, make_context()) == [{"id": 1}]
    assert time.monotonic() - started >= 0.3  # the server's Retry-After was honoured
    assert len(api.seen) == 2
    assert "HTTP 429; retry 1/5" in caplog.text


def test_500_then_ok(api: Api, make_context) -> None:
    api.routes["/r"] = _sequence((500, {}, b"oops"), (503, {}, b"busy"), OK)
    assert rows(create_http_extractor(f"{api.base}/r", **FAST), make_context()) == [{"id": 1}]
    assert len(api.seen) == 3


def test_persistent_5xx_raises_transient_error(api: Api, make_context) -> None:
    api.routes["/down"] = lambda req: (502, {}, b"bad gateway")
    ext = create_http_extractor(f"{api.base}/down", retries=2, **FAST)
    with pytest.raises(TransientError) as err:
        rows(ext, make_context())
    assert len(api.seen) == 3
    assert str(err.value) == (f"http: GET {api.base}/down failed after 3 attempt(s): HTTP 502; "
                              "body: 'bad gateway'")


def test_connection_refused_is_transient(make_context) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ext = create_http_extractor(f"http://127.0.0.1:{port}/x", retries=1, **FAST)
    with pytest.raises(TransientError, match="connection failed"):
        rows(ext, make_context())


def test_timeout_is_transient(api: Api, make_context) -> None:
    def slow(req: Seen) -> Response:
        time.sleep(0.5)
        return OK

    api.routes["/slow"] = slow
    ext = create_http_extractor(f"{api.base}/slow", retries=1, timeout=0.1, **FAST)
    with pytest.raises(TransientError, match="timed out after 0.1s"):
        rows(ext, make_context())


def test_404_fails_with_url_status_and_body(api: Api, make_context) -> None:
    ext = create_http_extractor(f"{api.base}/missing", params={"day": "{start_date}"}, name="orders")
    with pytest.raises(ExtractError) as err:
        rows(ext, make_context())
    assert not isinstance(err.value, TransientError)
    assert str(err.value) == (f"orders: GET {api.base}/missing?day=2026-01-15 returned HTTP 404; "
                              """body: '{"error": "no such route"}'""")
    assert len(api.seen) == 1  # a 404 is not retried


def test_malformed_body(api: Api, make_context) -> None:
    api.routes["/bad"] = lambda req: (200, {"Content-Type": "application/json"}, b"<html>" + b"x" * 500)
    with pytest.raises(ExtractError) as err:
        rows(create_http_extractor(f"{api.base}/bad"), make_context())
    message = str(err.value)
    assert "is not JSON" in message and "HTTP 200" in message and f"{api.base}/bad" in message
    assert "'<html>" + "x" * 194 + "'" in message  # the first 200 characters


def test_unexpected_shape(api: Api, make_context) -> None:
    api.json("/obj", lambda req: {"data": {"not": "a list"}})
    with pytest.raises(ExtractError, match="expected a list of records at 'data', found a JSON dict"):
        rows(create_http_extractor(f"{api.base}/obj", records_path="data"), make_context())
    api.json("/scalars", lambda req: [1, 2, 3])
    with pytest.raises(ExtractError, match="record 0 is int, expected a JSON object"):
        rows(create_http_extractor(f"{api.base}/scalars"), make_context())


def test_rate_limit_spaces_requests(api: Api, make_context) -> None:
    api.json("/p", lambda req: [{"p": 1}] if int(req.query["page"]) <= 3 else [])
    ext = create_http_extractor(f"{api.base}/p", pagination="page", rate_limit=10)
    started = time.monotonic()
    rows(ext, make_context())
    assert len(api.seen) == 4
    assert time.monotonic() - started >= 0.3  # 4 requests at 10/s: 3 gaps of 0.1 s


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = datetime.now(UTC).replace(microsecond=0)
    from datetime import timedelta

    assert 8 <= parse_retry_after(format_datetime(future + timedelta(seconds=10), usegmt=True)) <= 10


def test_consumer_stopping_early_stops_the_fetch_thread(api: Api, make_context) -> None:
    api.json("/p", lambda req: [{"id": i} for i in range(10)])  # endless pages
    context = make_context()
    context.settings.batch_size = 10
    gen = create_http_extractor(f"{api.base}/p", pagination="page").extract(context)
    next(gen)
    gen.close()
    time.sleep(0.3)
    calls = len(api.seen)
    time.sleep(0.3)
    assert len(api.seen) == calls <= 5
    assert not [t for t in threading.enumerate() if t.name.startswith("http-extract")]


# ---- your own paginator and auth (strategies written from docs/connectors.md) ----------------------

class HeaderTokenPaginator(Paginator):
    """Follows an ``X-Next-Token`` response header, sent back as ``?page_token=``."""

    def next(self, request: PageRequest, page: Page, context) -> PageRequest | None:
        token = page.response.headers.get("x-next-token")
        return request.with_params({"page_token": token}) if token else None


class SignedAuth(Auth):
    """A vendor's scheme: a client id in the query and a signature header made from a secret."""

    kind = "signed"

    def __init__(self, secret_env: str) -> None:
        self.secret_env = secret_env

    def parts(self, context) -> AuthParts:
        secret = self.secret(context, "secret", None, self.secret_env)
        signature = f"sig-{secret[::-1]}"
        return AuthParts(headers={"X-Signature": signature}, params={"client_secret": secret},
                         secrets={secret, signature})


def _token_pages(api: Api, pages: int, path: str = "/t") -> None:
    def page(req: Seen) -> Response:
        n = int(req.query.get("page_token", 0))
        headers = {"Content-Type": "application/json"}
        if n + 1 < pages:
            headers["X-Next-Token"] = str(n + 1)
        return 200, headers, json.dumps({"items": [{"id": n}]}).encode()

    api.routes[path] = page


def test_own_paginator_gets_placeholders_auth_and_retries(api: Api, make_context, monkeypatch) -> None:
    monkeypatch.setenv("VENDOR_SECRET", SECRET)
    _token_pages(api, 3)
    flaky = api.routes["/t"]
    failed: list[int] = []

    def once_500_on_page_2(req: Seen) -> Response:  # a 5xx in the middle is retried like a built-in's
        if req.query.get("page_token") == "2" and not failed:
            failed.append(1)
            return 500, {}, b"busy"
        return flaky(req)

    api.routes["/t"] = once_500_on_page_2
    ext = create_http_extractor(f"{api.base}/t", params={"day": "{start_date}"}, records_path="items",
                                pagination=HeaderTokenPaginator(), auth=SignedAuth("VENDOR_SECRET"), **FAST)
    assert ext.interval_aware  # the placeholder in params, as with a built-in paginator
    context = make_context()
    assert [r["id"] for r in rows(ext, context)] == [0, 1, 2]
    assert [s.query.get("page_token") for s in api.seen] == [None, "1", "2", "2"]
    assert {s.query["day"] for s in api.seen} == {"2026-01-15"}
    assert {s.query["client_secret"] for s in api.seen} == {SECRET}
    assert {s.headers["x-signature"] for s in api.seen} == {f"sig-{SECRET[::-1]}"}
    assert context.counters["http_requests"] == 3


def test_own_auth_is_masked_in_errors_and_logs(api: Api, make_context, monkeypatch, caplog) -> None:
    monkeypatch.setenv("VENDOR_SECRET", SECRET)
    _fail_with_echo(api)
    ext = create_http_extractor(f"{api.base}/private", auth=SignedAuth("VENDOR_SECRET"), name="vendor")
    with caplog.at_level(logging.DEBUG), pytest.raises(ExtractError) as err:
        rows(ext, make_context())
    message = str(err.value)
    assert message.startswith(f"vendor: GET {api.base}/private?client_secret=") and "HTTP 403" in message
    assert SECRET not in message and SECRET[::-1] not in message and "***" in message
    assert SECRET not in caplog.text and SECRET[::-1] not in caplog.text


def test_own_auth_missing_variable_names_the_extractor(api: Api, make_context, monkeypatch) -> None:
    monkeypatch.delenv("NOT_SET_SECRET", raising=False)
    ext = create_http_extractor(f"{api.base}/x", auth=SignedAuth("NOT_SET_SECRET"), name="vendor")
    with pytest.raises(ConfigError) as err:
        rows(ext, make_context())
    assert str(err.value) == ("http extractor 'vendor': NOT_SET_SECRET is not set (environment or .env); "
                              "it holds the signed auth secret")
    assert api.seen == []


def test_own_paginator_interval_and_first_request(api: Api, make_context) -> None:
    class DayPaginator(Paginator):
        """Selects the run's day itself: declares it, so the pipeline is backfillable."""

        interval_aware = True

        def first(self, request: PageRequest, context) -> PageRequest:
            return request.with_params({"day": context.start_date})

        def next(self, request: PageRequest, page: Page, context) -> PageRequest | None:
            return None

    api.json("/d", lambda req: [{"day": req.query["day"]}])
    ext = create_http_extractor(f"{api.base}/d", pagination=DayPaginator())
    assert ext.interval_aware
    assert rows(ext, make_context()) == [{"day": "2026-01-15"}]
    assert not create_http_extractor(f"{api.base}/d", pagination=HeaderTokenPaginator()).interval_aware


def test_own_paginator_repeating_a_page_is_stopped(api: Api, make_context) -> None:
    class Stuck(Paginator):
        def next(self, request: PageRequest, page: Page, context) -> PageRequest | None:
            return request.with_params({"page": 1})

    api.json("/s", lambda req: [{"id": 1}])
    ext = create_http_extractor(f"{api.base}/s", pagination=Stuck(), name="stuck api")
    with pytest.raises(ExtractError) as err:
        rows(ext, make_context())
    assert str(err.value) == (f"stuck api: Stuck asked for the same page twice ({api.base}/s?page=1); "
                              "stopping a loop")
    assert len(api.seen) == 2


def test_own_paginator_is_capped_by_max_pages_and_its_errors_are_named(api: Api, make_context, caplog) -> None:
    _token_pages(api, 100)
    context = make_context()
    ext = create_http_extractor(f"{api.base}/t", records_path="items", pagination=HeaderTokenPaginator(),
                                max_pages=3)
    with caplog.at_level(logging.WARNING, logger="dp"):
        assert [r["id"] for r in rows(ext, context)] == [0, 1, 2]
    assert "max_pages=3" in caplog.text and context.counters["http_pages_capped"] == 1

    class Picky(Paginator):
        def next(self, request: PageRequest, page: Page, context) -> PageRequest | None:
            raise ExtractError(f"no next token at {page.safe_url()}")

    with pytest.raises(ExtractError) as err:
        rows(create_http_extractor(f"{api.base}/t", records_path="items", pagination=Picky(), name="picky"),
             make_context())
    assert str(err.value) == f"picky: no next token at {api.base}/t"


def test_built_in_strategies_as_objects_match_their_dicts(api: Api, make_context) -> None:
    data = _paged(25)
    api.json("/p", lambda req: data[(int(req.query["page"]) - 1) * 10:int(req.query["page"]) * 10])
    as_object = create_http_extractor(f"{api.base}/p", pagination=PageNumberPaginator(size_param="per_page",
                                                                                       size=10),
                                      auth=ApiKeyAuth("abc123", name="X-Key"))
    assert [r["id"] for r in rows(as_object, make_context())] == list(range(25))
    object_calls = [(s.raw_query, s.headers["x-key"]) for s in api.seen]
    api.seen.clear()
    as_dict = create_http_extractor(f"{api.base}/p", pagination={"type": "page", "size_param": "per_page",
                                                                 "size": 10},
                                    auth={"type": "api_key", "name": "X-Key", "value": "abc123"})
    assert [r["id"] for r in rows(as_dict, make_context())] == list(range(25))
    assert [(s.raw_query, s.headers["x-key"]) for s in api.seen] == object_calls
    assert object_calls == [("page=1&per_page=10", "abc123"), ("page=2&per_page=10", "abc123"),
                            ("page=3&per_page=10", "abc123")]


def test_strategies_of_the_wrong_kind_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="pagination must be a style name, a dict .* or a Paginator instance, "
                                          "got int"):
        create_http_extractor("http://x", pagination=3)
    with pytest.raises(ConfigError, match="auth must be a dict .* or an Auth instance, got str"):
        create_http_extractor("http://x", auth="bearer")
    with pytest.raises(ConfigError, match="http extractor 'http': page pagination .*'start': 'one'"):
        create_http_extractor("http://x", pagination={"type": "page", "start": "one"})


def test_factory_has_the_class_signature_and_documentation() -> None:
    import inspect

    assert create_http_extractor.__name__ == "create_http_extractor"
    factory, cls = inspect.signature(create_http_extractor), inspect.signature(HttpExtractor)
    assert list(factory.parameters) == list(cls.parameters)
    assert list(factory.parameters)[:3] == ["url", "headers", "name"]  # the seed's positional order
    assert "records_path:" in (create_http_extractor.__doc__ or "")
    ext = create_http_extractor("http://x/{start}", {"Accept": "text/json"}, "positional")
    assert isinstance(ext, HttpExtractor) and ext.name == "positional" and ext.headers == {"Accept": "text/json"}
    assert ext.interval_aware


def test_own_paginator_resumes_from_the_run_state(api: Api, store) -> None:
    """A paginator keeps its cursor in ``context.state``: the next run starts where this one ended."""
    from datetime import timedelta

    from core.logging import get_logger
    from pipelines.interfaces import RunContext
    from record.state import RunState
    from record.tables import ensure_framework_tables

    class SincePaginator(Paginator):
        def first(self, request: PageRequest, context) -> PageRequest:
            return request.with_params({"since": context.state.get("since", 0)})

        def next(self, request: PageRequest, page: Page, context) -> PageRequest | None:
            if page.get("last") is not None:
                context.state.set("since", page.get("last"))  # saved only when the run succeeds
            return request.with_params({"since": page.get("last")}) if page.get("more") else None

    feed = list(range(1, 8))

    def page(req: Seen) -> Any:
        since = int(req.query["since"])
        items = [{"id": i} for i in feed if i > since][:2]
        return {"items": items, "last": items[-1]["id"] if items else None,
                "more": bool(items) and items[-1]["id"] < feed[-1]}

    api.json("/feed", page)
    ensure_framework_tables(store)
    ext = create_http_extractor(f"{api.base}/feed", records_path="items", pagination=SincePaginator())

    def run(run_id: str) -> list[int]:
        start = datetime(2026, 1, 15, tzinfo=UTC)
        context = RunContext(run_id=run_id, pipeline="feed", start=start, end=start + timedelta(days=1),
                             logger=get_logger("job.feed"), settings=store.settings, store=store,
                             state=RunState(store, "feed"))
        ids = [r["id"] for r in rows(ext, context)]
        context.state.commit(run_id)
        return ids

    assert run("r1") == [1, 2, 3, 4, 5, 6, 7]
    feed.extend([8, 9, 10])
    assert run("r2") == [8, 9, 10]
    assert [s.query["since"] for s in api.seen] == ["0", "2", "4", "6", "7", "9"]
