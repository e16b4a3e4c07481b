"""CSV that ClickHouse reads itself, with exactly the Python path's result or not at all.

The Python path (Arrow's CSV reader, see ``file_formats.CsvFormat.read``) decides the column types from
the first block and reads the extractor's ``null_values`` (default: only the empty field) as NULL
in every column, text included; a column of numbers holding another missing-value marker (``NA``)
fails there, so such a file is not pushed down. Push-down reproduces that only where it is
certain: every column is read by ClickHouse as raw text (positionally, no trimming, no single
quotes, no defaults for empty fields), and each value must look like what Arrow would read the
same way (``-?[0-9]{1,18}`` for an int64 column, a plain decimal for a float64 column, valid
UTF-8 without line breaks for a string column, ``YYYY-MM-DD HH:MM:SS[Z]`` that prints back the
same for a timestamp[s] column) before it is converted. Anything else (another type, a value
outside those shapes, a malformed line, an empty line) makes ClickHouse stop the statement; the
run then streams the file through the Python path (``SqlSource.fallback``), whose errors, line
numbers and quarantine decide.
Files that could differ before the first value is read (a byte-order mark, compression, an
encoding other than UTF-8, chosen columns or names) are not pushed down at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv

from core.sql_literals import sql_literal
from pipelines.interfaces import SqlSource
from pipelines.tools.extractors.file_formats import CsvFormat, input_source, open_file

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = r"^-?[0-9]{1,18}$"
_FLOAT = r"^-?[0-9]{1,300}(\\.[0-9]{1,300})?([eE][-+]?[0-9]{1,2})?$"
_SECONDS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}"
# How ClickHouse must read the text so that each field arrives as the bytes Arrow sees.
_SETTINGS = ("input_format_csv_trim_whitespaces = 0, format_csv_allow_single_quotes = 0, "
             "format_csv_allow_double_quotes = 1, input_format_with_names_use_header = 0, "
             "input_format_csv_allow_variable_number_of_columns = 0, input_format_allow_errors_num = 0, "
             "input_format_allow_errors_ratio = 0, input_format_csv_empty_as_default = 0, "
             "input_format_null_as_default = 0, input_format_csv_detect_header = 0, "
             "format_csv_delimiter = ',', precise_float_parsing = 1")


#: ``reader(files, format, structure)``: the table function reading ``files`` in this ClickHouse
#: format (with this structure), and its query parameters (local files: :func:`local_files`;
#: objects in a bucket: ``object_store.S3Bucket.table_function``).
Reader = Callable[[list[Any], str, str | None], tuple[str, dict[str, Any]]]


def local_files(files: list[Any], format: str, structure: str | None = None) -> tuple[str, dict[str, Any]]:
    """``file(...)`` over local files (their paths hold no character that changes the meaning).

    Several files are one ``{a,b}`` alternation after their common directory: ClickHouse expands
    braces only after a fixed prefix, and a list of whole paths matched no file (0 rows read)."""
    if len(files) == 1:
        paths = str(files[0])
    else:
        base = os.path.commonpath([str(f) for f in files])
        paths = base.rstrip("/") + "/{" + ",".join(os.path.relpath(str(f), base) for f in files) + "}"
    return f"file('{paths}', '{format}'" + (f", '{structure}')" if structure else ")"), {}


def python_schema(csv: CsvFormat, path: Path | Any) -> pa.Schema | None:
    """The schema the Python path gives ``path`` (from its first block), or None if unsure."""
    bad: list[Any] = []

    def on_invalid(row: Any) -> str:
        bad.append(row)
        return "skip"

    with open_file(path, None) as fh:
        if fh.read(3) == b"\xef\xbb\xbf":
            return None
    try:
        with pa.input_stream(input_source(path)) as source:
            reader = pcsv.open_csv(source, **csv.arrow_options(on_invalid))
            if bad:  # a malformed row in the first block (later ones make ClickHouse stop)
                return None
            # Numbers with a missing-value marker not in null_values: guessed as text, and the
            # Python path fails loudly on it (only a text column can be such a column).
            texts = any(pa.types.is_string(f.type) and f.name not in csv.types for f in reader.schema)
            first = next(iter(reader), None) if texts else None
    except (pa.ArrowInvalid, OSError):
        return None
    if first is not None and csv.unlisted_null(first):
        return None
    return reader.schema


def _null(name: str, csv: CsvFormat) -> str:
    """SQL: the raw field is one of the extractor's null_values (NULL in every column type)."""
    return f"{name} IN ({', '.join(sql_literal(v) for v in csv.null_values)})" if csv.null_values else "0"


