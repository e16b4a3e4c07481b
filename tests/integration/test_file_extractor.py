"""File extractor on real files: CSV/TSV, JSON, JSON Lines, Parquet, gzip, zstd, globs, quarantine."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from core.exceptions import ConfigError, ExtractError
from pipelines.tools.extractors.file_extractor import create_file_extractor


def read(extractor, context) -> pa.Table:
    batches = list(extractor.extract(context))
    for b in batches:
        assert b.num_rows <= context.settings.batch_size
    return pa.concat_tables(batches) if batches else pa.table({})


def quarantined(context) -> list[tuple]:
    """The run's rejected rows once the run commits them (the runner does that on success)."""
    if context.quarantined is not None:
        context.quarantined.commit()
    return context.store.query_rows(
        "SELECT source, line, raw, error FROM _dp_quarantine WHERE run_id = {r:String} ORDER BY source, line",
        {"r": context.run_id})


CSV = "id,name,amount\n1,a,1.5\n2,b,2.5\n3,c,3.5\n"


def test_csv_types_and_columns(tmp_path: Path, make_context) -> None:
    (tmp_path / "x.csv").write_text(CSV)
    table = read(create_file_extractor(tmp_path / "x.csv"), make_context())
    assert table.to_pylist() == [{"id": 1, "name": "a", "amount": 1.5}, {"id": 2, "name": "b", "amount": 2.5},
                                 {"id": 3, "name": "c", "amount": 3.5}]
    table = read(create_file_extractor(tmp_path / "x.csv", columns=["amount", "id"], types={"id": "str"}),
                 make_context())
    assert table.schema.names == ["amount", "id"]
    assert table.column("id").to_pylist() == ["1", "2", "3"]


def test_tsv_gzip_and_zstd(tmp_path: Path, make_context) -> None:
    tsv = CSV.replace(",", "\t")
    with gzip.open(tmp_path / "a.tsv.gz", "wt") as fh:
        fh.write(tsv)
    (tmp_path / "b.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(CSV.encode()))
    assert read(create_file_extractor(tmp_path / "a.tsv.gz"), make_context()).num_rows == 3
    assert read(create_file_extractor(tmp_path / "b.csv.zst"), make_context()).column("name").to_pylist() == \
        ["a", "b", "c"]


def test_csv_malformed_error_names_file_and_line(tmp_path: Path, make_context) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,a\n2,b,EXTRA\n3,c\n")
    with pytest.raises(ExtractError) as err:
        read(create_file_extractor(path), make_context())
    assert str(err.value).startswith(f"file:bad.csv: {path} line 3: expected 2 columns, got 3: '2,b,EXTRA'")


def test_csv_malformed_skip_goes_to_quarantine(tmp_path: Path, make_context) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,a\n2,b,EXTRA\n3,c\nlonely\n5,e\n")
    context = make_context(run_id="csv-skip")
    table = read(create_file_extractor(path, malformed="skip"), context)
    assert table.column("id").to_pylist() == [1, 3, 5]
    assert quarantined(context) == [
        (str(path), 3, "2,b,EXTRA", "expected 2 columns, got 3"),
        (str(path), 5, "lonely", "expected 2 columns, got 1"),
    ]
    assert context.counters["rows_quarantined"] == 2


def test_csv_conversion_error_suggests_types(tmp_path: Path, make_context) -> None:
    (tmp_path / "t.csv").write_text("id\n1\n2\n")
    with pytest.raises(ExtractError) as err:
        read(create_file_extractor(tmp_path / "t.csv", types={"id": "bool"}), make_context())
    assert str(err.value) == (f"file:t.csv: {tmp_path}/t.csv line 3: column 'id' cannot be read as bool: "
                              "invalid value '2'")
    # A type guessed from the first block, contradicted later (blocks are 8 MiB: make two).
    big = "id,v\n" + "1,x\n" * 3_000_000 + "nope,y\n"
    (tmp_path / "u.csv").write_text(big)
    with pytest.raises(ExtractError) as err:
        read(create_file_extractor(tmp_path / "u.csv"), make_context())
    assert str(err.value).endswith("line 3000002: column 'id' cannot be read as int64: invalid value 'nope' "
                                   "(its type was guessed from the first rows; set it with types={'id': ...})")


def test_jsonl_fast_path_and_malformed_lines(tmp_path: Path, make_context) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": 1, "user": {"name": "a"}}\n\n{"id": 2, "user": {"name": "b"}}\n')
    assert read(create_file_extractor(path), make_context()).to_pylist() == [
        {"id": 1, "user_name": "a"}, {"id": 2, "user_name": "b"}]

    path.write_text('{"id": 1}\n{"id": 2,\n[1, 2]\n{"id": 4, "tags": ["x"]}\n')
    with pytest.raises(ExtractError) as err:
        read(create_file_extractor(path), make_context())
    assert f"{path} line 2: invalid JSON" in str(err.value)

    context = make_context(run_id="jsonl-skip")
    table = read(create_file_extractor(path, malformed="skip"), context)
    assert table.to_pylist() == [{"id": 1, "tags": None}, {"id": 4, "tags": '["x"]'}]
    rows = quarantined(context)
    assert [(r[1], r[2]) for r in rows] == [(2, '{"id": 2,'), (3, "[1, 2]")]
    assert rows[1][3] == "expected a JSON object, found a JSON list"
    assert context.counters["rows_quarantined"] == 2


def test_jsonl_zstd_in_batches(tmp_path: Path, make_context) -> None:
    lines = "".join(json.dumps({"id": i, "ts": f"2026-01-15T00:00:{i % 60:02d}"}) + "\n" for i in range(250))
    (tmp_path / "e.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    context = make_context()
    context.settings.batch_size = 100
    batches = list(create_file_extractor(tmp_path / "e.ndjson.zst").extract(context))
    assert [b.num_rows for b in batches] == [100, 100, 50]
    assert batches[0].schema.field("ts").type == pa.string()
    assert pa.concat_tables(batches).column("id").to_pylist() == list(range(250))


def test_json_array(tmp_path: Path, make_context) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"id": 1, "o": {"k": "v"}}, {"id": 2}]))
    assert read(create_file_extractor(tmp_path / "a.json"), make_context()).to_pylist() == [
        {"id": 1, "o_k": "v"}, {"id": 2, "o_k": None}]
    (tmp_path / "b.json").write_text('[{"id": 1},\n {"id": 2,,}]')
    with pytest.raises(ExtractError, match="b.json line 2 is not valid JSON"):
        read(create_file_extractor(tmp_path / "b.json"), make_context())
    (tmp_path / "c.json").write_text('{"id": 1}')
    with pytest.raises(ExtractError, match="expected a JSON array of records, found a JSON dict"):
        read(create_file_extractor(tmp_path / "c.json"), make_context())


