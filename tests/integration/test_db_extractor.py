"""Database extractor on real SQLite files (PostgreSQL is not required here)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from core.exceptions import ConfigError, ExtractError
from pipelines.tools.extractors.db_extractor import create_db_extractor


@pytest.fixture
def shop(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, note TEXT, "
                "updated_at TEXT)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", [
        (i, f"c{i % 3}", i * 1.5, None if i % 2 else "n", f"2026-01-{10 + i // 4:02d} {i % 24:02d}:00:00")
        for i in range(1, 21)
    ])
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def read(extractor, context) -> list[pa.Table]:
    return list(extractor.extract(context))


def test_table_in_batches(shop: str, make_context) -> None:
    context = make_context()
    batches = read(create_db_extractor(shop, table="orders", batch_size=8), context)
    assert [b.num_rows for b in batches] == [8, 8, 4]
    table = pa.concat_tables(batches)
    assert table.column("id").to_pylist() == list(range(1, 21))
    assert table.schema.field("amount").type == pa.float64()
    # 'note' is null in odd rows: the type found earlier holds across batches.
    assert {b.schema.field("note").type for b in batches} == {pa.string()}


def test_query_with_interval_binds(shop: str, make_context) -> None:
    ext = create_db_extractor(shop, "SELECT id, customer FROM orders "
                                    "WHERE updated_at >= :start_date AND updated_at < :end_date ORDER BY id")
    assert ext.interval_aware
    context = make_context(start=datetime(2026, 1, 11, tzinfo=UTC))
    (batch,) = read(ext, context)
    assert batch.column("id").to_pylist() == [4, 5, 6, 7]


def test_params_and_batch_size_from_settings(shop: str, make_context) -> None:
    ext = create_db_extractor(shop, "SELECT id FROM orders WHERE customer = :who ORDER BY id", params={"who": "c0"})
    assert not ext.interval_aware
    context = make_context()
    context.settings.batch_size = 4
    batches = read(ext, context)
    assert [b.num_rows for b in batches] == [4, 2]
    assert pa.concat_tables(batches).column("id").to_pylist() == [3, 6, 9, 12, 15, 18]


def test_incremental_cursor_in_table_mode(shop: str, make_context, tmp_path: Path) -> None:
    ext = create_db_extractor(shop, table="orders", cursor_column="updated_at")
    first = make_context(run_id="r1")
    assert pa.concat_tables(read(ext, first)).num_rows == 20
    assert first.state.pending == {"cursor": "2026-01-15 20:00:00"}

    # Not committed (the run "failed"): the next run reads everything again.
    again = make_context(run_id="r2")
    assert pa.concat_tables(read(ext, again)).num_rows == 20
    again.state.commit("r2")

    con = sqlite3.connect(shop.removeprefix("sqlite:///"))
    con.execute("INSERT INTO orders VALUES (21, 'c9', 1.0, NULL, '2026-01-16 01:00:00')")
    con.execute("INSERT INTO orders VALUES (22, 'c9', 2.0, NULL, '2026-01-16 02:00:00')")
    con.commit()
    con.close()
    third = make_context(run_id="r3")
    assert pa.concat_tables(read(ext, third)).column("id").to_pylist() == [21, 22]
    assert third.state.pending == {"cursor": "2026-01-16 02:00:00"}
    third.state.commit("r3")
    # Nothing new: no rows, cursor unchanged.
    fourth = make_context(run_id="r4")
    assert read(ext, fourth) == []
    assert fourth.state.pending == {}


def test_incremental_cursor_in_query_mode(shop: str, make_context) -> None:
    ext = create_db_extractor(shop, "SELECT id, updated_at FROM orders WHERE :cursor IS NULL OR id > :cursor",
                              cursor_column="id")
    ctx = make_context(run_id="q1")
    assert pa.concat_tables(read(ext, ctx)).num_rows == 20
    ctx.state.commit("q1")
    ctx2 = make_context(run_id="q2")
    assert read(ext, ctx2) == []


def test_url_from_env_and_errors_hide_password(make_context, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DB_URL", "postgresql+psycopg2://reader:hunter2secret@127.0.0.1:1/shop")
    ext = create_db_extractor(url_env="SOURCE_DB_URL", table="orders")
    with pytest.raises((ConfigError, ExtractError)) as err:
        read(ext, make_context())
    assert "hunter2secret" not in str(err.value)
    assert "reader:***@127.0.0.1:1/shop" in str(err.value)


def test_missing_url_variable(make_context, monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_DB_URL", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_DB_URL is not set"):
        read(create_db_extractor(url_env="NO_SUCH_DB_URL", table="t"), make_context())


def test_query_error_names_the_source(shop: str, make_context) -> None:
    with pytest.raises(ExtractError) as err:
        read(create_db_extractor(shop, table="nope"), make_context())
    assert str(err.value) == f"db:nope: query failed on {shop}: no such table: nope"


def test_unknown_cursor_column(shop: str, make_context) -> None:
    with pytest.raises(ExtractError, match="cursor_column 'changed' is not among the columns"):
        read(create_db_extractor(shop, "SELECT id FROM orders", cursor_column="changed"), make_context())


def test_bad_configuration(make_context) -> None:
    with pytest.raises(ConfigError, match="exactly one of query= or table="):
        create_db_extractor("sqlite://", query="SELECT 1", table="t")
    with pytest.raises(ConfigError, match="exactly one of url= or url_env="):
        create_db_extractor(query="SELECT 1")
    with pytest.raises(ConfigError, match="not a plain"):
        create_db_extractor("sqlite://", table="t; DROP TABLE x")
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        create_db_extractor("not a url", table="t")
    with pytest.raises(ConfigError, match=":who"):
        list(create_db_extractor("sqlite://", "SELECT :who").extract(make_context()))
