"""The status page in a real browser: headless Chromium driven by Selenium, data from real runs.

Screenshots of each page go to ``tests/results/ui_*.png``; with ``UPDATE_DOC_IMAGES=1`` those the
docs show are copied to ``docs/images/ui-*.png`` too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from ui_project import Project, UiServer, build_runs

from conftest import ROOT, require_tool

# Its own temporary project on the embedded store (ui_project.Project blanks CLICKHOUSE_*):
# the server run would do exactly the same.
pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs("the page on its own embedded project")]

SHOTS = ROOT / "tests" / "results"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


DOC_IMAGES = ("pipelines", "coverage", "rows", "run", "pipeline", "coverage_2015")


def shot(driver: object, name: str) -> None:
    """Save a screenshot as tests/results/ui_<name>.png (and as docs/images when asked to)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"ui_{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    if os.environ.get("UPDATE_DOC_IMAGES") == "1" and name in DOC_IMAGES:
        shutil.copy(path, ROOT / "docs" / "images" / f"ui-{name.replace('_', '-')}.png")


def browser(javascript: bool = True) -> object:
    """Headless Chromium with a fresh profile (the Debian chromium and chromium-driver packages)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='dp-chromium-')}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(options=options, service=Service(driver_path))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    require_tool("chromium")
    project = Project(tmp_path_factory.mktemp("ui-browser"))
    build_runs(project)
    ui = UiServer(project)
    yield ui
    ui.stop()


@pytest.fixture(scope="module")
def chrome() -> Iterator[object]:
    driver = browser()
    yield driver
    driver.quit()  # type: ignore[attr-defined]


def test_pipelines_page(server: UiServer, chrome) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(server.url + "/")
    names = [row.get_attribute("id") for row in chrome.find_elements(By.CSS_SELECTOR, "#pipelines tbody tr[id]")]
    assert names == ["pipeline-days", "pipeline-flaky", "pipeline-never", "pipeline-snap"]
    status = chrome.find_element(By.CSS_SELECTOR, "#pipeline-flaky .status").text
    assert status == "failed"
    error = chrome.find_element(By.CSS_SELECTOR, "tr.error pre").text
    assert "bad input <script>alert('x')</script> for" in error  # shown as text, not run
    shot(chrome, "pipelines")


def test_coverage_grid_cells_link_to_their_runs(server: UiServer, chrome) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(server.url + "/coverage?days=7")
    done = chrome.find_elements(By.CSS_SELECTOR, "#grid-days .cells .cell.done")
    assert len(done) == 5
    assert all(cell.size["width"] > 0 and cell.size["height"] > 0 for cell in done)
    colour = done[0].value_of_css_property("background-color")
    missing = chrome.find_element(By.CSS_SELECTOR, "#grid-days .cells .cell.missing")
    assert colour != missing.value_of_css_property("background-color")
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#grid-flaky .cells .cell.failed")) == 1
    shot(chrome, "coverage")
    chrome.find_element(By.CSS_SELECTOR, "#grid-flaky .cells a.cell.failed").click()
    WebDriverWait(chrome, 10).until(lambda d: "/runs/" in d.current_url)
    assert chrome.find_element(By.CSS_SELECTOR, "h1 .status").text == "failed"
    assert "[flaky " in chrome.find_element(By.ID, "log").text
    shot(chrome, "run")


def test_rows_chart_is_drawn(server: UiServer, chrome) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(server.url + "/rows?days=7")
    WebDriverWait(chrome, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, '.chart[data-drawn="1"] canvas'))
    canvas = chrome.find_element(By.CSS_SELECTOR, '.chart[data-pipeline="days"] canvas')
    assert canvas.size["width"] > 300 and canvas.size["height"] > 100
    # the chart painted something: some pixels of the canvas are not blank
    painted = chrome.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } return n;", canvas)
    assert painted > 1000
    legend = chrome.find_element(By.CSS_SELECTOR, '.chart[data-pipeline="days"] .u-legend').text
    assert "rows in table" in legend and "rows loaded by runs" in legend
    shot(chrome, "rows")


def test_refresh_control(server: UiServer, chrome) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    chrome.get(server.url + "/coverage?days=7")
    Select(chrome.find_element(By.NAME, "refresh")).select_by_value("30")
    chrome.find_element(By.ID, "refresh").click()
    WebDriverWait(chrome, 10).until(lambda d: "refresh=30" in d.current_url)
    assert "days=7" in chrome.current_url
    assert chrome.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"][content="30"]')


def test_tables_work_with_javascript_off(server: UiServer) -> None:
    from selenium.webdriver.common.by import By

    driver = browser(javascript=False)
    try:
        driver.get(server.url + "/rows?days=7")
        assert not driver.find_elements(By.CSS_SELECTOR, ".chart canvas")  # no script ran
        cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#rows-days table.counts td.num")]
        assert cells.count("6") == 10  # 5 days x (table, reported)
        driver.get(server.url + "/coverage?days=7")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid-days .cells .cell.done")) == 5
        driver.get(server.url + "/")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#pipelines tbody tr[id]")) == 4
        assert driver.find_element(By.ID, "graph").size["width"] > 100  # the graph is no script either
        driver.get(server.url + "/pipelines/flaky?status=failed")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr[id]")) == 1
        shot(driver, "no_javascript")
    finally:
        driver.quit()


def test_pipelines_table_fits_1280_px_and_the_graph_links_to_pipeline_pages(server: UiServer, chrome) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.set_window_size(1280, 1000)
    try:
        chrome.get(server.url + "/")
        table = chrome.find_element(By.ID, "pipelines")
        assert table.size["width"] <= 1280 - 16, table.size
        line = chrome.find_element(By.CSS_SELECTOR, "#pipeline-days td.when a").size["height"]
        stamps = chrome.find_elements(By.CSS_SELECTOR, "#pipelines td.when .nw, #pipelines td.when > a")
        assert len(stamps) >= 8
        for stamp in stamps:  # inline: its height is its number of lines (a cell's is its row's)
            assert stamp.size["height"] < 1.5 * line, stamp.text  # a timestamp stays on one line
        node = chrome.find_element(By.CSS_SELECTOR, "#graph #node-never")
        assert node.size["width"] > 100
        shot(chrome, "pipelines")
        chrome.find_element(By.CSS_SELECTOR, '#graph a[href="/pipelines/never"]').click()
        WebDriverWait(chrome, 10).until(lambda d: d.current_url.endswith("/pipelines/never"))
        chrome.get(server.url + "/pipelines/flaky")
        assert chrome.find_element(By.CSS_SELECTOR, "h1").text == "Pipeline flaky"
        assert len(chrome.find_elements(By.CSS_SELECTOR, "#open-failures tbody tr")) == 1
        shot(chrome, "pipeline")
        chrome.find_element(By.ID, "previous").click()
        WebDriverWait(chrome, 10).until(lambda d: "start=" in d.current_url)
        chrome.get(server.url + "/coverage?start=2015-01-01&end=2015-12-31")
        axis = [a.text for a in chrome.find_elements(By.CSS_SELECTOR, "#grid-days .axis")]
        assert axis == [f"2015-{m:02d}" for m in range(1, 13)]
        shot(chrome, "coverage_2015")
    finally:
        chrome.set_window_size(1400, 1000)
