"""The status page at its edges: a DATA_DIR it cannot write, secrets in URLs and error texts,
and wrong passwords in a row. Real ``./run.sh ui`` processes over real HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ui_project import Project

from conftest import ROOT, SRC, cli_env

# Its own temporary project on the embedded store (ui_project.Project blanks CLICKHOUSE_*):
# the server run would do exactly the same.
pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs("the page on its own embedded project")]


def test_ui_with_an_unwritable_data_dir_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"  # root writes anywhere, but nobody makes a directory under a file
    blocker.write_text("")
    project = Project(tmp_path / "p", UI_PASSWORD="")
    bad = blocker / "data"
    result = subprocess.run([sys.executable, str(SRC / "main.py"), "ui", "--port", "0"],
                            env=cli_env({**project.env, "DATA_DIR": str(bad)}), cwd=ROOT, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()
    assert last[-1].startswith(f"error: DATA_DIR {bad} is not writable (Not a directory: "), result.stderr
    assert "Status page on" not in result.stderr  # refused before listening


BROKEN = '''
raise RuntimeError("GET https://api.example.com/v1/orders?page=2&api_key=k3y-in-the-url-123 failed: "
                   "401 for Authorization: Bearer t0ken-in-a-header-456")
'''


def test_secrets_in_urls_and_headers_of_an_error_never_show(tmp_path: Path) -> None:
    from ui_project import UiServer

    project = Project(tmp_path, UI_PASSWORD="")
    (tmp_path / "pipelines" / "leaky_pipeline.py").write_text(BROKEN)
    ui = UiServer(project)
    try:
        page = ui.get("/")
        assert page.status_code == 200
        assert "leaky_pipeline.py" in page.text  # the broken module is listed with its error
        assert "api.example.com/v1/orders?page=2&amp;api_key=***" in page.text, page.text
        assert "401 for Authorization: ***" in page.text
        assert "k3y-in-the-url-123" not in page.text and "t0ken-in-a-header-456" not in page.text
    finally:
        ui.stop()
