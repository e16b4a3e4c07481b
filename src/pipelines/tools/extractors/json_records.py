"""JSON records -> Arrow tables, shared by the HTTP and file extractors.

Two paths produce the same columns:

- **fast**: Arrow's C++ JSON reader parses the raw bytes (no Python objects per record, and it
  releases the GIL). Used when the records are objects whose values are scalars or nested objects.
- **python**: ``json.loads`` + :func:`flatten_records`, used when the data has lists (kept as JSON
  strings or exploded), when types conflict, or when the fast reader rejects the input (the
  python path then produces the precise error).

Both keep JSON strings as strings: Arrow's reader turns ISO-looking strings into timestamps, which
would make a column's type depend on the page it came from, so those fields are re-read as strings
(the learned schema is reused for the following pages, so this costs one extra parse per new
field, not per page). Use a type transformer to get datetimes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowIndexError)


class FastPathUnavailable(Exception):
    """The fast reader cannot represent this input faithfully; use the python path."""


# ---- schema helpers ------------------------------------------------------------------------

def _map_type(t: pa.DataType) -> pa.DataType | None:
    """The learned type for ``t``: timestamps as strings; ``None`` drops the field (null type)."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.string()
    if pa.types.is_null(t):
        return None
    if pa.types.is_struct(t):
        fields = [f.with_type(m) for f in t for m in [_map_type(f.type)] if m is not None]
        return pa.struct(fields)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _map_type(t.value_type)
        return pa.list_(inner) if inner is not None else None
    return t


def _learn(schema: pa.Schema) -> pa.Schema:
    fields = [f.with_type(m) for f in schema for m in [_map_type(f.type)] if m is not None]
    return pa.schema(fields)


def _contains(t: pa.DataType, predicate) -> bool:
    if predicate(t):
        return True
    if pa.types.is_struct(t):
        return any(_contains(f.type, predicate) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _contains(t.value_type, predicate)
    return False


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


class ArrowJsonReader:
    """Arrow's JSON reader with a schema learned from earlier inputs (see module docstring)."""

    def __init__(self) -> None:
        self.schema: pa.Schema | None = None

    def _read(self, data: bytes, schema: pa.Schema | None) -> pa.Table:
        return pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=max(len(data) + 64, 1 << 16), use_threads=False),
            parse_options=pj.ParseOptions(newlines_in_values=True, explicit_schema=schema,
                                          unexpected_field_behavior="infer"),
        )

    def read(self, data: bytes) -> pa.Table:
        """Parse newline-delimited JSON objects; raises ``FastPathUnavailable`` on any problem."""
        try:
            table = self._read(data, self.schema)
            if any(_contains(f.type, _is_temporal) for f in table.schema):
                self.schema = _learn(table.schema)
                table = self._read(data, self.schema)
        except _READ_ERRORS as exc:
            raise FastPathUnavailable(str(exc)) from None
        learned = _learn(table.schema)
        if self.schema is None or learned != self.schema:
            # Keep fields learned earlier that this input did not have (a field absent from one
            # page must not lose its type for the next).
            if self.schema is not None:
                names = set(learned.names)
                learned = pa.schema(list(learned) + [f for f in self.schema if f.name not in names])
            self.schema = learned
        return table


def read_document_records(reader: ArrowJsonReader, content: bytes, path: Sequence[str] = (), *,
                          flatten: bool) -> tuple[pa.Table, pa.Table]:
    """The fast path for one JSON document: the records (the list of objects at the dotted
    ``path``, the document itself when empty) as a table, and the parsed document.

    Raises ``FastPathUnavailable`` when the records are not a list of objects, a record or the
    list is null, or a record holds lists: the python path then decides (and names the error).
    """
    doc = reader.read(b'{"d":' + content + b"}")
    column = doc.column("d")
    for part in path:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            raise FastPathUnavailable("path")
        column = pa.chunked_array([c.field(part) for c in column.chunks], type=column.type.field(part).type)
    if not pa.types.is_list(column.type) or not pa.types.is_struct(column.type.value_type):
        raise FastPathUnavailable("shape")
    items = column.combine_chunks()
    if items.null_count:
        raise FastPathUnavailable("null list")
    structs = items.flatten()
    if structs.null_count:
        raise FastPathUnavailable("null record")
    return records_from_arrow(pa.Table.from_struct_array(structs), flatten=flatten), doc


# ---- flattening ------------------------------------------------------------------------------

