"""Wrong UI_PASSWORDs in a row are throttled per client address, over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from ui_project import Project, UiServer

# Its own temporary project on the embedded store (ui_project.Project blanks CLICKHOUSE_*):
# the server run would do exactly the same.
pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs("the page on its own embedded project")]

SECRET = "right-pw-for-the-page"


def test_wrong_passwords_in_a_row_are_throttled_per_address(tmp_path: Path) -> None:
    project = Project(tmp_path, UI_PASSWORD=SECRET)
    ui = UiServer(project, "--host", "0.0.0.0")
    try:
        statuses = []
        with httpx.Client(timeout=30) as http:
            for _ in range(40):
                answer = http.get(ui.url + "/metrics", auth=("x", "wrong"))
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    retry = answer.headers["retry-after"]
                    assert "too many wrong passwords" in answer.text
            assert statuses[:5] == [401] * 5, statuses
            assert statuses.count(401) <= 6 and statuses.count(429) >= 34, statuses
            assert 1 <= int(retry) <= 60
            # while blocked, even the right password waits
            assert http.get(ui.url + "/metrics", auth=("x", SECRET)).status_code == 429
            # another address is not blocked
            other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30)
            with other:
                assert other.get(ui.url + "/metrics", auth=("x", SECRET)).status_code != 429
            time.sleep(int(retry) + 0.2)  # the block was at most that long: it has passed
            assert http.get(ui.url + "/metrics", auth=("x", SECRET)).status_code == 200
            # a success forgives: the next wrong password is a plain 401
            assert http.get(ui.url + "/metrics", auth=("x", "wrong")).status_code == 401
    finally:
        ui.stop()
