"""The seed's layout and promises: scripts/run.py and scripts/backfill.py, the LICENSE, and a
pipeline added on a server (a deploy, a git pull) scheduled without a manual setup_cron."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, cli_env, run_cli

MODULE = textwrap.dedent('''
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.console_loader import create_console_loader

    class One(Extractor):
        def extract(self, context):
            yield pa.table({"n": [1]})

    PIPELINE_REGISTRY = {
        "hours": {"pipeline": create_el_pipeline(One("one"), create_console_loader(), "hours"),
                  "schedule": "0 2 * * *"},
    }
''')
ADDED = '''
PIPELINE_REGISTRY["pulled"] = {"pipeline": create_el_pipeline(One("one"), create_console_loader(), "pulled"),
                               "schedule": "30 5 * * *"}
'''


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], env=cli_env(), cwd="/",
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_scripts_run_and_backfill_are_the_commands(project_env) -> None:
    run = _script("run.py", "fixture_pipeline", "--date", "2026-01-15")
    assert run.returncode == 0, run.stderr
    assert "success fixture_pipeline 2026-01-15: 16 rows loaded (16 extracted)" in run.stdout
    filled = _script("backfill.py", "fixture_pipeline", "--start", "2026-01-14", "--end", "2026-01-16")
    assert filled.returncode == 0, filled.stderr
    assert "2 interval(s) to run, 1 skipped" in filled.stderr  # the day scripts/run.py loaded
    runs = json.loads(run_cli("runs", "fixture_pipeline", "--json").stdout)
    assert sorted((r["interval_start"][:10], r["trigger"]) for r in runs) == [
        ("2026-01-14", "backfill"), ("2026-01-15", "manual"), ("2026-01-16", "backfill")]
    usage = _script("run.py")
    assert usage.returncode == 2 and "Missing argument 'NAME'" in usage.stderr
    assert _script("run.py", "nope").returncode == 2


def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text


def _cron_check() -> dict:
    return next(c for c in json.loads(run_cli("check", "--json").stdout)["checks"] if c["name"] == "cron")


def test_a_pulled_pipeline_is_scheduled_by_the_next_cron_fired_run(pipelines_dir: Path,
                                                                   _private_crontab: Path) -> None:
    table = _private_crontab.parent / "table"
    (pipelines_dir / "shop_pipeline.py").write_text(MODULE)
    assert run_cli("setup_cron", "--all").returncode == 0
    (pipelines_dir / "shop_pipeline.py").write_text(MODULE + ADDED)  # a git pull adds a pipeline
    drift = _cron_check()
    assert drift["status"] == "fail" and "pulled missing" in drift["detail"]  # check reports the drift
    manual = run_cli("cron_run", "hours")
    assert manual.returncode == 0 and "cron_run pulled" not in table.read_text()  # only cron-fired runs sync
    fired = run_cli("cron_run", "hours", "--trigger", "cron")
    assert fired.returncode == 0, fired.stderr
    assert "Cron block re-synced with the pipelines: added pulled" in fired.stderr
    assert "30 5 * * * " in table.read_text() and "cron_run pulled --trigger cron" in table.read_text()
    assert _cron_check()["status"] == "ok"
    writes = (_private_crontab.parent / "calls").read_text().count("-\n")
    assert run_cli("cron_run", "pulled", "--trigger", "cron").returncode == 0
    assert (_private_crontab.parent / "calls").read_text().count("-\n") == writes  # in sync: not rewritten
    # A removed block stays removed: that is the user's decision, not drift.
    assert run_cli("remove_cron", "--all").returncode == 0
    assert run_cli("cron_run", "hours", "--trigger", "cron").returncode == 0
    assert not table.exists()
