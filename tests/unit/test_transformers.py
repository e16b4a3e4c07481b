"""Transformers: behaviour and error messages (validation quarantine uses the real store)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import BaseModel, Field

from core.exceptions import ConfigError, TransformError
from pipelines.tools.transformers.transformers import (
    create_column_transformer,
    create_lambda_transformer,
    create_type_transformer,
    create_validation_transformer,
)


@pytest.fixture
def ctx(settings):
    """A context without a store, for transformers that never write (fast)."""
    from core.logging import get_logger
    from pipelines.interfaces import RunContext

    start = datetime(2026, 1, 15, tzinfo=UTC)
    return RunContext(run_id="run-t", pipeline="p", start=start, end=start, logger=get_logger("job.p"),
                      settings=settings, store=None, state=None)  # type: ignore[arg-type]


TABLE = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "amount": [1.5, None, 3.0]})


# ---- lambda -------------------------------------------------------------------------------------

def test_lambda_gets_pandas_and_may_return_either_kind(ctx) -> None:
    def add(df):
        assert isinstance(df, pd.DataFrame)
        df["double"] = df["id"] * 2
        return df

    out = create_lambda_transformer(add, "My Transformer").transform(TABLE, ctx)
    assert out["double"].tolist() == [2, 4, 6]
    arrow = create_lambda_transformer(lambda df: pa.Table.from_pandas(df.head(1))).transform(TABLE, ctx)
    assert isinstance(arrow, pa.Table) and arrow.num_rows == 1


def test_lambda_with_context_and_drop(ctx) -> None:
    seen = []
    t = create_lambda_transformer(lambda df, context: seen.append(context.run_id))
    assert t.wants_context
    assert t.transform(TABLE, ctx) is None
    assert seen == ["run-t"]


def test_lambda_errors(ctx) -> None:
    with pytest.raises(TransformError, match=r"^boom: KeyError: 'nope'$"):
        create_lambda_transformer(lambda df: df["nope"], "boom").transform(TABLE, ctx)
    with pytest.raises(TransformError, match="returned int; return a pandas DataFrame"):
        create_lambda_transformer(lambda df: 5, "five").transform(TABLE, ctx)
    with pytest.raises(ConfigError, match="must be callable"):
        create_lambda_transformer("df.x")  # type: ignore[arg-type]


# ---- types --------------------------------------------------------------------------------------

def test_type_casts(ctx) -> None:
    table = pa.table({
        "i": ["1", " 2", None], "f": ["1.5", "2", "3e2"], "b": ["true", "No", None],
        "ts": ["2026-01-15T10:00:00", "2026-01-15 11:30:00.5", None],
        "tz": ["2026-01-15T10:00:00+02:00", "2026-01-15T10:00:00Z", "2026-01-15T10:00:00"],
        "d": ["2026-01-15", "2026-02-01", None], "s": [1, 2, 3],
    })
    out = create_type_transformer({"i": "int", "f": float, "b": "bool", "ts": "datetime", "tz": "datetime",
                                   "d": "date", "s": "str"}).transform(table, ctx)
    assert out.column("i").to_pylist() == [1, 2, None]
    assert out.column("f").to_pylist() == [1.5, 2.0, 300.0]
    assert out.column("b").to_pylist() == [True, False, None]
    assert out.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert out.column("ts").to_pylist()[1] == datetime(2026, 1, 15, 11, 30, 0, 500000, tzinfo=UTC)
    assert [v.hour for v in out.column("tz").to_pylist()] == [8, 10, 10]
    assert out.column("d").to_pylist() == [date(2026, 1, 15), date(2026, 2, 1), None]
    assert out.column("s").to_pylist() == ["1", "2", "3"]
    assert create_type_transformer({"id": pa.int16()}).transform(TABLE, ctx).schema.field("id").type == pa.int16()


def test_type_error_names_column_row_and_value(ctx) -> None:
    t = create_type_transformer({"n": "int"}, "cast")
    t.transform(pa.table({"n": ["1", "2"]}), ctx)  # first batch: rows 0-1
    with pytest.raises(TransformError) as err:
        t.transform(pa.table({"n": ["3", "x7", "5"]}), ctx)
    assert str(err.value) == "cast: column 'n' row 3: cannot cast 'x7' to int64"
    with pytest.raises(TransformError, match="column 'when' row 1: cannot cast 'yesterday' to timestamp"):
        create_type_transformer({"when": "datetime"}).transform(pa.table({"when": ["2026-01-01", "yesterday"]}), ctx)
    with pytest.raises(TransformError, match="column 'flag' row 0: cannot cast 'maybe' to bool"):
        create_type_transformer({"flag": "bool"}).transform(pa.table({"flag": ["maybe"]}), ctx)
    with pytest.raises(TransformError, match=r"unknown column 'missing'; the batch has id, name, amount"):
        create_type_transformer({"missing": "int"}).transform(TABLE, ctx)
    with pytest.raises(ConfigError, match="unknown type 'number'"):
        create_type_transformer({"id": "number"})


def test_type_transformer_accepts_pandas(ctx) -> None:
    out = create_type_transformer({"x": "float"}).transform(pd.DataFrame({"x": [1, 2]}), ctx)
    assert out.column("x").to_pylist() == [1.0, 2.0]


# ---- columns ------------------------------------------------------------------------------------

def test_column_operations(ctx) -> None:
    t = create_column_transformer(select=["id", "amount", "name"], rename={"amount": "value"}, drop=["name"],
                                  add={"source": "api", "double": lambda tb: pc.multiply(tb["id"], 2),
                                       "n": lambda tb: [9, 8, 7][: tb.num_rows]})
    out = t.transform(TABLE, ctx)
    assert out.column_names == ["id", "value", "source", "double", "n"]
    assert out.to_pylist()[0] == {"id": 1, "value": 1.5, "source": "api", "double": 2, "n": 9}
    empty = t.transform(TABLE.slice(0, 0), ctx)
    assert empty.num_rows == 0 and empty.column_names == out.column_names


def test_column_errors(ctx) -> None:
    with pytest.raises(TransformError) as err:
        create_column_transformer(select=["id", "nme"], name="cols").transform(TABLE, ctx)
    assert str(err.value) == "cols: unknown column 'nme'; the batch has id, name, amount"
    with pytest.raises(TransformError, match="unknown column 'x'"):
        create_column_transformer(rename={"x": "y"}).transform(TABLE, ctx)
    with pytest.raises(TransformError, match="returned 2 values for 3 rows"):
        create_column_transformer(add={"z": lambda tb: [1, 2]}).transform(TABLE, ctx)
    with pytest.raises(ConfigError, match="give select, rename, drop or add"):
        create_column_transformer()


# ---- validation ---------------------------------------------------------------------------------

RULES = {
    "id": {"not_null": True, "unique": True},
    "amount": {"range": (0, 100)},
    "email": {"regex": r"[^@\s]+@[^@\s]+"},
    "status": {"allowed": ["new", "paid"]},
}


def _orders(ids, amounts, emails, statuses) -> pa.Table:
    return pa.table({"id": ids, "amount": amounts, "email": emails, "status": statuses})


def test_valid_rows_pass_unchanged(ctx) -> None:
    table = _orders([1, 2], [0.0, 100.0], ["a@x.org", None], ["new", "paid"])
    assert create_validation_transformer(rules=RULES).transform(table, ctx) is table


@pytest.mark.parametrize(("table", "message"), [
    (_orders([1, None], [1, 1], ["a@x", "b@x"], ["new", "new"]),
     "row 1: rule not_null failed on column 'id' with value None"),
    (_orders([1, 2], [1, 101], ["a@x", "b@x"], ["new", "new"]),
     "row 1: rule range (max 100) failed on column 'amount' with value 101"),
    (_orders([1, 2], [-1, 1], ["a@x", "b@x"], ["new", "new"]),
     "row 0: rule range (min 0) failed on column 'amount' with value -1"),
    (_orders([1, 2], [1, 1], ["a@x", "not an email"], ["new", "new"]),
     "row 1: rule regex '[^@\\\\s]+@[^@\\\\s]+' failed on column 'email' with value 'not an email'"),
    (_orders([1, 2], [1, 1], ["a@x", "b@x"], ["new", "lost"]),
     "row 1: rule allowed values ['new', 'paid'] failed on column 'status' with value 'lost'"),
    (_orders([1, 1], [1, 1], ["a@x", "b@x"], ["new", "new"]),
     "row 1: rule unique failed on column 'id': duplicate value 1"),
])
def test_each_rule_fails_with_rule_column_row_value(ctx, table, message) -> None:
    with pytest.raises(TransformError) as err:
        create_validation_transformer(rules=RULES, name="check").transform(table, ctx)
    assert str(err.value) == f"check: {message}"


def test_unique_holds_across_batches_and_resets_per_run(ctx) -> None:
    t = create_validation_transformer(rules={"id": {"unique": True}})
    t.transform(pa.table({"id": [1, 2]}), ctx)
    with pytest.raises(TransformError, match="row 2: rule unique failed on column 'id': duplicate value 2"):
        t.transform(pa.table({"id": [2]}), ctx)
    ctx.run_id = "run-next"
    assert t.transform(pa.table({"id": [1, 2]}), ctx).num_rows == 2


def test_pydantic_model(ctx) -> None:
    class Order(BaseModel):
        id: int
        amount: float = Field(ge=0)

    t = create_validation_transformer(model=Order, name="model")
    assert t.transform(pa.table({"id": [1], "amount": [2.5]}), ctx).num_rows == 1
    with pytest.raises(TransformError) as err:
        t.transform(pa.table({"id": [1, 2], "amount": [2.5, -1.0]}), ctx)
    assert str(err.value) == ("model: row 2: model Order failed on column 'amount' with value -1.0: "
                              "Input should be greater than or equal to 0")


def test_quarantine_moves_bad_rows_aside(make_context) -> None:
    context = make_context(run_id="run-q")
    t = create_validation_transformer(rules=RULES, on_invalid="quarantine", name="orders check")
    table = _orders([1, 2, 2, None], [5, 500, 5, 5], ["a@x", "b@x", "c@x", "d@x"], ["new", "paid", "new", "new"])
    out = t.transform(table, context)
    assert out.column("id").to_pylist() == [1]
    assert context.counters["rows_quarantined"] == 3
    context.quarantined.commit()  # the runner commits the rejected rows with the run
    rows = context.store.query_rows("SELECT source, line, raw, error FROM _dp_quarantine "
                                    "WHERE run_id = 'run-q' ORDER BY line")
    assert [(r[0], r[1]) for r in rows] == [("orders check", 1), ("orders check", 2), ("orders check", 3)]
    assert json.loads(rows[0][2]) == {"id": 2, "amount": 500, "email": "b@x", "status": "paid"}
    assert rows[0][3] == "rule range (max 100) failed on column 'amount' with value 500"
    assert rows[1][3] == "rule unique failed on column 'id': duplicate value 2"
    assert rows[2][3] == "rule not_null failed on column 'id' with value None"


def test_validation_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="unknown rule"):
        create_validation_transformer(rules={"x": {"positive": True}})
    with pytest.raises(ConfigError, match="on_invalid must be"):
        create_validation_transformer(rules={"x": {"not_null": True}}, on_invalid="drop")
    with pytest.raises(ConfigError, match="bad regex"):
        create_validation_transformer(rules={"x": {"regex": "("}})
    with pytest.raises(ConfigError, match="give a pydantic model or rules"):
        create_validation_transformer()
