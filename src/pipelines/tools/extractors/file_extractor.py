"""File extractor: CSV/TSV, JSON, JSON Lines and Parquet, plain, gzip or zstd, one file or a glob,
on this machine or in an S3-compatible bucket (``s3://bucket/key``, see ``object_store``).

    create_file_extractor("data/{start_date}/*.csv.gz", types={"amount": "float"}, malformed="skip")

Reading streams: CSV through Arrow's incremental reader, Parquet record batch by record batch,
JSON Lines in chunks of lines; only JSON documents (one array per file) are read whole. Malformed
input either fails naming the file and line (``malformed="error"``, the default) or is set aside
in ``_dp_quarantine`` with the reason (``malformed="skip"``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.exceptions import ConfigError, ExtractError
from pipelines.interfaces import Extractor, RunContext, SqlSource, declared
from pipelines.tools.arrow_types import arrow_type, convert_column
from pipelines.tools.extractors.csv_pushdown import csv_sql_source, local_files
from pipelines.tools.extractors.file_batches import batch_files, local_matches
from pipelines.tools.extractors.file_formats import DEFAULT_NULL_VALUES, CsvFormat, open_file, suffixes
from pipelines.tools.extractors.http.placeholders import render
from pipelines.tools.extractors.interval_rows import filter_sql_source, filter_table, kept_message
from pipelines.tools.extractors.json_records import (
    ArrowJsonReader,
    Batcher,
    FastPathUnavailable,
    flatten_records,
    read_document_records,
    records_from_arrow,
    rows_to_table,
)
from pipelines.tools.extractors.object_store import S3Bucket, is_s3
from pipelines.tools.factory import component_factory

_INTERVAL = re.compile(r"\{(start|end|start_date|end_date)\}")
_JSONL_CHUNK_BYTES = 8 << 20
_QUARANTINE_FLUSH = 10_000
# Characters that would change the meaning of a path inside file('...'): globs, lists, quotes.
_UNSAFE_IN_SQL = re.compile(r"[*?{}\[\],'\\]")


class FileExtractor(Extractor):
    """An extractor reading CSV/TSV, JSON (array), JSON Lines or Parquet files.

    Args:
        path: a file or glob (``**`` allowed), relative to the project root unless absolute, or
            ``s3://bucket/key-or-glob``; may use ``{start}``, ``{end}``, ``{start_date}``,
            ``{end_date}`` (then the extractor is interval-aware). Files are read in sorted order.
        endpoint, region, key_env, secret_env: S3 only: an S3-compatible store's endpoint, the region,
            the variables holding the key pair (defaults from the environment: see ``object_store``).
        format: ``csv``, ``tsv``, ``json``, ``jsonl`` or ``parquet``; default from the extension
            (``.csv``, ``.tsv``, ``.json``, ``.jsonl``/``.ndjson``, ``.parquet``), after removing
            ``.gz``/``.zst``, which select gzip/zstd decompression (or pass ``compression``).
        columns: keep only these columns (in this order).
        types: ``{column: type}`` (``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"datetime"``,
            ``"date"``, ``"decimal(p,s)"`` or a pyarrow type). For CSV the types are used while
            parsing (otherwise Arrow infers them from the first block).
        malformed: ``"error"`` (default): a malformed row fails the run naming file and line;
            ``"skip"``: such rows go to ``_dp_quarantine`` (source, line, raw text, reason) and are
            counted in the run's ``rows_quarantined``.
        allow_empty: an empty match is not an error (the run extracts nothing).
        delimiter, header, column_names, encoding: CSV options (``header=False`` without
            ``column_names`` names the columns ``f0``, ``f1``...).
        null_values: CSV: the strings that mean NULL, in every column whatever its type (text
            included), quoted or not; default ``[""]`` (only the empty field). ``NA`` is not in it
            (Namibia's code in a text column): a column of numbers holding ``NA`` (or ``NULL``,
            ``NaN``, ``N/A``... when unlisted) fails naming the column and the list to pass.
        flatten, explode: JSON options, as for the HTTP extractor.
        batch_size: rows per batch (default: the ``BATCH_SIZE`` setting).
        interval_aware: declare whether the source reads only the run's interval (``True``: runs can
            be backfilled); default (``None``): inferred from the path (a ``{start_date}``-like placeholder in
            it) or ``keep_interval_rows``.
        keep_interval_rows: the name of a time column: keep only the rows whose time lies in the run's
            interval (a whole-dataset file loaded by an interval pipeline); the job log says how many
            were kept and dropped. A NULL time is kept (the loader then fails the run). Default
            (``None``): every row is loaded, and the loader fails the run on a row outside the interval.
    """

    def __init__(self, path: str | Path, *, format: str | None = None, columns: Sequence[str] | None = None,
                 types: Mapping[str, Any] | None = None, malformed: str = "error", allow_empty: bool = False,
                 name: str | None = None, delimiter: str | None = None, header: bool = True,
                 column_names: Sequence[str] | None = None, encoding: str = "utf8",
                 compression: str | None = None, flatten: bool = True, explode: str | None = None,
                 batch_size: int | None = None, null_values: Sequence[str] | None = None,
                 interval_aware: bool | None = None, keep_interval_rows: str | None = None,
                 endpoint: str | None = None, region: str | None = None, key_env: str = "AWS_ACCESS_KEY_ID",
                 secret_env: str = "AWS_SECRET_ACCESS_KEY") -> None:
        self.path = str(path)
        super().__init__(name or f"file:{Path(self.path).name}")
        inferred, inferred_compression = suffixes(self.path)
        self.format = (format or inferred or "").lower()
        if self.format == "ndjson":
            self.format = "jsonl"
        if self.format not in {"csv", "tsv", "json", "jsonl", "parquet"}:
            raise ConfigError(f"file extractor {self.name!r}: cannot tell the format of {self.path!r}; "
                              "pass format='csv'|'tsv'|'json'|'jsonl'|'parquet'")
        self.compression = compression or inferred_compression
        if self.compression not in {None, "gzip", "zstd"}:
            raise ConfigError(f"file extractor {self.name!r}: compression must be 'gzip' or 'zstd'")
        if malformed not in {"error", "skip"}:
            raise ConfigError(f"file extractor {self.name!r}: malformed must be 'error' or 'skip', got {malformed!r}")
        self.malformed = malformed
        self.columns = list(columns) if columns else None
        self.types = {col: arrow_type(t, f"file extractor {self.name!r}: column {col!r}")
                      for col, t in (types or {}).items()}
        self.allow_empty = allow_empty
        self.delimiter = delimiter or ("\t" if self.format == "tsv" else ",")
        self.header = header
        self.column_names = list(column_names) if column_names else None
        self.encoding = encoding
        self.flatten = flatten
        self.explode = explode
        self.batch_size = batch_size
        if isinstance(null_values, str) or not all(isinstance(v, str) for v in null_values or ()):
            raise ConfigError(f"file extractor {self.name!r}: null_values must be a list of strings, "
                              f"got {null_values!r}")
        self.null_values = tuple(DEFAULT_NULL_VALUES if null_values is None else null_values)
        self.keep_interval_rows = keep_interval_rows
        placed = bool(_INTERVAL.search(self.path) or keep_interval_rows)  # a batch: file_batches
        self.interval_aware = self.reads_range = declared(interval_aware, placed)
        self.bucket = S3Bucket(self.name, endpoint, region, key_env, secret_env) if is_s3(self.path) else None
        self.reads_remote = self.bucket is not None  # a ClickHouse server reads the bucket itself

    # ---- ClickHouse reads it itself ------------------------------------------------------------

    def sql_source(self, context: RunContext) -> SqlSource | None:
        """What ClickHouse reads itself (:meth:`_file_source`), cut to the interval by ``keep_interval_rows``."""
        source = self._file_source(context)
        if source is not None and self.bucket is not None:  # ClickHouse connects to the bucket itself
            source = dataclasses.replace(source, remote=self.bucket.address)
        keep = source is not None and self.keep_interval_rows
        return filter_sql_source(source, self.keep_interval_rows, context, self.name) if keep else source

    def _file_source(self, context: RunContext) -> SqlSource | None:
        """Plain Parquet files (no column selection, types, flattening or exploding) as
        ``file(...)``, so an EL pipeline on the embedded engine needs no Python per row; plain
        CSV files when ClickHouse is certain to read them as the Python path does (csv_pushdown)."""
        if self.format == "csv" and not self.compression:
            files = self.files(context)
            if not files or self.explode or any(_UNSAFE_IN_SQL.search(str(f)) for f in files):
                return None
            return csv_sql_source(self.csv_format, files, self.bucket.table_function if self.bucket else local_files)
        if (self.format != "parquet" or self.compression or self.columns or self.types or self.explode
                or self.column_names):
            return None
        files = self.files(context)
        if not files or any(_UNSAFE_IN_SQL.search(str(f)) for f in files):
            return None
        # Every file's footer: ClickHouse would fill a later file's missing columns with defaults,
        # drop its extra ones and convert its types to the first file's. The first difference ends it.
        schemas = self.bucket.schemas(files) if self.bucket else (pq.read_schema(f) for f in files)
        first = next(iter(schemas))
        if any(pa.types.is_nested(field.type) for field in first) or any(s != first for s in schemas):
            return None  # nested columns are flattened in Python; mixed files are read one by one
        # The files' declared nullability (not whether these files happen to hold NULLs): a table
        # created from a first file without NULLs must still take the next file's NULLs.
        structure = self.bucket.structure(context, files[0], "Parquet") if self.bucket and len(files) > 1 else None
        expression, parameters = (self.bucket.table_function(files, "Parquet", structure) if self.bucket
                                  else local_files(files, "Parquet"))
        return SqlSource(expression, first, files[0].name if len(files) == 1 else f"{len(files)} Parquet files",
                         parameters)

    @property
    def csv_format(self) -> CsvFormat:
        """How this extractor parses CSV/TSV (shared with CSV push-down, which must agree)."""
        return CsvFormat(self.name, self.delimiter, self.header, self.column_names, self.encoding, self.columns,
                         self.types, self.malformed == "skip", self.null_values)

    # ---- files ---------------------------------------------------------------------------------

    def files(self, context: RunContext) -> list[Any]:
        """The run's files (local Paths, or a bucket's S3Objects), sorted; none: an error unless allow_empty."""
        if context.intervals:
            return batch_files(self.files, context)
        pattern = render(self.path, context.template_values())
        if self.bucket:
            full: Any = pattern
            found: list[Any] = self.bucket.connect(context).objects(pattern)
        else:
            full, found = local_matches(pattern)
        if not found and not self.allow_empty:
            raise ExtractError(f"{self.name}: no file matches {full}" +
                               (f" (pattern {self.path!r})" if pattern != self.path else "") +
                               "; pass allow_empty=True if an empty interval is normal", path=str(full))
        return found

    def extract(self, context: RunContext) -> Iterator[pa.Table]:
        size = self.batch_size or context.settings.batch_size
        batcher = Batcher(size)
        files = self.files(context)
        if not files:
            context.logger.info("%s: no file matches %s (allowed)", self.name, self.path)
        reader = {"csv": self._csv, "tsv": self._csv, "json": self._json, "jsonl": self._jsonl,
                  "parquet": self._parquet}[self.format]
        total = kept = 0
        for path in files:
            _, compression = suffixes(str(path))
            compression = self.compression if self.compression is not None else compression
            rows = 0
            try:
                for table in reader(path, compression, size, context):
                    table = self._apply_types(table, path)
                    total += table.num_rows
                    if self.keep_interval_rows:
                        table = filter_table(table, self.keep_interval_rows, context, f"{self.name}: {path}")
                    kept += table.num_rows
                    rows += table.num_rows
                    yield from batcher.add(table)
            except (OSError, EOFError) as exc:
                raise ExtractError(f"{self.name}: cannot read {path}: {exc}") from None
            except Exception as exc:
                if "zstd" in type(exc).__module__ or type(exc).__name__ == "ZstdError":
                    raise ExtractError(f"{self.name}: cannot read {path}: {exc}") from None
                raise
            context.count("files_read", 1)
            context.logger.info("%s: %d rows from %s", self.name, rows, path)
        if self.keep_interval_rows:
            context.logger.info("%s", kept_message(self.name, kept, total))
        yield from batcher.flush()

    def _apply_types(self, table: pa.Table, path: Path) -> pa.Table:
        if self.columns:
            missing = [c for c in self.columns if c not in table.column_names]
            if missing:
                raise ExtractError(f"{self.name}: {path} has no column {', '.join(map(repr, missing))} "
                                   f"(it has {', '.join(table.column_names)})")
            table = table.select(self.columns)
        for column, type_ in self.types.items():
            if column not in table.column_names:
                raise ExtractError(f"{self.name}: {path} has no column {column!r} to convert "
                                   f"(it has {', '.join(table.column_names)})")
            i = table.column_names.index(column)
            if table.schema.field(i).type == type_:
                continue
            try:
                table = table.set_column(i, column, convert_column(table.column(i), type_))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
                raise ExtractError(f"{self.name}: {path}: column {column!r} cannot be read as {type_}: {exc}") \
                    from None
        return table

    # ---- quarantine ----------------------------------------------------------------------------

    def _reject(self, context: RunContext, pending: list[dict[str, Any]], path: Path, line: int | None,
                raw: str, error: str) -> None:
        if self.malformed == "error":
            where = f"line {line}" if line is not None else "a row"
            raise ExtractError(f"{self.name}: {path} {where}: {error}: {raw[:200]!r}", path=str(path), row=line)
        pending.append({"source": str(path), "line": line, "raw": raw, "error": error})
        if len(pending) >= _QUARANTINE_FLUSH:
            self._flush(context, pending)

    @staticmethod
    def _flush(context: RunContext, pending: list[dict[str, Any]]) -> None:
        if pending:
            context.quarantine(list(pending))
            context.logger.warning("quarantined %d malformed row(s) (first: %s line %s: %s)", len(pending),
                                   pending[0]["source"], pending[0]["line"], pending[0]["error"])
            pending.clear()

    # ---- formats -------------------------------------------------------------------------------

    def _csv(self, path: Path, compression: str | None, size: int, context: RunContext) -> Iterator[pa.Table]:
        pending: list[dict[str, Any]] = []
        try:
            yield from self.csv_format.read(
                path, compression, lambda line, raw, error: self._reject(context, pending, path, line, raw, error))
        finally:
            self._flush(context, pending)

    def _parquet(self, path: Path, compression: str | None, size: int, context: RunContext) -> Iterator[pa.Table]:
        if compression:
            with open_file(path, compression) as fh:
                source: Any = pa.BufferReader(fh.read())
        else:
            source = str(path) if isinstance(path, Path) else path.open_input_file()
        try:
            parquet = pq.ParquetFile(source)
        except pa.ArrowInvalid as exc:
            raise ExtractError(f"{self.name}: {path} is not a readable Parquet file: {exc}") from None
        try:
            for batch in parquet.iter_batches(batch_size=size, columns=self.columns, use_threads=True):
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            raise ExtractError(f"{self.name}: {path}: {exc}") from None
        finally:
            parquet.close(force=True)  # an object opened here is closed too

    def _json(self, path: Path, compression: str | None, size: int, context: RunContext) -> Iterator[pa.Table]:
        """A JSON document: an array of records (or an object holding one, read whole)."""
        with open_file(path, compression) as fh:
            content = fh.read()
        if not content.strip():
            return
        if self.explode is None:
            try:
                records, _ = read_document_records(ArrowJsonReader(), content, flatten=self.flatten)
                yield from self._slices(records, size)
                return
            except FastPathUnavailable:
                pass
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            line = getattr(exc, "lineno", None)
            raise ExtractError(f"{self.name}: {path}" + (f" line {line}" if line else "") +
                               f" is not valid JSON: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(data, list):
            raise ExtractError(f"{self.name}: {path}: expected a JSON array of records, found a JSON "
                               f"{type(data).__name__} (use format='jsonl' for one record per line)")
        pending: list[dict[str, Any]] = []
        good = []
        for index, record in enumerate(data):
            if isinstance(record, dict):
                good.append(record)
            else:
                self._reject(context, pending, path, None, json.dumps(record),
                             f"element {index} is {type(record).__name__}, expected a JSON object")
        self._flush(context, pending)
        for start in range(0, len(good), size):
            yield rows_to_table(flatten_records(good[start:start + size], flatten=self.flatten,
                                                explode=self.explode))

    @staticmethod
    def _slices(table: pa.Table, size: int) -> Iterator[pa.Table]:
        yield from (table.slice(start, size) for start in range(0, table.num_rows, size))
    def _jsonl(self, path: Path, compression: str | None, size: int, context: RunContext) -> Iterator[pa.Table]:
        pending: list[dict[str, Any]] = []
        reader = ArrowJsonReader()
        chunk: list[bytes] = []
        chunk_bytes = 0
        first_line = 1
        line_no = 0
        try:
            with open_file(path, compression) as raw:
                stream = io.BufferedReader(raw, 1 << 20) if not isinstance(raw, io.BufferedReader) else raw
                for line in stream:
                    line_no += 1
                    if not chunk:
                        first_line = line_no
                    chunk.append(line)
                    chunk_bytes += len(line)
                    if len(chunk) >= size or chunk_bytes >= _JSONL_CHUNK_BYTES:
                        table = self._jsonl_chunk(chunk, first_line, path, reader, context, pending)
                        chunk, chunk_bytes = [], 0
                        if table.num_rows:
                            yield table
                if chunk:
                    table = self._jsonl_chunk(chunk, first_line, path, reader, context, pending)
                    if table.num_rows:
                        yield table
        finally:
            self._flush(context, pending)

    def _jsonl_chunk(self, lines: list[bytes], first_line: int, path: Path, reader: ArrowJsonReader,
                     context: RunContext, pending: list[dict[str, Any]]) -> pa.Table:
        if self.explode is None:
            try:
                data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
                if data.strip():
                    return records_from_arrow(reader.read(data), flatten=self.flatten)
                return pa.table({})
            except FastPathUnavailable:
                pass
        records = []
        for offset, line in enumerate(lines):
            if not line.strip():
                continue
            number = first_line + offset
            text = line.decode(self.encoding, errors="replace").rstrip("\r\n")
            try:
                record = json.loads(line)
            except ValueError as exc:
                self._reject(context, pending, path, number, text, f"invalid JSON: {getattr(exc, 'msg', exc)}")
                continue
            if not isinstance(record, dict):
                self._reject(context, pending, path, number, text,
                             f"expected a JSON object, found a JSON {type(record).__name__}")
                continue
            records.append(record)
        return rows_to_table(flatten_records(records, flatten=self.flatten, explode=self.explode))


create_file_extractor = component_factory(FileExtractor, "create_file_extractor")
