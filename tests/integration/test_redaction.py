"""Secrets never appear in errors, logs or run history, even when an API echoes the request."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import JsonHandler, run_cli, serve

try:
    from core.redaction import Redactor
except ImportError:  # the old code had no shared helper
    Redactor = None

URL_KEY, HEADER_TOKEN, BEARER, COOKIE = "KEYq8w7e6r", "TOKz1x2c3v", "BEARm4n5b6", "sessionid=COOKa9s8d7"


class Echo(JsonHandler):
    """Answers 400 (or 503 with ?fail=503) with a body quoting the request line and headers."""

    def do_GET(self) -> None:
        status = 503 if "fail=503" in self.path else 400
        self.send_json({"error": "bad request", "request": f"GET {self.path}",
                        "headers": {k: v for k, v in self.headers.items()}}, status)


MODULE = textwrap.dedent('''
    import os
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.http_extractor import create_http_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    def pipe(query, prefetch=True):
        extractor = create_http_extractor(
            os.environ["TEST_URL"] + "/v1/items?" + query, retries=1, backoff=0.01, prefetch=prefetch,
            headers={"X-Api-Token": "TOKz1x2c3v", "Authorization": "Bearer BEARm4n5b6",
                     "Cookie": "sessionid=COOKa9s8d7", "Accept": "application/json"})
        return {"pipeline": create_el_pipeline(extractor, create_clickhouse_loader("items"), "echo")}

    PIPELINE_REGISTRY = {
        "echo_400": pipe("api_key=KEYq8w7e6r&page=1"),
        "echo_503": pipe("access_token=KEYq8w7e6r&fail=503", prefetch=False),
    }
''')


@pytest.mark.parametrize("name", ["echo_400", "echo_503"])
def test_echoed_secrets_are_masked_everywhere(pipelines_dir: Path, project_env, name: str) -> None:
    (pipelines_dir / "echo_pipeline.py").write_text(MODULE)
    with serve(Echo) as base:
        result = run_cli("cron_run", name, env={"TEST_URL": base})
    assert result.returncode == 1, result.stdout + result.stderr
    logs = Path(project_env["LOG_DIR"])
    history = run_cli("runs", "--json")
    [run] = json.loads(history.stdout)
    texts = {"stdout": result.stdout, "stderr": result.stderr, "run error": run["error"],
             "job log": (logs / "jobs" / f"{name}.log").read_text(),
             "application.log": (logs / "system" / "application.log").read_text()}
    for where, text in texts.items():
        for secret in (URL_KEY, HEADER_TOKEN, BEARER, COOKIE):
            assert secret not in text, f"{secret} in the {where}: {text}"
    assert "***" in run["error"] and ("HTTP 400" in run["error"] or "HTTP 503" in run["error"])
    assert "page=1" in run["error"] or "fail=503" in run["error"]  # the rest of the URL stays readable


def test_default_secret_names_and_known_values() -> None:
    redact = Redactor(["p4ssw0rd-value"])
    text = ("GET /x?api_key=a1&apikey=a2&key=a3&token=a4&access_token=a5&secret=a6&password=a7&signature=a8"
            "&sig=a9&page=2 Authorization: Bearer zz1 Proxy-Authorization: Basic zz2 X-API-Key: zz3 "
            "X-Session-Token: zz4 Cookie: c=zz5 and p4ssw0rd-value")
    masked = redact(text)
    for value in ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "zz1", "zz2", "zz3", "zz4", "zz5",
                  "p4ssw0rd-value"):
        assert f"={value}" not in masked and f" {value}" not in masked, (value, masked)
    assert "page=2" in masked and "GET /x?api_key=***&" in masked
    assert redact.header("Authorization", "Bearer zz1") == "***"
    assert redact.header("Accept", "application/json") == "application/json"
    assert redact.is_secret_header("X-Refresh-Token") and not redact.is_secret_header("Accept")
    assert redact.is_secret_param("access_token") and not redact.is_secret_param("monkey")
    # JSON echoes ("Authorization": "Bearer ...") are masked too.
    assert (redact('{"Authorization": "Bearer zz1", "x-api-key": "zz3"}')
            == '{"Authorization": "***", "x-api-key": "***"}')