def flatten_struct_table(table: pa.Table, sep: str = "_") -> pa.Table:
    """Struct columns become one column per field (``a.b`` -> ``a_b``), recursively."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        names: list[str] = []
        columns: list[pa.ChunkedArray] = []
        for field, column in zip(table.schema, table.columns, strict=False):
            if not pa.types.is_struct(field.type):
                names.append(field.name)
                columns.append(column)
                continue
            # StructArray.flatten() merges the parent's validity into the children.
            children = [c.flatten() for c in column.chunks] if column.num_chunks else []
            for i, sub in enumerate(field.type):
                names.append(f"{field.name}{sep}{sub.name}")
                chunks = [child[i] for child in children]
                columns.append(pa.chunked_array(chunks, type=sub.type))
        table = pa.Table.from_arrays(columns, names=names)
    return table


def records_from_arrow(table: pa.Table, *, flatten: bool) -> pa.Table:
    """Finish a fast-path table: flatten nested objects; lists need the python path."""
    if any(_contains(f.type, _is_list) for f in table.schema):
        raise FastPathUnavailable("lists")
    return flatten_struct_table(table) if flatten else table


def _flatten_into(obj: dict[str, Any], prefix: str, out: dict[str, Any], flatten: bool) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and flatten:
            _flatten_into(value, f"{name}_", out, flatten)
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value, ensure_ascii=False)
        else:
            out[name] = value


def _pop_path(record: dict[str, Any], parts: Sequence[str]) -> tuple[dict[str, Any], Any]:
    """A shallow copy of ``record`` without the value at ``parts``, and that value."""
    head, rest = parts[0], parts[1:]
    copy = dict(record)
    if not rest:
        return copy, copy.pop(head, None)
    child = copy.get(head)
    if not isinstance(child, dict):
        return copy, None
    copy[head], value = _pop_path(child, rest)
    return copy, value


def flatten_records(records: Iterable[Any], *, flatten: bool = True, explode: str | None = None,
                    where: str = "record") -> list[dict[str, Any]]:
    """Flat dicts from JSON objects; lists become JSON strings, or rows when ``explode`` names one.

    ``explode`` is the dotted path of a list field: each element becomes a row carrying the
    parent's other fields (objects are flattened under the path's name, e.g. ``items_sku``); an
    empty or missing list keeps the parent row with nulls.
    """
    parts = explode.split(".") if explode else None
    prefix = "_".join(parts) if parts else ""
    rows: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{where} {index} is {type(record).__name__}, expected a JSON object")
        if parts is None:
            row: dict[str, Any] = {}
            _flatten_into(record, "", row, flatten)
            rows.append(row)
            continue
        rest, items = _pop_path(record, parts)
        base: dict[str, Any] = {}
        _flatten_into(rest, "", base, flatten)
        if not isinstance(items, list) or not items:
            # Nothing to explode: keep the parent row (its element columns are null).
            rows.append(_with_obj(base, items, prefix) if isinstance(items, dict) else base)
            continue
        for item in items:
            rows.append(_with_obj(base, item, prefix) if isinstance(item, dict)
                        else {**base, prefix: json.dumps(item) if isinstance(item, list) else item})
    return rows


def _with_obj(base: dict[str, Any], item: dict[str, Any], prefix: str) -> dict[str, Any]:
    row = dict(base)
    _flatten_into(item, f"{prefix}_", row, True)
    return row


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Columns in order of first appearance; a column whose values mix types becomes strings."""
    names: dict[str, None] = {}
    for row in rows:
        if len(row) != len(names) or any(k not in names for k in row):
            for key in row:
                names.setdefault(key, None)
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays.append(pa.array(values))
        except (*_READ_ERRORS, OverflowError):
            arrays.append(pa.array([_as_text(v) for v in values], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=list(names)) if names else pa.table({})


# ---- batching --------------------------------------------------------------------------------

def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns may differ; a type conflict makes that column strings."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except _READ_ERRORS:
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, set()).add(field.type)
    conflicting = {name for name, seen in types.items() if len(seen) > 1}
    fixed = []
    for table in tables:
        for name in conflicting & set(table.column_names):
            i = table.column_names.index(name)
            column = table.column(i)
            try:
                cast = column.cast(pa.string())
            except _READ_ERRORS:
                cast = pa.chunked_array([pa.array([_as_text(v) for v in column.to_pylist()], type=pa.string())])
            table = table.set_column(i, name, cast)
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


class Batcher:
    """Accumulates tables and hands out batches of exactly ``size`` rows (the last may be shorter)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows < self.size:
            return []
        combined = concat(self.tables)
        full = (combined.num_rows // self.size) * self.size
        out = [combined.slice(i, self.size) for i in range(0, full, self.size)]
        rest = combined.slice(full)
        self.tables = [rest] if rest.num_rows else []
        self.rows = rest.num_rows
        return out

    def flush(self) -> list[pa.Table]:
        if not self.rows:
            return []
        combined = concat(self.tables)
        self.tables, self.rows = [], 0
        return [combined]
