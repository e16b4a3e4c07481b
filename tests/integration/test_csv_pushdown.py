"""CSV push-down: ClickHouse reads the file itself only where the result is the Python path's.

Each case loads the same CSV twice on the real embedded engine: as an EL pipeline (push-down
allowed) and with a pass-through transformer (which forces the Python path), then compares the
tables (values and column types) and the quarantine.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.exceptions import DataProcessorError
from core.store import Store
from pipelines.interfaces import Transformer
from pipelines.pipeline_factory import create_el_pipeline, create_etl_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader


class Passthrough(Transformer):
    def transform(self, batch, context):
        return batch


def load_both(store: Store, make_context, path: Path, **options) -> dict[str, object]:
    """Load ``path`` both ways; the tables, column types, quarantine and errors of each."""
    out: dict[str, object] = {}
    for how in ("push", "python"):
        table = f"csv_{how}"
        loader = create_clickhouse_loader(table, mode="append")
        extractor = create_file_extractor(path, **options)
        pipeline = (create_el_pipeline(extractor, loader, how) if how == "push"
                    else create_etl_pipeline(extractor, [Passthrough()], loader, how))
        context = make_context(pipeline=how, run_id=f"run-{how}")
        try:
            pipeline.run(context)
            error = None
        except DataProcessorError as exc:
            error = str(exc)
        if context.quarantined is not None:
            context.quarantined.commit()
        exists = store.table_exists(table)
        out[how] = {
            "error": error,
            "rows": store.query_rows(f"SELECT * EXCEPT _dp_run_id FROM {table} ORDER BY ALL") if exists else None,
            "types": store.query_rows("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                      "AND table = {t:String} ORDER BY position", {"t": table}),
            "quarantine": store.query_rows(
                "SELECT source, line, raw, error FROM _dp_quarantine WHERE run_id = {r:String} ORDER BY line",
                {"r": context.run_id}),
        }
    return out


GOOD = (
    "id,name,amount,score\n"
    "1, spaced ,1.5,\n"
    "2,NULL,-2.25e3,7\n"
    "3,\"quoted, comma\",NA,-0\n"
    "4,\\N,,007\n"
    "5,\"\",nan,9\n"
    "6,\"say \"\"hi\"\"\",0.1,NULL\n"
)


@pytest.mark.embedded_only("ClickHouse reads the local file itself only on this machine's engine; "
                           "a remote server gets the rows streamed")
def test_a_good_csv_is_read_by_clickhouse_and_equals_the_python_path(store: Store, make_context, tmp_path,
                                                                    caplog) -> None:
    caplog.set_level("INFO", logger="dp")
    rng = random.Random(7)
    lines = [f"{i},n{i},{rng.uniform(-1e6, 1e6):.{rng.randint(0, 17)}f},{rng.randint(-10**17, 10**17)}"
             for i in range(7, 3000)]
    path = tmp_path / "good.csv"
    path.write_text(GOOD + "\n".join(lines) + "\n")
    # The listed strings are NULL in every column, text included (quoted or not).
    result = load_both(store, make_context, path, null_values=["", "NA", "nan", "NULL"])
    assert "ClickHouse read good.csv itself: 2999 rows" in caplog.text
    assert result["push"] == result["python"]
    push = result["push"]
    assert push["error"] is None and len(push["rows"]) == 2999
    assert push["rows"][:6] == [
        (1, " spaced ", 1.5, None), (2, None, -2250.0, 7), (3, "quoted, comma", None, 0),
        (4, "\\N", None, 7), (5, None, None, 9), (6, 'say "hi"', 0.1, None)]
    assert dict(push["types"])["amount"] == "Nullable(Float64)"


@pytest.mark.parametrize("malformed", ["skip", "error"])
def test_malformed_lines_fall_back_and_match_the_python_path(store: Store, make_context, tmp_path, caplog,
                                                             malformed: str) -> None:
    caplog.set_level("INFO", logger="dp")
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,a\n2,b,EXTRA\n3,c\nlonely\n5,e\n")
    result = load_both(store, make_context, path, malformed=malformed)
    assert "ClickHouse read bad.csv itself" not in caplog.text
    assert result["push"] == result["python"]
    if malformed == "skip":
        assert result["push"]["rows"] == [(1, "a"), (3, "c"), (5, "e")]
        assert result["push"]["quarantine"] == [(str(path), 3, "2,b,EXTRA", "expected 2 columns, got 3"),
                                                (str(path), 5, "lonely", "expected 2 columns, got 1")]
    else:
        assert result["push"]["error"].startswith(f"file:bad.csv: {path} line 3: expected 2 columns, got 3")


@pytest.mark.parametrize("body", [
    "id,v\n1,5\n2,NaN\n3,#N/A\n4,-1.#IND\n",  # Arrow's null values in an int64 column
    "id,v\n1,5\n2,+6\n",            # Arrow refuses '+6' as int64; ClickHouse would read it
    "id,v\n1,5\n2, 6\n",            # a space before a number
    "id,v\n1,a\r\n2,b\r\n",          # CRLF line ends
    "id,v\n1,a\n\n2,b\n",            # an empty line (Arrow skips it)
    "id,v\n1,\"two\nlines\"\n",     # a line break inside a quoted value
    "id,v\n1,2.5\n2,1e400\n",       # a float Arrow reads differently
])
def test_values_clickhouse_might_read_differently_take_the_python_path(store: Store, make_context, tmp_path,
                                                                      body: str) -> None:
    path = tmp_path / "edge.csv"
    path.write_bytes(body.encode())
    result = load_both(store, make_context, path)
    assert result["push"] == result["python"]


@pytest.mark.embedded_only("ClickHouse reads the local file itself only on this machine's engine; "
                           "a remote server gets the rows streamed")
def test_a_value_refused_in_sql_falls_back_to_the_python_path(store: Store, make_context, tmp_path,
                                                             caplog) -> None:
    """Types come from the first 8 MB block; a value past it that the checks refuse makes
    ClickHouse stop, and the run streams the file instead (same table, same quarantine)."""
    caplog.set_level("INFO", logger="dp")
    path = tmp_path / "late.csv"
    row = "12345678,some text that makes the file longer than one block\n"
    with open(path, "w") as fh:
        fh.write("id,note\n")
        fh.write(row * (9 * 2**20 // len(row)))
        fh.write("+5,late\n2,b,EXTRA\n")
    result = load_both(store, make_context, path, malformed="skip")
    assert "streaming it instead" in caplog.text
    assert result["push"] == result["python"]
    assert result["push"]["quarantine"][0][2:] == ("2,b,EXTRA", "expected 2 columns, got 3")


def test_declared_types_and_a_later_bad_value(store: Store, make_context, tmp_path, caplog) -> None:
    caplog.set_level("INFO", logger="dp")
    path = tmp_path / "typed.csv"
    path.write_text("id,code\n1,10\n2,20\n" + "".join(f"{i},{i}\n" for i in range(3, 50)) + "50,x1\n")
    typed = load_both(store, make_context, path, types={"code": "str"})
    assert typed["push"] == typed["python"] and typed["push"]["error"] is None
    assert dict(typed["push"]["types"])["code"] == "Nullable(String)"
    store.command("DROP TABLE csv_push")
    store.command("DROP TABLE csv_python")
    inferred = load_both(store, make_context, path)  # one block: 'x1' makes Arrow guess a string
    assert inferred["push"] == inferred["python"] and inferred["push"]["error"] is None
    assert dict(inferred["push"]["types"])["code"] == "Nullable(String)"


def test_a_late_value_of_another_type_fails_as_on_the_python_path(store: Store, make_context, tmp_path) -> None:
    path = tmp_path / "late.csv"
    with open(path, "w") as fh:
        fh.write("id,code\n")
        lines = 9 * 2**20 // 20
        fh.write("".join(f"{i},{i % 1000:>12}\n".replace(" ", "0") for i in range(lines)))
        fh.write(f"{lines},x1\n")
    result = load_both(store, make_context, path)
    assert result["push"] == result["python"]
    assert f"line {lines + 2}: column 'code' cannot be read as int64" in result["push"]["error"]


@pytest.mark.embedded_only("ClickHouse reads the local file itself only on this machine's engine; "
                           "a remote server gets the rows streamed")
@pytest.mark.parametrize("body, pushed", [
    ("id,at\n1,2013-01-01 05:00:00\n2,2013-12-31T23:59:59\n3,\n", True),       # naive means UTC
    ("id,at\n1,2013-01-01 05:00:00Z\n2,\n", True),                             # all with Z: UTC
    ("id,at\n1,2013-01-01 05:00:00\n2,2013-02-30 00:00:00\n", True),            # no such day: text
    ("id,at\n1,2013-01-01 05:00:00.5\n", False),                                # not whole seconds
    ("id,at\n1,1850-01-01 00:00:00\n", True),                                   # an old date
    ("id,at\n1,2013-01-01 05:00:00Z\n2,2013-01-01 06:00:00\n", None),          # Z on some only
])
def test_timestamps_are_pushed_down_only_when_certain(store: Store, make_context, tmp_path, caplog,
                                                      body: str, pushed: bool | None) -> None:
    caplog.set_level("INFO", logger="dp")
    path = tmp_path / "times.csv"
    path.write_text(body)
    result = load_both(store, make_context, path)
    assert result["push"] == result["python"]
    if pushed is not None:
        assert ("ClickHouse read times.csv itself" in caplog.text) is pushed


def test_a_late_impossible_timestamp_fails_as_on_the_python_path(store: Store, make_context, tmp_path) -> None:
    path = tmp_path / "late_times.csv"
    row = "1,2013-01-01 05:00:00\n"
    with open(path, "w") as fh:
        fh.write("id,at\n" + row * (9 * 2**20 // len(row)) + "2,2013-02-30 00:00:00\n")
    result = load_both(store, make_context, path)
    assert result["push"] == result["python"]
    assert "2013-02-30 00:00:00" in result["push"]["error"]


# ---- which strings mean NULL: null_values= (issue 29) ------------------------------------------

PENGUINS = (
    "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
    "Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n"
    "Adelie,Torgersen,NA,NA,NA,NA,NA,2007\n"
    "Adelie,Torgersen,36.7,19.3,193,3450,female,2007\n"
    "Gentoo,Biscoe,44.5,14.3,216,4100,NA,2008\n"
)


def test_listed_null_values_are_null_in_every_column_on_both_paths(store: Store, make_context, tmp_path,
                                                                   caplog) -> None:
    caplog.set_level("INFO", logger="dp")
    path = tmp_path / "penguins.csv"
    path.write_text(PENGUINS)
    result = load_both(store, make_context, path, null_values=["NA"])
    assert result["push"] == result["python"]
    assert result["push"]["error"] is None
    assert result["push"]["rows"] == [
        ("Adelie", "Torgersen", 36.7, 19.3, 193, 3450, "female", 2007),
        ("Adelie", "Torgersen", 39.1, 18.7, 181, 3750, "male", 2007),
        ("Adelie", "Torgersen", None, None, None, None, None, 2007),
        ("Gentoo", "Biscoe", 44.5, 14.3, 216, 4100, None, 2008)]
    assert dict(result["push"]["types"])["sex"] == "Nullable(String)"
    if store.settings.is_embedded:  # a server gets the rows streamed: both paths are Python there
        assert "ClickHouse read penguins.csv itself: 4 rows" in caplog.text


def test_by_default_na_is_text_and_a_number_column_holding_it_fails_loudly(store: Store, make_context,
                                                                           tmp_path) -> None:
    countries = tmp_path / "countries.csv"
    countries.write_text("code,name,population\nNA,Namibia,2604172\nDE,Germany,\nFR,France,68373433\n")
    result = load_both(store, make_context, countries)
    assert result["push"] == result["python"]
    # Namibia keeps its code; an empty field is NULL (the default null_values is [""]).
    assert result["push"]["rows"] == [("DE", "Germany", None), ("FR", "France", 68373433),
                                      ("NA", "Namibia", 2604172)]
    store.command("DROP TABLE csv_push")
    store.command("DROP TABLE csv_python")
    penguins = tmp_path / "penguins.csv"
    penguins.write_text(PENGUINS)
    failed = load_both(store, make_context, penguins)
    assert failed["push"] == failed["python"]
    assert failed["push"]["rows"] is None
    assert failed["push"]["error"] == (
        f"file:penguins.csv: {penguins} data row 2: column 'bill_length_mm' holds numbers and 'NA', which is "
        "not one of null_values ['']; if 'NA' means missing, pass null_values=['', 'NA'] (or "
        "types={'bill_length_mm': 'str'} to keep the column as text)")


def test_a_late_unlisted_na_in_a_number_column_fails_with_the_null_values_hint(store: Store, make_context,
                                                                                tmp_path) -> None:
    path = tmp_path / "late_na.csv"
    lines = 9 * 2**20 // 20
    with open(path, "w") as fh:
        fh.write("id,code\n" + "".join(f"{i},{i % 1000:>12}\n".replace(" ", "0") for i in range(lines)))
        fh.write(f"{lines},NA\n")
    result = load_both(store, make_context, path)
    assert result["push"] == result["python"]
    assert result["push"]["error"].endswith(
        f"line {lines + 2}: column 'code' cannot be read as int64: invalid value 'NA' (its type was guessed from "
        "the first rows; set it with types={'code': ...}); if 'NA' means missing, pass null_values=['', 'NA']")
