"""Cron entries against the real ``crontab`` command, and an installed entry run the way cron runs it.

Every test but one uses its private crontab (conftest: a file behind CRONTAB_COMMAND); the real
``crontab`` command is exercised for a throw-away user (``crontab -u``), never for whoever runs the
tests.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ROOT, SERVER_MODE, SRC, cli_env, require_tool, run_cli

MODULE = textwrap.dedent('''
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Rows(Extractor):
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})

    def pipe(table):
        return create_el_pipeline(Rows("rows"), create_clickhouse_loader(table), table)

    PIPELINE_REGISTRY = {
        "hours": {"pipeline": pipe("hours_t"), "schedule": "0 2 * * *", "description": "daily at 2"},
        "berlin": {"pipeline": pipe("berlin_t"), "schedule": "BERLIN_SCHEDULE", "timezone": "Europe/Berlin"},
        "manual": {"pipeline": pipe("manual_t")},
        "paused": {"pipeline": pipe("paused_t"), "schedule": "0 5 * * *", "enabled": False},
    }
''')

OTHER = ("MAILTO=''\n# my own backup\n5 4 * * * /usr/local/bin/backup --all\n"
         "# BEGIN data-processor /srv/other-project\n0 1 * * * /srv/other-project/run.sh cron_run x\n"
         "# END data-processor /srv/other-project\n")


class Crontab:
    """A crontab as the code under test sees it (through CRONTAB_COMMAND), with its call log."""

    def __init__(self, command: str, calls: Path) -> None:
        self.command, self.calls = command, calls

    def read(self) -> str:
        result = subprocess.run([self.command, "-l"], capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    def write(self, text: str) -> None:
        if text.strip():
            subprocess.run([self.command, "-"], input=text, text=True, check=True)
        else:
            subprocess.run([self.command, "-r"], capture_output=True)

    def block(self) -> list[str]:
        from ops.cron import split_block

        return split_block(self.read(), ROOT)[1] or []

    def writes(self) -> int:
        lines = self.calls.read_text().splitlines() if self.calls.exists() else []
        return sum(1 for line in lines if line.strip().endswith(("-", "-r")))


@pytest.fixture
def crontab(_private_crontab: Path) -> Crontab:
    """The test's private crontab (conftest): a file, never the real crontab of whoever runs the tests."""
    return Crontab(str(_private_crontab), _private_crontab.parent / "calls")


# One user per suite mode: CI runs the embedded and the server-mode suites at the same time.
THROWAWAY_USER = "dp-crontab-test-srv" if SERVER_MODE else "dp-crontab-test"


