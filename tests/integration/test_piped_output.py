"""Output that is not a terminal (a pipe, cron's redirection into logs/cron.log): never wrapped,
and tables as plain TSV (issue 23 §7, issue 29 "sql and ClickHouse habits")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env

LONG = "the source refused the request: " + " ".join(f"word{i}" for i in range(120))

MODULE = textwrap.dedent(f'''
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Refused(Extractor):
        interval_aware = True
        def extract(self, context):
            raise ValueError({LONG!r})

    PIPELINE_REGISTRY = {{
        "refused": {{"pipeline": create_el_pipeline(
            Refused("refused"), create_clickhouse_loader("refused_t", time_column="ts"), "refused")}},
    }}
''')


def piped(*args: str, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr pipes, as cron runs it: no COLUMNS unless given."""
    env = cli_env()
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, str(SRC / "main.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def tsv(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


@pytest.mark.parametrize("columns", [None, "80"])
def test_a_long_error_written_to_a_pipe_stays_one_line(pipelines_dir: Path, columns: str | None) -> None:
    (pipelines_dir / "refused_pipeline.py").write_text(MODULE)
    result = piped("cron_run", "refused", "--date", "2026-01-15", columns=columns)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("failed refused")]
    assert line == f"failed refused 2026-01-15 (error): ValueError: {LONG}"
    assert "word119" not in result.stderr.replace(line, "")


def test_piped_list_runs_and_check_print_tsv(project_env: dict[str, str]) -> None:
    assert piped("cron_run", "fixture_pipeline", "--date", "2026-01-15").returncode == 0

    listed = piped("list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = tsv(listed.stdout)
    assert header == ["name", "description", "schedule", "next run", "table", "depends on", "last run", "status",
                      "rows"]
    [row] = rows
    assert row[:6] == ["fixture_pipeline", "Framework test fixture: 16 sensor readings per day", "45 2 * * *",
                       row[3], "fixture_readings", "-"]
    assert row[7:] == ["success", "16"]

    shown = piped("runs")
    assert shown.returncode == 0, shown.stderr
    header, *rows = tsv(shown.stdout)
    assert header == ["run_id", "pipeline", "interval", "trigger", "status", "started", "duration", "rows", "checks",
                      "error"]
    [row] = rows
    assert row[1:5] == ["fixture_pipeline", "2026-01-15", "manual", "success"]
    assert row[6].endswith(" s") and row[7:] == ["16", "", ""]

    checked = piped("check")
    # 2026-01-15 loaded is not fresh data (freshness is on the data): 3, the data needs attention.
    assert checked.returncode == 3, checked.stderr
    checks, config = checked.stdout.split("\n\n")
    header, *rows = tsv(checks)
    assert header == ["check", "status", "detail"]
    assert rows and all(len(r) == 3 and r[1] in ("OK", "WARN", "FAIL") for r in rows)
    assert [r for r in rows if r[0] == "store"][0][:2] == ["store", "OK"]
    header, *rows = tsv(config)
    assert header == ["variable", "value"]
    assert ["DATA_DIR", project_env["DATA_DIR"]] in rows
    assert checked.stderr.strip().splitlines()[-1].startswith("set-up healthy, data needs attention")
