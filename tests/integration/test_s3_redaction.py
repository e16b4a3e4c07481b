"""Credentials in a query text never reach an error, a log or run history (issue 24 §3).

A SQL pipeline calling ``s3(url, key, secret, ...)`` that fails used to print the key and the
secret in the framework's ``(while running: ...)`` suffix: in the console, the job log,
``application.log`` and ``_dp_runs``. ClickHouse shows ``[HIDDEN]``; so does the framework now.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

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


@pytest.mark.same_in_both_runs("text only, no engine")
def test_query_credentials_are_masked_as_clickhouse_does() -> None:
    from core.redaction import Redactor, mask_query

    cases = {
        "SELECT * FROM s3('http://h/b/x.parquet', 'AKIAKEY1', 'SECRETv1', 'Parquet') WHERE 1":
            "SELECT * FROM s3('http://h/b/x.parquet', '[HIDDEN]', '[HIDDEN]', 'Parquet') WHERE 1",
        "s3('http://h/b/x.csv', 'CSVWithNames', 'a Int64')": "s3('http://h/b/x.csv', 'CSVWithNames', 'a Int64')",
        "s3('http://h/b/x', NOSIGN, 'CSV')": "s3('http://h/b/x', NOSIGN, 'CSV')",
        "s3Cluster(c, 'http://h/b/x', 'k1x', 's1x', 'tok1', 'JSONEachRow')":
            "s3Cluster(c, 'http://h/b/x', '[HIDDEN]', '[HIDDEN]', '[HIDDEN]', 'JSONEachRow')",
        "s3(coll, filename='x', secret_access_key = 'it''s', access_key_id='k2x')":
            "s3(coll, filename='x', secret_access_key = '[HIDDEN]', access_key_id='[HIDDEN]')",
        "postgresql('h:5432', 'db', 't', 'u', 'pw1', 'public')":
            "postgresql('h:5432', 'db', 't', 'u', '[HIDDEN]', 'public')",
        "CREATE NAMED COLLECTION c AS url = 'http://h/', secret_access_key = 'sss'":
            "CREATE NAMED COLLECTION c AS url = '[HIDDEN]', secret_access_key = '[HIDDEN]'",
        # a statement cut short inside the secret (an error message's first 200 characters)
        "INSERT INTO t SELECT * FROM s3('http://h/b/x.parquet', 'AKIAKEY1', 'SECR":
            "INSERT INTO t SELECT * FROM s3('http://h/b/x.parquet', '[HIDDEN]', '[HIDDEN]'",
        "s3({u:String}, {k:String}, {s:String}, 'Parquet')": "s3({u:String}, {k:String}, {s:String}, 'Parquet')",
    }
    for text, masked in cases.items():
        assert mask_query(text) == masked, text
        assert Redactor()(text) == masked, text
