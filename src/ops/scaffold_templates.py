"""The files ``./run.sh new NAME --from http|db|file|sql`` writes (see :mod:`ops.scaffold`).

Placeholders: ``__NAME__`` (the pipeline and table name), ``__URL_SETTING__`` (the setting holding
the source's URL: :func:`ops.scaffold.url_setting`), ``__SOURCE__`` (http, db or file).
``{database}``/``{cluster}`` in the migration and ``{start_date}``-style placeholders in sources
are the framework's own and stay as they are.
Every template describes the same small records (id, name, amount, created_at), so the module,
its migration and its test agree as written.
"""

from __future__ import annotations

MIGRATION = """\
-- The table of the __NAME__ pipeline (written by ./run.sh new __NAME__ --from __SOURCE__): edit the
-- columns to fit your data before the first ./run.sh migrate. Daily partitions, so a run (one
-- day) replaces exactly its own rows.
CREATE TABLE IF NOT EXISTS {database}.__NAME__{cluster}
(
    id          UInt64,
    name        String,
    amount      Nullable(Float64),
    created_at  DateTime64(3, 'UTC'),
    _dp_run_id  String
)
ENGINE = MergeTree
PARTITION BY toDate(created_at)
ORDER BY (created_at, id);
"""

MIGRATION_DOWN = """\
-- Undo the __NAME__ table's migration: drops the table and its data.
DROP TABLE IF EXISTS {database}.__NAME__{cluster} SYNC;
"""



def _registry(description: str) -> str:
    """The module's PIPELINE_REGISTRY: one daily pipeline (the same in every template)."""
    return f'''
PIPELINE_REGISTRY = {{
    "__NAME__": {{
        "pipeline": create___NAME___pipeline(),
        "description": "{description}",
        "schedule": "30 2 * * *",  # daily at 02:30
__TABLE_NAME__    }},
}}
'''


CLICKHOUSE_LOADER = """create_clickhouse_loader("__NAME__", time_column="created_at")"""
CONSOLE_LOADER = """create_console_loader("__NAME__")"""

_TYPES = """{"id": "int", "amount": "float", "created_at": "datetime"}"""

HTTP_MODULE = '''\
"""__NAME__: JSON records from an HTTP API, one day per run (written by ./run.sh new __NAME__ --from http).

The API's address is the setting __URL_SETTING__ (in .env or the environment), e.g.
``__URL_SETTING__=https://api.example.com/__NAME__``; each run asks it for its own day with
``?start=YYYY-MM-DD&end=YYYY-MM-DD`` and expects a JSON array of records. Adapt the URL, the
query parameters (see docs/connectors.md: pagination, auth) and the types to your API.
"""

from core.exceptions import ConfigError
from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.extractors.http_extractor import HttpExtractor
__LOADER_IMPORT__
from pipelines.tools.transformers.transformers import create_type_transformer

URL_SETTING = "__URL_SETTING__"


class __CLASS__Api(HttpExtractor):
    """The built-in HTTP extractor, with the API's address read from the settings at run time."""

    def extract(self, context):
        base = context.settings.extra(URL_SETTING)
        if not base:
            raise ConfigError(f"__NAME__: set {URL_SETTING} (the API's URL) in .env or the environment")
        self.url = base.rstrip("/") + "?start={start_date}&end={end_date}"
        return super().extract(context)


def create___NAME___pipeline():
    return create_etl_pipeline(
        extractor=__CLASS__Api("https://api.invalid/?start={start_date}&end={end_date}", name="__NAME__ API"),
        transformer=create_type_transformer(''' + _TYPES + ''', name="__NAME__ types"),
        loader=__LOADER__,
        name="__NAME__",
    )

''' + _registry("__NAME__ records from an HTTP API")

DB_MODULE = '''\
"""__NAME__: rows of a SQL database, one day per run (written by ./run.sh new __NAME__ --from db).

The database is the setting __URL_SETTING__ (in .env or the environment), a SQLAlchemy URL such as
``postgresql+psycopg2://user:password@host/db`` or ``sqlite:///path/to/file.db`` (install the
driver your database needs). Each run reads the rows whose ``created_at`` is in its day.
"""

from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.extractors.db_extractor import create_db_extractor
__LOADER_IMPORT__
from pipelines.tools.transformers.transformers import create_type_transformer

QUERY = """
    SELECT id, name, amount, created_at
    FROM __NAME__
    WHERE created_at >= :start_date AND created_at < :end_date
"""


def create___NAME___pipeline():
    return create_etl_pipeline(
        extractor=create_db_extractor(url_env="__URL_SETTING__", query=QUERY, name="__NAME__ database"),
        transformer=create_type_transformer(''' + _TYPES + ''', name="__NAME__ types"),
        loader=__LOADER__,
        name="__NAME__",
    )

''' + _registry("__NAME__ rows from a SQL database")