def _check(name: str, type_: pa.DataType, csv: CsvFormat) -> str | None:
    """The condition a raw field must meet to be read as the Python path reads it."""
    nulls = _null(name, csv)
    if pa.types.is_int64(type_):
        return f"(match({name}, '{_INT}') OR {nulls})"
    if pa.types.is_float64(type_):
        return f"(match({name}, '{_FLOAT}') OR {nulls})"
    if pa.types.is_string(type_):
        return f"(isValidUTF8({name}) AND position({name}, '\\n') = 0 AND position({name}, '\\r') = 0)"
    if _is_seconds(type_):
        # Arrow's guess for 'YYYY-MM-DD HH:MM:SS' (with 'Z' when every value has it): the text
        # must print back the same, so an impossible date or an out-of-range year is refused.
        shape = _SECONDS + ("Z$" if type_.tz else "$")
        same = (f"formatDateTime(parseDateTime64BestEffortOrNull({name}, 0, 'UTC'), '%Y-%m-%d %H:%i:%S', 'UTC') "
                f"= replaceOne(substring({name}, 1, 19), 'T', ' ')")
        return f"((match({name}, '{shape}') AND coalesce({same}, 0)) OR {nulls})"
    return None


def _is_seconds(type_: pa.DataType) -> bool:
    return pa.types.is_timestamp(type_) and type_.unit == "s" and type_.tz in (None, "UTC")


def _value(name: str, type_: pa.DataType, alias: str, csv: CsvFormat) -> str:
    if pa.types.is_string(type_):
        value = name
    elif pa.types.is_int64(type_):  # checked: an integer or one of the null values
        value = f"toInt64OrNull({name})"
    elif _is_seconds(type_):
        value = f"parseDateTime64BestEffort({name}, 0, 'UTC')"  # naive means UTC, as in arrow_types
    else:
        value = f"toFloat64({name})"
    return f"if({_null(name, csv)}, NULL, {value}) AS `{alias}`"


def csv_sql_source(csv: CsvFormat, files: list[Any], reader: Reader = local_files) -> SqlSource | None:
    r"""``files`` (local ``Path``\ s or ``object_store.S3Object``\ s, read by ``reader``) as one
    ``SELECT``, when that is certain to equal the Python path."""
    readable = (pa.types.is_int64, pa.types.is_float64, pa.types.is_string)
    if any(not any(test(t) for test in readable) for t in csv.types.values()):
        return None  # e.g. a declared timestamp: converted in Python after reading (arrow_types)
    if (csv.delimiter != "," or not csv.header or csv.columns or csv.column_names
            or csv.encoding.lower() not in {"utf8", "utf-8"}
            or any(f.suffix.lower() != ".csv" or (f.stat().st_size if isinstance(f, Path) else f.size) == 0
                   for f in files)):
        return None
    schemas = [python_schema(csv, f) for f in files]
    schema = schemas[0]
    if schema is None or any(s != schema for s in schemas[1:]) or len(set(schema.names)) != len(schema.names):
        return None
    checks, values = [], []
    for i, field in enumerate(schema):
        check = _check(f"c{i}", field.type, csv)
        if check is None or not _NAME.match(field.name):
            return None
        checks.append(check)
        values.append(_value(f"c{i}", field.type, field.name, csv))
    structure = ", ".join(f"c{i} String" for i in range(len(schema)))
    function, parameters = reader(files, "CSVWithNames", structure)
    expression = (f"(SELECT {', '.join(values)} FROM {function} "
                  f"WHERE throwIf(NOT ({' AND '.join(checks)}), 'a value the Python path reads differently') = 0 "
                  f"SETTINGS {_SETTINGS})")
    return SqlSource(expression, schema, files[0].name if len(files) == 1 else f"{len(files)} CSV files",
                     parameters, fallback=True)
