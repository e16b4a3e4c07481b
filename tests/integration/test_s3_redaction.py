"""Credentials in a query text never reach an error, a log or run history (issue 24 §3).

A SQL pipeline calling ``s3(url, key, secret, ...)`` that fails used to print the key and the
secret in the framework's ``(while running: ...)`` suffix: in the console, the job log,
``application.log`` and ``_dp_runs``. ClickHouse shows ``[HIDDEN]``; so does the framework now.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import run_cli

KEY, SECRET = "AKIAQUERYKEY0001", "QuErYsEcReT/abc+def0123456789"

SQL_MODULE = textwrap.dedent('''
    import os
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    URL = os.environ["TEST_S3"] + "/missing-bucket/orders/{start_date}.parquet"
    PIPELINE_REGISTRY = {
        "s3_sql": {"pipeline": create_sql_pipeline(
            "SELECT * FROM s3('" + URL + "', 'THE_KEY', 'THE_SECRET', 'Parquet') SETTINGS s3_retry_attempts = 0",
            create_clickhouse_loader("orders", mode="append"), name="s3_sql")},
    }
''').replace("THE_KEY", KEY).replace("THE_SECRET", SECRET)


def test_failing_s3_query_masks_its_credentials_everywhere(pipelines_dir: Path, project_env, s3_server) -> None:
    (pipelines_dir / "s3_sql_pipeline.py").write_text(SQL_MODULE)
    result = run_cli("cron_run", "s3_sql", env={"TEST_S3": s3_server.endpoint})
    assert result.returncode == 1, result.stdout + result.stderr
    [run] = json.loads(run_cli("runs", "--json").stdout)
    logs = Path(project_env["LOG_DIR"])
    texts = {"console": result.stdout + result.stderr, "_dp_runs": run["error"],
             "job log": (logs / "jobs" / "s3_sql.log").read_text(),
             "application.log": (logs / "system" / "application.log").read_text()}
    for where, text in texts.items():
        for secret in (KEY, SECRET, SECRET.split("/")[0]):
            assert secret not in text, f"{secret} in the {where}: {text}"
    assert "while running:" in run["error"] and "'[HIDDEN]', '[HIDDEN]', 'Parquet'" in run["error"], run["error"]
    assert "missing-bucket" in run["error"]  # the rest of the statement stays readable
