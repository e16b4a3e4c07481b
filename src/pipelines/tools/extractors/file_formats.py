"""How the file extractor recognises, opens and (for CSV/TSV) parses a file.

The CSV part is shared by the Python path (``FileExtractor``) and CSV push-down
(``csv_pushdown``), which must read a file with exactly the same Arrow options.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from core.exceptions import ExtractError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_CSV_BLOCK = 8 << 20  # bytes per CSV block: fewer, larger Arrow batches
_CSV_BLOCK_MAX = 1 << 30  # a row must fit in one block: the block grows up to this for a larger row
_STRADDLING = "straddling object straddles two block boundaries"
_CONVERSION = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to ([\w\[\], ]+): "
                         r"invalid value '(.*)'")

#: ``reject(line, raw_text, reason)``: a malformed row the caller quarantines.
Reject = Callable[[int, str, str], None]

#: The strings a CSV field must equal to be NULL, in every column, unless ``null_values=`` says
#: otherwise: only the empty field. ``NA`` is Namibia's country code, so it is never NULL by default.
DEFAULT_NULL_VALUES = ("",)
#: Strings other tools read as missing (Arrow's and pandas' defaults): a column of numbers or
#: timestamps holding one that is not in ``null_values`` fails loudly instead of becoming text.
_MISSING_MARKERS = frozenset(pcsv.ConvertOptions().null_values) | {"None", "none", "NONE", "-", "?", "."}


def suffixes(path: str) -> tuple[str | None, str | None]:
    """(format, compression) from a file name such as ``x.csv.gz``."""
    name = Path(path).name.lower()
    compression = None
    for ext, kind in _COMPRESSION.items():
        if name.endswith(ext):
            compression, name = kind, name[: -len(ext)]
            break
    return FORMATS.get(Path(name).suffix), compression


def input_source(path: Path | Any) -> Any:
    """What pyarrow reads: a local file's name, or an object in a bucket (``object_store.S3Object``)
    opened as a stream."""
    return str(path) if isinstance(path, Path) else path.open_input_stream()


def open_file(path: Path | Any, compression: str | None) -> IO[bytes]:
    """``path`` (a local file or an ``object_store.S3Object``) for reading bytes, decompressed
    (``gzip``, ``zstd`` or None)."""
    raw: Any = path if isinstance(path, Path) else path.open_input_stream()
    if compression == "gzip":
        return gzip.open(raw, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.open(raw, "rb")  # type: ignore[return-value]
    return open(raw, "rb") if isinstance(raw, Path) else raw


class _RowTooLarge(Exception):
    """A CSV row does not fit in one Arrow block."""


@dataclass(frozen=True)
class CsvFormat:
    """A file extractor's CSV options (``name``: the extractor's, for messages)."""

    name: str
    delimiter: str
    header: bool
    column_names: Sequence[str] | None
    encoding: str
    columns: Sequence[str] | None
    types: Mapping[str, pa.DataType]
    skip_malformed: bool
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES

    def arrow_options(self, on_invalid: Any, block_size: int = _CSV_BLOCK) -> dict[str, Any]:
        """Arrow's CSV reader options (``on_invalid``: its bad-row handler)."""
        column_names = list(self.column_names) if self.column_names else None
        read_options = pcsv.ReadOptions(block_size=block_size, encoding=self.encoding, use_threads=False,
                                        column_names=column_names,
                                        autogenerate_column_names=not self.header and not column_names)
        if column_names and self.header:
            read_options.skip_rows = 1
        parse_options = pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=on_invalid)
        # Zoned timestamp columns are parsed after reading (Arrow's CSV parser refuses a value
        # without an offset for them; naive means UTC here, see arrow_types).
        csv_types = {c: pa.string() if pa.types.is_timestamp(t) and t.tz else t for c, t in self.types.items()}
        # One list of NULL strings for every column type (text included), quoted or not, exactly as
        # CSV push-down reads them.
        convert_options = pcsv.ConvertOptions(column_types=csv_types or None,
                                              include_columns=list(self.columns) if self.columns else None,
                                              null_values=list(self.null_values), strings_can_be_null=True,
                                              quoted_strings_can_be_null=True)
        return {"read_options": read_options, "parse_options": parse_options, "convert_options": convert_options}

    def read(self, path: Path, compression: str | None, reject: Reject) -> Iterator[pa.Table]:
        """The file's rows in Arrow's blocks; malformed rows go to ``reject`` (when skipped).

        A row must fit in one Arrow block: when one does not (a field of many MB), the file is read
        again with a block four times as large (up to 1 GiB), and the rows and malformed rows
        already given are passed over, so none is given twice.
        """
        block, given, rejected, checked = _CSV_BLOCK, 0, 0, False
        while True:
            skip_rows, skip_bad, bad = given, rejected, []
            try:
                for batch in self._blocks(path, compression, block, bad):
                    for row in bad:
                        if skip_bad:
                            skip_bad -= 1
                            continue
                        reject(row.number, row.text, f"expected {row.expected_columns} columns, "
                                                     f"got {row.actual_columns}")
                        rejected += 1
                    bad.clear()
                    passed = min(skip_rows, batch.num_rows)
                    skip_rows -= passed
                    if not checked and batch.num_rows:
                        checked = True
                        self.refuse_unlisted_nulls(path, batch)
                    if batch.num_rows > passed:
                        given += batch.num_rows - passed
                        yield pa.Table.from_batches([batch.slice(passed)])
                return
            except _RowTooLarge:
                if block >= _CSV_BLOCK_MAX:
                    raise ExtractError(f"{self.name}: {path}: the row after data row {given + rejected} is larger "
                                       f"than {_CSV_BLOCK_MAX >> 20} MB, the most one read can hold") from None
                block *= 4

    def _blocks(self, path: Path, compression: str | None, block: int, bad: list[Any]) -> Iterator[pa.RecordBatch]:
        """Arrow's record batches of the file read in blocks of ``block`` bytes, the last one
        followed by an empty batch (so the malformed rows of the last block are reported)."""

        def on_invalid(row: Any) -> str:
            bad.append(row)
            return "skip" if self.skip_malformed else "error"

        with pa.input_stream(input_source(path), compression=compression) as source:
            try:
                reader = pcsv.open_csv(source, **self.arrow_options(on_invalid, block))
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):
                    return
                if _STRADDLING in str(exc):
                    raise _RowTooLarge from None
                raise self._error(path, exc, bad, self._header_names(path, compression)) from None
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    if _STRADDLING in str(exc):
                        raise _RowTooLarge from None
                    raise self._error(path, exc, bad, reader.schema.names) from None
                yield batch
            yield pa.RecordBatch.from_pylist([], schema=reader.schema)

    def unlisted_null(self, batch: pa.RecordBatch) -> tuple[str, str, int] | None:
        """(column, marker, data row) of the first text column of ``batch`` whose values are numbers
        or timestamps except for a missing-value marker not in ``null_values`` (``NA``, ``NULL``...):
        Arrow then guessed text where the data is numbers. Declared (``types=``) columns are not looked at."""
        unlisted = pa.array(sorted(_MISSING_MARKERS - set(self.null_values)), pa.string())
        for name, values in zip(batch.schema.names, batch.columns, strict=True):
            if name in self.types or not pa.types.is_string(values.type):
                continue
            marked = pc.fill_null(pc.is_in(values, value_set=unlisted), False)
            if not pc.any(marked).as_py():
                continue
            rest = pc.drop_null(pc.filter(values, pc.invert(marked)))
            # A few values first: a text column fails there at once (a failing cast of a whole block is slow).
            if len(rest) and any(_casts(rest.slice(0, 64), to) and _casts(rest, to)
                                 for to in (pa.float64(), pa.timestamp("s"))):
                row = pc.index(marked, True).as_py()
                return name, values[row].as_py(), row + 1
        return None

    def refuse_unlisted_nulls(self, path: Path, batch: pa.RecordBatch) -> None:
        """Fail loudly (see :meth:`unlisted_null`) rather than load numbers as text."""
        found = self.unlisted_null(batch)
        if found:
            column, marker, row = found
            raise ExtractError(
                f"{self.name}: {path} data row {row}: column {column!r} holds numbers and {marker!r}, which is not "
                f"one of null_values {list(self.null_values)}; if {marker!r} means missing, pass "
                f"null_values={[*self.null_values, marker]} (or types={{{column!r}: 'str'}} to keep the column "
                "as text)", path=str(path), column=column)

    def _header_names(self, path: Path, compression: str | None) -> list[str] | None:
        """The column names, for an error raised before the reader had a schema (best effort)."""
        if self.column_names:
            return list(self.columns or self.column_names)
        if self.columns:
            return list(self.columns)
        try:
            with open_file(path, compression) as fh:
                first = io.BufferedReader(fh).readline().decode(self.encoding, errors="replace").rstrip("\r\n")
        except Exception:  # noqa: BLE001 (best effort: the error is shown without names)
            return None
        import csv

        row = next(csv.reader([first], delimiter=self.delimiter), [])
        return row if self.header else [f"f{i}" for i in range(len(row))]

    def _error(self, path: Path, exc: Exception, bad: list[Any], names: list[str] | None = None) -> ExtractError:
        if bad:
            row = bad[-1]
            return ExtractError(f"{self.name}: {path} line {row.number}: expected {row.expected_columns} columns, "
                                f"got {row.actual_columns}: {row.text[:200]!r} (malformed='skip' sets such rows "
                                "aside)", path=str(path), row=row.number)
        message = str(exc).replace("\n", " ")
        match = _CONVERSION.search(message)
        if match and names is not None:
            index, line, type_name, value = match.groups()
            column = names[int(index)] if int(index) < len(names) else f"#{index}"
            hint = "" if column in self.types else \
                f" (its type was guessed from the first rows; set it with types={{{column!r}: ...}})"
            if value in _MISSING_MARKERS and value not in self.null_values:
                hint += f"; if {value!r} means missing, pass null_values={[*self.null_values, value]}"
            return ExtractError(f"{self.name}: {path} line {line}: column {column!r} cannot be read as "
                                f"{type_name}: invalid value {value!r}{hint}", path=str(path), row=int(line),
                                column=column)
        return ExtractError(f"{self.name}: {path}: {message}", path=str(path))


def _casts(values: pa.Array, to: pa.DataType) -> bool:
    """True when every value of the text array ``values`` converts to ``to``."""
    try:
        values.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True