@pytest.fixture
def real_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Crontab]:
    """The real ``crontab`` command, for a throw-away user (``crontab -u``): the crontab of whoever
    runs the tests is never touched, even if the test is killed. Needs root (CI runs as root)."""
    real = require_tool("crontab")
    if os.geteuid() != 0:
        message = "the real-crontab test edits a throw-away user's crontab (crontab -u): needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if subprocess.run(["id", "-u", THROWAWAY_USER], capture_output=True).returncode != 0:
        subprocess.run([require_tool("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        THROWAWAY_USER], check=True, capture_output=True)
    subprocess.run([real, "-u", THROWAWAY_USER, "-r"], capture_output=True)  # start from no crontab
    calls = tmp_path / "real-crontab-calls"
    wrapper = tmp_path / "crontab-u"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{real}" -u {THROWAWAY_USER} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CRONTAB_COMMAND", str(wrapper))
    yield Crontab(str(wrapper), calls)
    subprocess.run([real, "-u", THROWAWAY_USER, "-r"], capture_output=True)


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    not_now = (datetime.now(UTC).minute + 30) % 60  # never due while the test runs
    (pipelines_dir / "test_pipeline.py").write_text(MODULE.replace("BERLIN_SCHEDULE", f"{not_now} 3 * * *"))
    return pipelines_dir


def test_setup_cron_all_syncs_only_its_block(real_crontab: Crontab, module: Path, project_env) -> None:
    crontab = real_crontab
    before = crontab.read()
    crontab.write(OTHER + before)
    result = run_cli("setup_cron", "--all")
    assert result.returncode == 0, result.stderr
    assert "added hours" in result.stdout and "added berlin" in result.stdout
    assert "crontab updated: 2 pipeline(s)" in result.stdout
    text = crontab.read()
    assert text.startswith(OTHER + before)  # the user's lines and the other project's block are intact
    block = crontab.block()
    log = Path(project_env["LOG_DIR"]) / "cron.log"
    env_file = Path(project_env["ENV_FILE"])
    assert f"0 2 * * * cd {ROOT} && ENV_FILE={env_file} {ROOT}/run.sh cron_run hours --trigger cron >> {log} 2>&1" \
        in block
    assert "# pipeline hours: 0 2 * * *" in block
    berlin = [line for line in block if "cron_run berlin" in line]
    assert len(berlin) == 1 and berlin[0].split()[1] == "1,2" and "--if-due" in berlin[0]
    assert not any("manual" in line or "paused" in line for line in block)
    assert any(line.startswith("17 4 * * * ") and "run.sh clean --quiet" in line for line in block)

    writes = crontab.writes()
    again = run_cli("setup_cron", "--all")
    assert again.returncode == 0 and "crontab unchanged: 2 pipeline(s) already in sync" in again.stdout
    assert crontab.writes() == writes  # identical content: crontab - was not even called
    assert crontab.read() == text
    status = run_cli("cron_status")
    assert status.returncode == 0 and "in sync" in status.stdout

    # A pipeline removed from the code: out of sync (status and check), then its entry goes.
    (module / "test_pipeline.py").write_text(MODULE.replace('"berlin"', '"#berlin"').replace(
        '    "#berlin": {"pipeline": pipe("berlin_t"), "schedule": "BERLIN_SCHEDULE", "timezone": "Europe/Berlin"},\n',
        ""))
    status = run_cli("cron_status", "--json")
    assert status.returncode == 1
    states = {e["name"]: e["state"] for e in json.loads(status.stdout)["entries"]}
    assert states == {"hours": "ok", "berlin": "extra", "clean": "ok"}
    check = json.loads(run_cli("check", "--json").stdout)
    cron_check = next(c for c in check["checks"] if c["name"] == "cron")
    assert cron_check["status"] == "fail" and "berlin extra" in cron_check["detail"] and check["healthy"] is False
    synced = run_cli("setup_cron", "--all")
    assert synced.returncode == 0 and "removed berlin" in synced.stdout
    assert not any("berlin" in line for line in crontab.block())

    removed = run_cli("remove_cron", "hours")
    assert removed.returncode == 0 and "removed hours" in removed.stdout
    assert crontab.block() == [] and crontab.read() == OTHER + before  # no pipeline left: no block at all
    assert run_cli("remove_cron", "hours").stdout.strip() == "'hours' has no cron entry; nothing removed"


def test_setup_one_and_bad_input(crontab: Crontab, module: Path) -> None:
    one = run_cli("setup_cron", "hours")
    assert one.returncode == 0 and "added hours" in one.stdout
    assert [line.split(" cd ")[0] for line in crontab.block() if not line.startswith("#")] == \
        ["0 2 * * *", "17 4 * * *"]
    no_schedule = run_cli("setup_cron", "manual")
    assert no_schedule.returncode == 1
    assert "error: pipeline 'manual' has no schedule; set 'schedule' in its entry in" in no_schedule.stderr
    paused = run_cli("setup_cron", "paused")
    assert paused.returncode == 1 and "pipeline 'paused' is disabled" in paused.stderr
    unknown = run_cli("setup_cron", "nope")
    assert unknown.returncode == 2 and "No pipeline named 'nope'" in unknown.stderr
    assert run_cli("setup_cron").returncode == 2
    assert "give a pipeline NAME or --all" in run_cli("setup_cron", "hours", "--all").stderr
    assert run_cli("remove_cron").returncode == 2
    gone = run_cli("remove_cron", "--all")
    assert gone.returncode == 0 and "removed hours" in gone.stdout and crontab.block() == []


def test_broken_module_keeps_its_pipelines_entries(crontab: Crontab, module: Path) -> None:
    (module / "extra_pipeline.py").write_text(MODULE.replace("BERLIN_SCHEDULE", "0 3 * * *")
                                              .replace('"hours"', '"extra"').replace('"berlin"', '"b2"')
                                              .replace('"manual"', '"m2"').replace('"paused"', '"p2"'))
    assert run_cli("setup_cron", "--all").returncode == 0
    (module / "extra_pipeline.py").write_text("import nowhere_to_be_found\n")
    result = run_cli("setup_cron", "--all")
    assert result.returncode == 1
    assert "warning: kept the entry of 'extra'" in result.stderr
    assert "error: broken pipeline module" in result.stderr and "No module named 'nowhere_to_be_found'" in result.stderr
    assert any("cron_run extra " in line for line in crontab.block())
    check = json.loads(run_cli("check", "--json").stdout)
    pipelines = next(c for c in check["checks"] if c["name"] == "pipelines")
    assert pipelines["status"] == "fail" and "extra_pipeline.py:1: ModuleNotFoundError" in pipelines["detail"]


def test_without_crontab_command(module: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRONTAB_COMMAND", str(tmp_path / "no-such-crontab"))
    result = run_cli("setup_cron", "--all")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: the 'crontab' command is not installed (Debian/Ubuntu: apt-get install "
                                     "cron); on hosts without cron run ./run.sh scheduler instead")
    check = json.loads(run_cli("check", "--json").stdout)
    cron_check = next(c for c in check["checks"] if c["name"] == "cron")
    assert cron_check["status"] == "warn" and "use ./run.sh scheduler" in cron_check["detail"]


@pytest.mark.slow
def test_installed_entry_runs_like_cron_runs_it(crontab: Crontab, module: Path, project_env) -> None:
    """No cron daemon here: run the installed command as cron would, with /bin/sh -c and only
    HOME and PATH=/usr/bin:/bin (no venv, no exported settings: they come from ENV_FILE)."""
    env_file = Path(project_env["ENV_FILE"])
    keys = ("DATA_DIR", "LOG_DIR", "RUN_DIR", "PIPELINES_DIR", "STORE_LOCK_TIMEOUT",
            *(k for k in project_env if k.startswith("CLICKHOUSE_")))  # the server, in server mode
    env_file.write_text("".join(f"{k}={project_env[k]}\n" for k in keys))
    assert run_cli("setup_cron", "--all").returncode == 0
    commands = {}
    for line in crontab.block():
        if not line.startswith("#"):
            fields = line.split(None, 5)
            commands[fields[5].split(" cron_run ")[-1].split()[0] if "cron_run" in line else "clean"] = fields[5]
    minimal = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin"}
    for name in ("hours", "berlin"):
        done = subprocess.run(["/bin/sh", "-c", commands[name]], env=minimal, cwd="/", capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout == "" and done.stderr == ""  # all output went to cron.log
    runs = json.loads(run_cli("runs", "--json").stdout)
    assert [(r["pipeline"], r["trigger"], r["status"], r["rows_loaded"]) for r in runs] == [
        ("hours", "cron", "success", 3)]
    cron_log = (Path(project_env["LOG_DIR"]) / "cron.log").read_text()
    # Not interval-aware: it runs "now"; its recorded interval is (previous fire, this fire).
    from runner.schedule import cron_zone, previous_fire

    since = previous_fire("0 2 * * *", cron_zone(), datetime.now(UTC))
    assert runs[0]["interval_start"][:16] == f"{since:%Y-%m-%dT%H:%M}"
    assert f"success hours {since.isoformat()}/" in cron_log and ": 3 rows loaded" in cron_log
    assert f"Run {runs[0]['run_id']} started: pipeline hours" in cron_log
    assert "berlin: not due at " in cron_log and "Europe/Berlin (schedule '" in cron_log  # --if-due said no
    cleaned = subprocess.run(["/bin/sh", "-c", commands["clean"]], env=minimal, capture_output=True, timeout=120)
    assert cleaned.returncode == 0


def test_a_check_entry_that_alerts_on_stale_data(crontab: Crontab, module: Path, project_env) -> None:
    env_file = Path(project_env["ENV_FILE"])
    env_file.write_text("CHECK_CRON_SCHEDULE='*/15 * * * *'\n")
    result = run_cli("setup_cron", "--all")
    assert result.returncode == 0 and "added check" in result.stdout
    assert "crontab updated: 2 pipeline(s)" in result.stdout
    block = crontab.block()
    log = Path(project_env["LOG_DIR"]) / "cron.log"
    assert "# maintenance check: health and freshness, alerts on stale data" in block
    assert f"*/15 * * * * cd {ROOT} && ENV_FILE={env_file} {ROOT}/run.sh check --alert --quiet >> {log} 2>&1" in block
    assert block[-3].startswith("*/15 ") and block[-1].startswith("17 4 * * * ")  # check, then clean, last
    status = run_cli("cron_status", "--json")
    assert status.returncode == 0
    assert {e["name"]: e["state"] for e in json.loads(status.stdout)["entries"]}["check"] == "ok"
    assert "cron block in sync: 2 pipeline(s)" in run_cli("check").stdout
    env_file.write_text("")
    removed = run_cli("setup_cron", "--all")
    assert removed.returncode == 0 and "removed check" in removed.stdout
    assert not any("check --alert" in line for line in crontab.block())


def test_setup_cron_name_stays_that_choice_when_cron_re_syncs(crontab: Crontab, module: Path) -> None:
    """setup_cron NAME installs one pipeline, and the cron fires keep it so (issue 29); --all is kept too."""
    assert run_cli("setup_cron", "hours").returncode == 0
    fired = run_cli("cron_run", "hours", "--trigger", "cron")
    assert fired.returncode == 0, fired.stderr
    assert "re-synced" not in fired.stdout + fired.stderr
    assert [line for line in crontab.block() if "cron_run" in line and not line.startswith("#")] == \
        [line for line in crontab.block() if "cron_run hours " in line and not line.startswith("#")]
    assert len([line for line in crontab.block() if "cron_run" in line]) == 1
    status = run_cli("cron_status", "--json")
    assert status.returncode == 0, status.stdout  # berlin is not "missing": it was never chosen
    assert {e["name"]: e["state"] for e in json.loads(status.stdout)["entries"]} == {"hours": "ok", "clean": "ok"}
    # A chosen pipeline whose schedule changed is still updated by a fire.
    (module / "test_pipeline.py").write_text((module / "test_pipeline.py").read_text().replace(
        '"schedule": "0 2 * * *"', '"schedule": "0 6 * * *"'))
    drifted = run_cli("cron_status")
    assert drifted.returncode == 1
    assert "out of sync: run ./run.sh setup_cron NAME for a changed pipeline" in drifted.stdout
    assert run_cli("cron_run", "hours", "--trigger", "cron").returncode == 0
    assert [line.split(" cd ")[0] for line in crontab.block() if "cron_run" in line and not line.startswith("#")] \
        == ["0 6 * * *"]
    # --all is a choice too, and so is removing one pipeline from it.
    assert run_cli("setup_cron", "--all").returncode == 0
    assert any("cron_run berlin" in line for line in crontab.block())
    assert run_cli("remove_cron", "berlin").returncode == 0
    assert run_cli("cron_run", "hours", "--trigger", "cron").returncode == 0
    assert not any("cron_run berlin" in line for line in crontab.block())
    assert run_cli("cron_status").returncode == 0


def test_a_cron_fire_writes_each_message_once(crontab: Crontab, project_env) -> None:
    """What a fire says reaches cron.log once (cron sends stdout and stderr to the same file)."""
    log = Path(project_env["LOG_DIR"]) / "fire.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:  # 02:45 fired, 03:00 is not a fire of '45 2 * * *': nothing to do
        done = subprocess.run([sys.executable, str(SRC / "main.py"), "cron_run", "fixture_pipeline", "--trigger",
                               "cron", "--fired-at", "2026-01-15T03:00Z"], env=cli_env(), cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0
    text = log.read_text()
    assert text.count("fixture_pipeline: no complete interval ended in") == 1, text
