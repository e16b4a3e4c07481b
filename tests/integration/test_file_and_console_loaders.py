from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.exceptions import LoadError
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.console_loader import ConsoleLoader
from pipelines.tools.loaders.file_loader import create_file_loader


class Batches(Extractor):
    def __init__(self, *batches: pa.Table, fail: bool = False) -> None:
        super().__init__("batches")
        self.batches, self.fail = batches, fail

    def extract(self, context):
        yield from self.batches
        if self.fail:
            raise RuntimeError("source died")


def table(start: int, n: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "name": [f"n{i}" for i in range(start, start + n)]})


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_file_loader_writes_all_batches_atomically(make_context, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / "out" / f"{{start_date}}.{suffix}"
    loader = create_file_loader(target)
    context = make_context(start=datetime(2026, 2, 1, tzinfo=UTC))
    create_el_pipeline(Batches(table(0, 3), table(3, 2)), loader, "files").run(context)
    written = tmp_path / "out" / f"2026-02-01.{suffix}"
    if suffix == "parquet":
        assert pq.read_table(written).column("id").to_pylist() == [0, 1, 2, 3, 4]
    elif suffix == "csv":
        assert written.read_text().splitlines() == ['"id","name"', '0,"n0"', '1,"n1"', '2,"n2"', '3,"n3"', '4,"n4"']
    else:
        assert [json.loads(line)["id"] for line in written.read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]

    # A failed run keeps the previous file whole and leaves no temporary file.
    with pytest.raises(RuntimeError):
        create_el_pipeline(Batches(table(100, 1), fail=True), loader, "files").run(make_context(
            start=datetime(2026, 2, 1, tzinfo=UTC), run_id="run-2"))
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]
    if suffix == "jsonl":
        assert len(written.read_text().splitlines()) == 5


def test_file_loader_refuses_unknown_formats_and_mismatched_batches(make_context, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="format must be csv, parquet or jsonl .* got .xlsx"):
        create_file_loader(tmp_path / "x.xlsx")
    out = tmp_path / "out"
    loader = create_file_loader(out / "x.parquet")
    with pytest.raises(LoadError, match="does not match the first batch's columns"):
        create_el_pipeline(Batches(table(0, 2), pa.table({"other": [1]})), loader, "f").run(make_context())
    assert list(out.iterdir()) == []


def test_console_loader_previews_schema_rows_and_count(make_context) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    loader = ConsoleLoader("Preview", preview_rows=3, console=console)
    create_el_pipeline(Batches(table(0, 2), table(2, 5)), loader, "c").run(make_context())
    text = console.export_text()
    assert "Preview schema: id int64, name string" in text
    assert "n0" in text and "n2" in text and "n3" not in text
    assert "Preview: 7 rows (first 3 shown)" in text


def test_file_loader_removes_the_temporary_files_of_dead_runs(tmp_path: Path) -> None:
    loader = create_file_loader(tmp_path / "{start_date}" / "out.csv")
    dead, live, other = "20260115T130501-3fa9c2d1", "20260115T130502-00000001", "20260101T000000-0badc0de"
    day = tmp_path / "2026-01-15"
    day.mkdir()
    for run_id in (dead, live, other):
        (day / f".out.csv.{run_id}.tmp").write_text("partial")
    (day / "out.csv").write_text("published")
    (day / ".out.csv.notarun.tmp").write_text("not ours")

    assert loader.clean_up_run(None, dead) == [f"temporary file {day / f'.out.csv.{dead}.tmp'}"]
    assert loader.clean_up_run(None, dead) == []  # idempotent
    assert loader.clean_up_leftovers(None, {live}) == [f"temporary file {day / f'.out.csv.{other}.tmp'}"]
    assert sorted(p.name for p in day.iterdir()) == [f".out.csv.{live}.tmp", ".out.csv.notarun.tmp", "out.csv"]


def test_an_unknown_placeholder_in_the_file_loaders_path_fails_naming_it(make_context, tmp_path: Path) -> None:
    target = tmp_path / "out" / "{day}.csv"
    loader = create_file_loader(target)
    with pytest.raises(LoadError) as error:
        create_el_pipeline(Batches(table(0, 1)), loader, "files").run(make_context())
    assert str(error.value).startswith(f"File loader path {target} line 1: unknown placeholder {{day}} (known: "
                                       "{start}, {end}, {start_date}, {end_date}, {run_id}, {pipeline}")
    assert not (tmp_path / "out").exists()