FILE_MODULE = '''\
"""__NAME__: one CSV file per day, one day per run (written by ./run.sh new __NAME__ --from file).

Each run reads ``data/samples/__NAME__/<its day>.csv`` (a sample day, 2026-01-15, is there);
point SOURCE at where your files arrive, e.g. ``/srv/incoming/__NAME__-{start_date}.csv``. A day
without its file fails the run (nothing is loaded, the run says which file is missing).
"""

from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
__LOADER_IMPORT__

SOURCE = "data/samples/__NAME__/{start_date}.csv"


def create___NAME___pipeline():
    return create_el_pipeline(
        create_file_extractor(SOURCE, types=''' + _TYPES + ''', name="__NAME__ files"),
        __LOADER__,
        "__NAME__",
    )

''' + _registry("__NAME__ rows from daily CSV files")

SAMPLE_CSV = """\
id,name,amount,created_at
1,alpha,9.5,2026-01-15T08:00:00Z
2,beta,,2026-01-15T12:30:00Z
3,gamma,7.25,2026-01-15T23:59:59Z
"""

_TEST_HEAD = '''\
"""Tests of the __NAME__ pipeline (written by ./run.sh new __NAME__ --from __SOURCE__): change them
with the pipeline. They run it against a throw-away embedded store (docs/testing.md)."""

from datetime import date

import pytest

from pipelines.testing import TestProject

DAY = date(2026, 1, 15)
'''

_TEST_TAIL = '''

@pytest.fixture
def project(tmp_path, source):
    with TestProject(tmp_path / "project") as project:
        yield project


def test_one_day(project):
    result = project.run("__NAME__", day=DAY)
    assert result.status == "success", result.error
    assert result.record.rows_loaded == 3
__ROWS_ASSERTIONS__

def test_a_rerun_replaces_the_day(project):
    first = project.run("__NAME__", day=DAY)
    again = project.run("__NAME__", day=DAY)
    assert first.ok and again.ok, again.error
__RERUN_ASSERTIONS__'''

ROWS_ASSERTIONS = '''\
    assert sorted(row["id"] for row in result.rows) == [1, 2, 3]
    assert {row["id"]: row["amount"] for row in result.rows}[2] is None  # a missing amount stays NULL
'''
CONSOLE_ROWS_ASSERTIONS = '''\
    assert result.record.rows_extracted == 3
'''
RERUN_ASSERTIONS = '''\
    assert project.query("SELECT count() AS n FROM __NAME__") == [{"n": 3}]
'''
CONSOLE_RERUN_ASSERTIONS = '''\
    assert again.record.rows_loaded == 3
'''

HTTP_TEST = _TEST_HEAD.replace("import pytest", '''import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest''') + '''
RECORDS = [
    {"id": 1, "name": "alpha", "amount": 9.5, "created_at": "2026-01-15T08:00:00Z"},
    {"id": 2, "name": "beta", "amount": None, "created_at": "2026-01-15T12:30:00Z"},
    {"id": 3, "name": "gamma", "amount": 7.25, "created_at": "2026-01-15T23:59:59Z"},
    {"id": 4, "name": "delta", "amount": 1.0, "created_at": "2026-01-16T00:00:00Z"},
]


class Api(BaseHTTPRequestHandler):
    """A stand-in for the real API on 127.0.0.1: the records of the asked days."""

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        start, end = query["start"][0], query["end"][0]
        body = json.dumps([r for r in RECORDS if start <= r["created_at"][:10] < end]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def source(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("__URL_SETTING__", f"http://127.0.0.1:{server.server_port}/__NAME__")
    yield
    server.shutdown()
    server.server_close()
''' + _TEST_TAIL

