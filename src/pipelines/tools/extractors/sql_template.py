"""The files of a new SQL pipeline, for the scaffolding command (``./run.sh new NAME --from sql``).

:func:`sql_pipeline_files` returns ``{relative path: text}``; the command writes them (refusing
to overwrite). The pipeline reads ``source_table`` for the run's day, the test creates that
table with three rows, runs the pipeline through the real CLI and checks the exact result.
"""

from __future__ import annotations

import re

from core.exceptions import UsageError

_MODULE = '''"""{title}: a SQL pipeline (runs inside ClickHouse), one day of {table} per run.

Its query is {name}.sql next to this file; {{start}} and {{end}} are bound as typed
DateTime64(6, 'UTC') parameters. See docs/sql-pipelines.md.
"""

from pipelines.tools.extractors.sql_source import create_sql_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {{
    "{name}": {{
        "pipeline": create_sql_pipeline(
            sql_file="{name}.sql",
            loader=create_clickhouse_loader("{table}", mode="interval", time_column="day"),
            name="{title}",
        ),
        "description": "Events per day from {source}",
        "depends_on": [{depends}],  # the pipeline(s) that write {source}
        "table_name": "{table}",
    }},
}}
'''

_SQL = '''-- {title}: one row per day of the run's interval.
SELECT
    toDate(event_time) AS day,
    count()            AS events
FROM {source}
WHERE event_time >= {{start}} AND event_time < {{end}}
GROUP BY day
'''

_TEST = '''"""{title}: the SQL pipeline through the real CLI, with exact rows."""

import shutil
from datetime import date
from pathlib import Path

from conftest import ROOT, rows, run_cli

SOURCE = ROOT / "src" / "pipelines"


def test_{name}_summarizes_one_day(pipelines_dir: Path, db) -> None:
    for file in ("{name}_pipeline.py", "{name}.sql"):
        shutil.copy(SOURCE / file, pipelines_dir / file)
    (pipelines_dir / "{name}_pipeline.py").write_text(
        (pipelines_dir / "{name}_pipeline.py").read_text().replace('"depends_on": [{depends}]', '"depends_on": []'))
    assert run_cli("setup_db").returncode == 0
    for statement in (
        "CREATE TABLE IF NOT EXISTS {source} (event_time DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY event_time",
        "INSERT INTO {source} VALUES ('2026-01-15 08:00:00'), ('2026-01-15 23:59:59'), ('2026-01-16 00:00:00')",
    ):
        result = run_cli("sql", "--write", statement)
        assert result.returncode == 0, result.stderr
    result = run_cli("cron_run", "{name}", "--date", "2026-01-15")
    assert result.returncode == 0, result.stderr
    assert rows(db, "SELECT day, events FROM {table} ORDER BY day") == [(date(2026, 1, 15), 2)]
'''


def sql_pipeline_files(name: str, source_table: str = "source_events", upstream: str | None = None,
                       table: str | None = None) -> dict[str, str]:
    """Module, query and test of a new SQL pipeline ``name`` reading ``source_table``.

    ``upstream`` is the pipeline that writes ``source_table`` (its ``depends_on``); ``table``
    the derived table (default ``name``).
    """
    for what, value in (("name", name), ("source table", source_table), ("table", table or name)):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise UsageError(f"the {what} must be a plain identifier (letters, digits, _), got '{value}'")
    values = {"name": name, "title": name.replace("_", " ").capitalize(), "table": table or name,
              "source": source_table, "depends": f'"{upstream}"' if upstream else ""}
    return {
        f"src/pipelines/{name}_pipeline.py": _MODULE.format(**values),
        f"src/pipelines/{name}.sql": _SQL.format(**values),
        f"tests/integration/test_{name}_pipeline.py": _TEST.format(**values),
    }
