"""Errors carry structured fields besides their message (issue 26, section 3): the loader's
``table``/``column``, a failed check's ``check``/``table``, an extractor's ``path``/``row``. Raised by
real components on the embedded store; the messages are unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from audit import unique
from conftest import Rows
from core.exceptions import CheckFailed, DataProcessorError, ExtractError, LoadError
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def run(make_context, extractor, loader, checks=()):
    context = make_context(start=DAY, end=DAY + timedelta(days=1))
    context.checks = list(checks)
    create_el_pipeline(extractor, loader, "t").run(context)


def rows(ids: list[int], ts: list) -> Rows:
    return Rows(pa.table({"id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}))


def test_an_error_without_fields_has_them_none() -> None:
    error = DataProcessorError("plain")
    assert (str(error), error.table, error.partition, error.check, error.row, error.path, error.column) == (
        "plain", None, None, None, None, None, None)


def test_a_row_outside_the_interval_names_the_table_and_column(store, make_context) -> None:
    with pytest.raises(LoadError, match=r"^Loader for 't': 1 row\(s\) have ts outside") as caught:
        run(make_context, rows([1], [DAY - timedelta(hours=1)]), create_clickhouse_loader("t", time_column="ts"))
    assert (caught.value.table, caught.value.column) == ("t", "ts")


def test_a_null_key_names_the_table_column_and_row(store, make_context) -> None:
    with pytest.raises(LoadError, match=r"key column 'ts' \(ORDER BY/PARTITION BY\) is NULL in row 2") as caught:
        run(make_context, rows([1, 2], [DAY, None]), create_clickhouse_loader("t", time_column="ts", mode="append"))
    assert (caught.value.table, caught.value.column, caught.value.row) == ("t", "ts", 2)


def test_a_failed_check_names_the_check_and_table(store, make_context) -> None:
    with pytest.raises(CheckFailed, match="nothing published") as caught:
        run(make_context, rows([1, 1], [DAY, DAY]), create_clickhouse_loader("t", time_column="ts"), [unique("id")])
    assert (caught.value.check, caught.value.table) == ("unique(id)", "t")


def test_a_malformed_line_names_the_path_and_row(store, make_context, tmp_path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n1,9.5\n2,oops,extra\n3,7.25\n")
    with pytest.raises(ExtractError, match=r"orders.csv line 3") as caught:
        run(make_context, create_file_extractor(path), create_clickhouse_loader("t", mode="append"))
    assert (caught.value.path, caught.value.row) == (str(path), 3)


def test_no_matching_file_names_the_path(store, make_context, tmp_path) -> None:
    with pytest.raises(ExtractError, match="no file matches") as caught:
        run(make_context, create_file_extractor(tmp_path / "missing.csv"), create_clickhouse_loader("t", mode="append"))
    assert caught.value.path == str(tmp_path / "missing.csv")