def test_parquet_batches_keep_types(tmp_path: Path, make_context) -> None:
    table = pa.table({"id": pa.array(range(1000), pa.int32()),
                      "ts": pa.array([datetime(2026, 1, 15, tzinfo=UTC)] * 1000, pa.timestamp("ms", tz="UTC")),
                      "s": [f"v{i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=300)
    context = make_context()
    context.settings.batch_size = 256
    batches = list(create_file_extractor(tmp_path / "t.parquet", columns=["id", "ts"]).extract(context))
    assert max(b.num_rows for b in batches) == 256 and sum(b.num_rows for b in batches) == 1000
    result = pa.concat_tables(batches)
    assert result.schema == pa.schema([("id", pa.int32()), ("ts", pa.timestamp("ms", tz="UTC"))])
    assert result.column("id").to_pylist() == list(range(1000))


def test_glob_with_interval_placeholder(tmp_path: Path, make_context) -> None:
    for day, ids in (("2026-01-15", [1, 2]), ("2026-01-16", [3])):
        folder = tmp_path / day
        folder.mkdir()
        for i in ids:
            (folder / f"part-{i}.csv").write_text(f"id\n{i}\n")
    ext = create_file_extractor(str(tmp_path / "{start_date}" / "*.csv"))
    assert ext.interval_aware
    context = make_context(start=datetime(2026, 1, 15, tzinfo=UTC))
    assert read(ext, context).column("id").to_pylist() == [1, 2]
    assert context.counters["files_read"] == 2
    assert read(ext, make_context(start=datetime(2026, 1, 16, tzinfo=UTC))).column("id").to_pylist() == [3]


def test_empty_match(tmp_path: Path, make_context) -> None:
    ext = create_file_extractor(str(tmp_path / "{start_date}" / "*.csv"))
    with pytest.raises(ExtractError) as err:
        read(ext, make_context())
    assert f"no file matches {tmp_path}/2026-01-15/*.csv" in str(err.value)
    assert "allow_empty=True" in str(err.value)
    assert list(create_file_extractor(str(tmp_path / "*.csv"), allow_empty=True).extract(make_context())) == []


def test_relative_path_is_relative_to_project_root(make_context) -> None:
    from core.config import PROJECT_ROOT

    ext = create_file_extractor("no/such/dir/file.csv")
    with pytest.raises(ExtractError, match=f"no file matches {PROJECT_ROOT}/no/such/dir/file.csv"):
        read(ext, make_context())


def test_empty_and_header_only_files(tmp_path: Path, make_context) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("id,name\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    for name in ("empty.csv", "header.csv", "empty.jsonl"):
        assert read(create_file_extractor(tmp_path / name), make_context()).num_rows == 0


def test_corrupt_compressed_file(tmp_path: Path, make_context) -> None:
    (tmp_path / "x.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ExtractError, match="x.csv.gz"):
        read(create_file_extractor(tmp_path / "x.csv.gz"), make_context())


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="cannot tell the format"):
        create_file_extractor("data/file.xlsx")
    with pytest.raises(ConfigError, match="malformed must be"):
        create_file_extractor("a.csv", malformed="ignore")
    with pytest.raises(ConfigError, match="unknown type 'integr'"):
        create_file_extractor("a.csv", types={"id": "integr"})


def test_naive_datetimes_mean_utc_in_every_format(tmp_path: Path, make_context) -> None:
    """``datetime`` is UTC: a timestamp without an offset is read as UTC wall time (as the type
    transformer does), one with an offset is converted, whatever the file format."""
    expected = [datetime(2026, 1, 15, 10, 0, tzinfo=UTC), datetime(2026, 1, 15, 11, 30, tzinfo=UTC),
                datetime(2026, 1, 15, 8, 0, tzinfo=UTC)]
    (tmp_path / "a.csv").write_text("id,at\n1,2026-01-15 10:00:00\n2,2026-01-15T11:30:00\n"
                                    "3,2026-01-15T10:00:00+02:00\n")
    (tmp_path / "a.jsonl").write_text('{"id": 1, "at": "2026-01-15 10:00:00"}\n{"id": 2, "at": "2026-01-15T11:30:00"}\n'
                                      '{"id": 3, "at": "2026-01-15T10:00:00+02:00"}\n')
    naive = pa.array([datetime(2026, 1, 15, 10), datetime(2026, 1, 15, 11, 30), datetime(2026, 1, 15, 8)],
                     pa.timestamp("us"))
    pq.write_table(pa.table({"id": [1, 2, 3], "at": naive}), tmp_path / "a.parquet")
    for name in ("a.csv", "a.jsonl", "a.parquet"):
        table = read(create_file_extractor(tmp_path / name, types={"at": "datetime"}), make_context())
        assert table.schema.field("at").type == pa.timestamp("us", tz="UTC"), name
        assert table.column("at").to_pylist() == expected, name


@pytest.mark.parametrize("rows_before", [1, 40_000])
def test_a_field_over_16_mb_is_read(tmp_path: Path, make_context, rows_before: int) -> None:
    """Arrow's block size is no limit on a field (issue 23 §7): the block grows to hold the row,
    also when rows were already read from earlier blocks (none is read twice)."""
    big = "x" * (17 << 20)
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("id,blob\n")
        fh.writelines(f"{i},{'y' * 300}\n" for i in range(rows_before))
        fh.write(f'{rows_before},"{big}"\n{rows_before + 1},small\n')
    table = read(create_file_extractor(path), make_context())
    assert table.column("id").to_pylist() == list(range(rows_before + 2))
    lengths = [len(v) for v in table.column("blob").to_pylist()]
    assert lengths == [300] * rows_before + [17 << 20, 5]

    lines = tmp_path / "big.jsonl"
    lines.write_text(json.dumps({"id": 1, "blob": big}) + "\n" + json.dumps({"id": 2, "blob": "small"}) + "\n")
    table = read(create_file_extractor(lines), make_context())
    assert [len(v) for v in table.column("blob").to_pylist()] == [17 << 20, 5]
