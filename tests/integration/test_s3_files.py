"""Files in an S3-compatible bucket (issue 24 §3), against moto's standalone S3 server on loopback,
through the real CLI: Parquet over a glob with interval placeholders pushed down to ClickHouse's
``s3()`` (the embedded engine or the server reads the bucket) and streamed in Python with the same
result; CSV and JSON Lines streamed; ``keep_interval_rows``; a named collection in a SQL pipeline;
a missing object, wrong credentials and an unreachable endpoint as one line each, no secret shown."""

from __future__ import annotations

import gzip
import io
import json
import socket
import textwrap
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SERVER_MODE, rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    import os
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    B = "s3://" + os.environ.get("TEST_BUCKET", "none")

    def pipeline(name, path, **options):
        extractor = create_file_extractor(B + path, **options)
        return {"pipeline": create_el_pipeline(extractor, create_clickhouse_loader(name, time_column="ts"), name)}

    PIPELINE_REGISTRY = {
        "pq_sql": pipeline("pq_sql", "/orders/{start_date}/*.parquet"),
        "pq_py": pipeline("pq_py", "/orders/{start_date}/*.parquet", columns=["id", "ts", "amount", "note"]),
        "csv_gz": pipeline("csv_gz", "/csv/{start_date}.csv.gz", types={"ts": "datetime"}),
        "csv_sql": pipeline("csv_sql", "/csv/{start_date}.csv"),
        "csv_two": pipeline("csv_two", "/csv2/{start_date}/*.csv"),
        "jsonl": pipeline("jsonl", "/json/**/*.jsonl", types={"ts": "datetime"}),
        "kept": pipeline("kept", "/all.parquet", keep_interval_rows="ts"),
        "missing": pipeline("missing", "/orders/{start_date}/nothing-*.parquet"),
        "broken": pipeline("broken", "/broken/{start_date}.parquet"),
        "mixed": pipeline("mixed", "/mixed/{start_date}/*.parquet"),
        "named": {"pipeline": create_sql_pipeline(
            "SELECT * FROM s3(test_orders_s3, filename = 'orders/2026-03-14/a.parquet', format = 'Parquet')",
            create_clickhouse_loader("named", time_column="ts"), name="named")},
    }