DB_TEST = _TEST_HEAD.replace("from datetime import date", "import sqlite3\nfrom datetime import date") + '''

@pytest.fixture
def source(tmp_path, monkeypatch):
    """A SQLite database standing in for the real one."""
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE __NAME__ (id INTEGER, name TEXT, amount REAL, created_at TEXT)")
        db.executemany("INSERT INTO __NAME__ VALUES (?, ?, ?, ?)", [
            (1, "alpha", 9.5, "2026-01-15 08:00:00"), (2, "beta", None, "2026-01-15 12:30:00"),
            (3, "gamma", 7.25, "2026-01-15 23:59:59"), (4, "delta", 1.0, "2026-01-16 00:00:00")])
    db.close()
    monkeypatch.setenv("__URL_SETTING__", f"sqlite:///{path}")
''' + _TEST_TAIL

FILE_TEST = _TEST_HEAD + '''

@pytest.fixture
def source():
    """The sample day in data/samples/__NAME__/ (replace it, and this test, with your own data)."""
''' + _TEST_TAIL + '''

def test_a_day_without_its_file_fails(project):
    result = project.run("__NAME__", day=date(2026, 1, 16))
    assert result.status == "failed" and "2026-01-16.csv" in result.error
'''

# ---- --from sql: a SQL pipeline (the T of ELT), its .sql file, its derived table and its test ----

SQL_SOURCE_TABLE = "source_events"

SQL_MIGRATION = """\
-- The table of the __NAME__ SQL pipeline (written by ./run.sh new __NAME__ --from sql): one row
-- per day, rebuilt one day at a time by the interval loader (a re-run replaces its day). Edit the
-- columns with the query in src/pipelines/__NAME__.sql before the first ./run.sh migrate.
CREATE TABLE IF NOT EXISTS {database}.__NAME__{cluster}
(
    day         Date,
    events      UInt64,
    _dp_run_id  String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY day;
"""

SQL_MODULE = '''\
"""__NAME__: a SQL pipeline (runs inside ClickHouse), one day of ''' + SQL_SOURCE_TABLE + ''' per run
(written by ./run.sh new __NAME__ --from sql).

Its query is __NAME__.sql next to this file; {start} and {end} are bound as typed
DateTime64(6, 'UTC') parameters. Point the query at your table and list the pipeline that
writes it in ``depends_on``: this one then runs after each of its successful days, and
``backfill`` refuses days it has not completed. See docs/sql-pipelines.md.
"""

from pipelines.tools.extractors.sql_source import create_sql_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader


def create___NAME___pipeline():
    return create_sql_pipeline(
        sql_file="__NAME__.sql",
        loader=create_clickhouse_loader("__NAME__", mode="interval", time_column="day"),
        name="__NAME__",
    )

''' + _registry("__NAME__: events per day, computed in ClickHouse").replace(
    "__TABLE_NAME__",
    '        "depends_on": [],  # the pipeline(s) that write ' + SQL_SOURCE_TABLE + "\n__TABLE_NAME__")

SQL_QUERY = """\
-- __NAME__: one row per day of the run's interval (written by ./run.sh new __NAME__ --from sql).
SELECT
    toDate(event_time) AS day,
    count()            AS events
FROM """ + SQL_SOURCE_TABLE + """
WHERE event_time >= {start} AND event_time < {end}
GROUP BY day
"""

SQL_TEST = _TEST_HEAD + '''

@pytest.fixture
def project(tmp_path):
    """The project with a stand-in for the table the query reads (three events, two on DAY)."""
    with TestProject(tmp_path / "project") as project:
        project.store.create_database()
        project.store.command("CREATE TABLE ''' + SQL_SOURCE_TABLE + ''' (event_time DateTime64(3, 'UTC')) "
                              "ENGINE = MergeTree ORDER BY event_time")
        project.store.command("INSERT INTO ''' + SQL_SOURCE_TABLE + ''' VALUES ('2026-01-15 08:00:00'), "
                              "('2026-01-15 23:59:59'), ('2026-01-16 00:00:00')")
        yield project


def test_one_day(project):
    result = project.run("__NAME__", day=DAY)
    assert result.status == "success", result.error
    assert [(row["day"], row["events"]) for row in result.rows] == [(DAY, 2)]


def test_a_rerun_replaces_the_day(project):
    first = project.run("__NAME__", day=DAY)
    again = project.run("__NAME__", day=DAY)
    assert first.ok and again.ok, again.error
    assert project.query("SELECT day, events FROM __NAME__") == [{"day": DAY, "events": 2}]
'''