''')

DAY = datetime(2026, 3, 14, tzinfo=UTC)
SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", "UTC")), ("amount", pa.decimal128(12, 2)),
                    ("note", pa.string())])


def parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def orders(ids: list[int], day: datetime = DAY) -> pa.Table:
    return pa.table({"id": ids, "ts": [day.replace(hour=i % 24) for i in ids],
                     "amount": [Decimal(f"{i}.25") if i % 3 else None for i in ids],
                     "note": [f"ü{i}" if i % 2 else "" for i in ids]}, schema=SCHEMA)


@pytest.fixture
def bucket(s3_server, pipelines_dir: Path, project_env, monkeypatch: pytest.MonkeyPatch, db: Store) -> str:
    """A fresh bucket holding the test's objects, the pipelines module, credentials in the environment."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="orders/2026-03-14/a.parquet", Body=parquet(orders([1, 2, 3])))
    s3.put_object(Bucket=name, Key="orders/2026-03-14/b.parquet", Body=parquet(orders([4, 5])))
    s3.put_object(Bucket=name, Key="orders/2026-03-15/a.parquet", Body=parquet(orders([9], DAY.replace(day=15))))
    # In the folder ClickHouse lists (orders/2026-03-14/**) but not matched by the glob: never read.
    s3.put_object(Bucket=name, Key="orders/2026-03-14/deeper/c.parquet", Body=parquet(orders([100])))
    s3.put_object(Bucket=name, Key="orders/2026-03-14/a.parquet.bak", Body=parquet(orders([101])))
    s3.put_object(Bucket=name, Key="orders/2026-03-14/0-manifest.json", Body=b'{"files": 2}')
    s3.put_object(Bucket=name, Key="orders/2026-03-14/_SUCCESS", Body=b"")
    csv = b"id,ts,city\n1,2026-03-14 01:00:00,Windhoek\n2,2026-03-14 02:00:00,\n"
    s3.put_object(Bucket=name, Key="csv/2026-03-14.csv.gz", Body=gzip.compress(csv))
    s3.put_object(Bucket=name, Key="csv/2026-03-14.csv", Body=csv)
    s3.put_object(Bucket=name, Key="csv2/2026-03-14/a.csv", Body=csv)
    s3.put_object(Bucket=name, Key="csv2/2026-03-14/b.csv", Body=b"id,ts,city\n3,2026-03-14 03:00:00,Lima\n")
    s3.put_object(Bucket=name, Key="csv2/2026-03-14/old/c.csv", Body=b"id,ts,city\n4,2026-03-14 04:00:00,Oslo\n")
    s3.put_object(Bucket=name, Key="json/x/2026-03-14.jsonl",
                  Body=b'{"id": 1, "ts": "2026-03-14 05:00:00", "tags": {"a": 1}}\n'
                       b'{"id": 2, "ts": "2026-03-14 06:00:00"}\n')
    whole = pa.concat_tables([orders([1], DAY.replace(day=13)), orders([2, 3]), orders([4], DAY.replace(day=15))])
    s3.put_object(Bucket=name, Key="all.parquet", Body=parquet(whole))
    # A readable footer (the declared schema) over a page header ClickHouse cannot read.
    broken = bytearray(parquet(orders([1])))
    broken[4:24] = b"\xff" * 20
    s3.put_object(Bucket=name, Key="broken/2026-03-14.parquet", Body=bytes(broken))
    # Same names, but one file declares another type and one an extra column: not one s3() read.
    s3.put_object(Bucket=name, Key="mixed/2026-03-14/a.parquet", Body=parquet(orders([1, 2])))
    s3.put_object(Bucket=name, Key="mixed/2026-03-14/b.parquet",
                  Body=parquet(orders([3]).set_column(0, "id", pa.array([3], pa.int32()))))
    s3.put_object(Bucket=name, Key="mixed/2026-03-14/c.parquet",
                  Body=parquet(orders([4]).append_column("channel", pa.array(["web"]))))
    (pipelines_dir / "s3_pipeline.py").write_text(MODULE)
    for key, value in {**s3_server.env(), "TEST_BUCKET": name}.items():
        monkeypatch.setenv(key, value)
    assert run_cli("setup_db").returncode == 0
    return name


def job_log(project_env, name: str) -> str:
    return (Path(project_env["LOG_DIR"]) / "jobs" / f"{name}.log").read_text()


def test_parquet_glob_pushed_down_and_streamed_give_the_same_table(bucket: str, db: Store, project_env) -> None:
    for name in ("pq_sql", "pq_py"):
        result = run_cli("cron_run", name, "--date", "2026-03-14")
        assert result.returncode == 0, result.stdout + result.stderr
    pushed = "ClickHouse read 2 Parquet files itself: 5 rows, no Python in the data path"
    assert pushed in job_log(project_env, "pq_sql")  # embedded engine or server: it reads the bucket
    assert "no Python in the data path" not in job_log(project_env, "pq_py")
    assert f"5 rows from s3://{bucket}/orders/2026-03-14/" not in job_log(project_env, "pq_py")
    assert f"3 rows from s3://{bucket}/orders/2026-03-14/a.parquet" in job_log(project_env, "pq_py")
    expected = [(i, datetime(2026, 3, 14, i), Decimal(f"{i}.25") if i % 3 else None, f"ü{i}" if i % 2 else "")
                for i in range(1, 6)]
    types = {}
    for name in ("pq_sql", "pq_py"):
        assert rows(db, f"SELECT id, ts, amount, note FROM {name} ORDER BY id") == expected, name
        types[name] = rows(db, f"SELECT name, type FROM system.columns WHERE table = '{name}' "
                               f"AND database = currentDatabase() AND name != '_run_id' ORDER BY position")
    assert types["pq_sql"] == types["pq_py"]
    assert ("amount", "Nullable(Decimal(12, 2))") in types["pq_sql"]  # the files' declared types
    assert ("ts", "DateTime64(6, 'UTC')") in types["pq_sql"]  # the time column


def test_parquet_files_of_different_schemas_are_not_pushed_down(bucket: str, db: Store, project_env) -> None:
    result = run_cli("cron_run", "mixed", "--date", "2026-03-14")
    assert result.returncode == 0, result.stdout + result.stderr
    log = job_log(project_env, "mixed")
    assert "no Python in the data path" not in log
    for key, count in (("a", 2), ("b", 1), ("c", 1)):
        assert f"{count} rows from s3://{bucket}/mixed/2026-03-14/{key}.parquet" in log, log
    assert rows(db, "SELECT id, channel FROM mixed ORDER BY id") == [(1, None), (2, None), (3, None), (4, "web")]


def test_csv_pushed_down_or_streamed_json_lines_and_the_whole_file_kept_to_the_interval(bucket: str, db: Store,
                                                                                 project_env) -> None:
    for name in ("csv_gz", "csv_sql", "csv_two", "jsonl", "kept"):
        result = run_cli("cron_run", name, "--date", "2026-03-14")
        assert result.returncode == 0, (name, result.stdout + result.stderr)
    two = [(1, datetime(2026, 3, 14, 1), "Windhoek"), (2, datetime(2026, 3, 14, 2), None)]
    for name in ("csv_gz", "csv_sql"):
        assert rows(db, f"SELECT id, ts, city FROM {name} ORDER BY id") == two, name
    assert "ClickHouse read 2026-03-14.csv itself: 2 rows" in job_log(project_env, "csv_sql")
    # Two objects: one s3() over their folder, kept to the listed keys (old/c.csv is not read).
    assert rows(db, "SELECT id, ts, city FROM csv_two ORDER BY id") == [*two, (3, datetime(2026, 3, 14, 3), "Lima")]
    assert "ClickHouse read 2 CSV files itself: 3 rows" in job_log(project_env, "csv_two")
    assert "no Python in the data path" not in job_log(project_env, "csv_gz")
    assert rows(db, "SELECT id, ts, tags_a FROM jsonl ORDER BY id") == [
        (1, datetime(2026, 3, 14, 5), 1), (2, datetime(2026, 3, 14, 6), None)]
    assert rows(db, "SELECT id FROM kept ORDER BY id") == [(2,), (3,)]
    log = job_log(project_env, "kept")
    assert "kept 2 of 4 rows of the interval (dropped 2 outside it)" in log
    assert "ClickHouse read all.parquet itself" in log


@pytest.mark.embedded_only("on a server an administrator creates named collections (config or a user granted "
                            "CREATE NAMED COLLECTION); the test server's user has no such grant")
def test_named_collection_keeps_the_keys_out_of_a_sql_pipeline(bucket: str, s3_server, db: Store) -> None:
    db.command(f"CREATE NAMED COLLECTION test_orders_s3 AS url = '{s3_server.endpoint}/{bucket}/', "
               f"access_key_id = '{s3_server.key}', secret_access_key = '{s3_server.secret}'")
    try:
        db.close()
        result = run_cli("cron_run", "named", "--date", "2026-03-14", env={"AWS_SECRET_ACCESS_KEY": "unused"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert rows(db, "SELECT id FROM named ORDER BY id") == [(1,), (2,), (3,)]
    finally:
        db.command("DROP NAMED COLLECTION IF EXISTS test_orders_s3")
        db.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_missing_object_wrong_credentials_unreachable_endpoint(bucket: str, s3_server, project_env) -> None:
    cases = {
        "missing": ({}, f"no file matches s3://{bucket}/orders/2026-03-14/nothing-*.parquet"),
        "pq_sql": ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-8f7e6d"},
                   f"s3://{bucket}/orders/2026-03-14/*.parquet: S3 refused the credentials "
                   "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"),
        "pq_py": ({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"},
                  "cannot reach the S3 endpoint http://127.0.0.1:"),
        # ClickHouse reads the object itself and fails; on a server the error says the server read it
        "broken": ({}, f"connects to {s3_server.endpoint} itself and must reach it" if SERVER_MODE
                   else "ClickHouse could not read 2026-03-14.parquet: Code: 117"),
    }
    for name, (env, message) in cases.items():
        result = run_cli("cron_run", name, "--date", "2026-03-14", env=env)
        assert result.returncode == 1, (name, result.stdout + result.stderr)
        errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line.lower()]
        assert message in result.stderr, (name, result.stderr)
        [run] = [r for r in json.loads(run_cli("runs", "--json").stdout) if r["pipeline"] == name]
        assert message in run["error"] and "\n" not in run["error"].strip(), run["error"]
        texts = result.stdout + result.stderr + run["error"] + job_log(project_env, name)
        for secret in (s3_server.secret, "wrong-secret-8f7e6d"):
            assert secret not in texts, (name, texts)
        assert errors, result.stderr


@pytest.mark.same_in_both_runs("reads the bucket in Python only, no engine statement differs")
def test_key_variables_named_by_the_extractor_and_glob_meaning(s3_server, make_context,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from core.exceptions import ExtractError
    from pipelines.tools.extractors.file_extractor import create_file_extractor

    name = f"t-{uuid.uuid4().hex[:12]}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=name)
    for key in ("a/x.jsonl", "a/b/y.jsonl", "a/b/c/z.jsonl", "a/w1.jsonl", "a/w22.jsonl", "a/x.csv"):
        s3.put_object(Bucket=name, Key=key, Body=b'{"id": 1}\n')
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("LAKE_KEY", s3_server.key)
    context = make_context()

    def keys(pattern: str) -> list[str]:
        extractor = create_file_extractor(f"s3://{name}/{pattern}", key_env="LAKE_KEY", secret_env="LAKE_SECRET",
                                          allow_empty=True)
        return [str(f).split("/", 3)[3] for f in extractor.files(context)]

    with pytest.raises(ExtractError, match="LAKE_SECRET is not set .S3 needs both LAKE_KEY and LAKE_SECRET"):
        keys("a/*.jsonl")
    monkeypatch.setenv("LAKE_SECRET", s3_server.secret)
    assert keys("a/*.jsonl") == ["a/w1.jsonl", "a/w22.jsonl", "a/x.jsonl"]  # * stays within one segment
    assert keys("a/**/*.jsonl") == ["a/b/c/z.jsonl", "a/b/y.jsonl", "a/w1.jsonl", "a/w22.jsonl", "a/x.jsonl"]
    assert keys("a/w?.jsonl") == ["a/w1.jsonl"]
    assert keys("a/[wx]*.jsonl") == ["a/w1.jsonl", "a/w22.jsonl", "a/x.jsonl"]
    assert keys("a/x.jsonl") == ["a/x.jsonl"] and keys("a/none.jsonl") == []
    extractor = create_file_extractor(f"s3://{name}/a/**/*.jsonl", key_env="LAKE_KEY", secret_env="LAKE_SECRET")
    assert sum(t.num_rows for t in extractor.extract(context)) == 5
    # The endpoint and keys are read again for every run: a changed setting is taken at once.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ExtractError, match="cannot reach the S3 endpoint http://127.0.0.1:"):
        extractor.files(context)
