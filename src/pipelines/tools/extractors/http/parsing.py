"""One HTTP response -> its records as an Arrow table, and its JSON document for pagination.

The Arrow fast path is ``json_records.read_document_records`` (shared with the file
extractor); the python path (``json.loads``) takes over for lists, explode, conflicting types, or
a body the fast reader rejects, and names the error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pyarrow as pa

from core.exceptions import ExtractError
from pipelines.tools.extractors.json_records import (
    ArrowJsonReader,
    FastPathUnavailable,
    flatten_records,
    read_document_records,
    rows_to_table,
)


def dig(obj: Any, path: str | None) -> Any:
    """The value at a dotted path (``"data.items"``); ``obj`` itself for no path; None if absent."""
    if not path:
        return obj
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


class RecordsParser:
    """Finds the records in a response body (``records_path``), flattened or exploded."""

    def __init__(self, records_path: str | None, flatten: bool, explode: str | None) -> None:
        self.records_path, self.flatten, self.explode = records_path, flatten, explode
        self.path = records_path.split(".") if records_path else []

    def parse(self, response: httpx.Response, reader: ArrowJsonReader, where: Callable[[], str],
              snippet: Callable[[], str]) -> tuple[pa.Table, Callable[[], Any]]:
        """The records as a table, and a function returning the document (built when called).

        ``where()`` starts an error message (extractor, method, safe URL), ``snippet()`` is the
        body's start with secrets masked.
        """
        content = response.content
        if response.status_code == 204 or not content.strip():
            return pa.table({}), lambda: None
        if self.explode is None:
            try:
                table, doc = read_document_records(reader, content, self.path, flatten=self.flatten)
                return table, _Envelope(doc)
            except FastPathUnavailable:
                pass
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ExtractError(f"{where()} returned a body that is not JSON ({exc}; HTTP {response.status_code}); "
                               f"body: {snippet()!r}") from None
        records = dig(data, self.records_path)
        if not isinstance(records, list):
            at = f"at '{self.records_path}'" if self.records_path else "at the top level"
            found = "nothing" if records is None else f"a JSON {type(records).__name__}"
            raise ExtractError(f"{where()}: expected a list of records {at}, found {found} "
                               f"(HTTP {response.status_code}); body: {snippet()!r}")
        try:
            rows = flatten_records(records, flatten=self.flatten, explode=self.explode)
        except ValueError as exc:
            raise ExtractError(f"{where()}: {exc}; body: {snippet()!r}") from None
        return rows_to_table(rows), lambda: data


class _Envelope:
    """The response document as a dict, built only when pagination needs it."""

    def __init__(self, doc: pa.Table) -> None:
        self.doc = doc

    def __call__(self) -> Any:
        # Only the non-record fields are needed: skip lists (the records) before converting.
        column = self.doc.column("d")
        if not pa.types.is_struct(column.type):
            return None
        return _struct_without_lists(column.combine_chunks())[0]


def _struct_without_lists(array: pa.StructArray) -> list[Any]:
    """Python values of a struct array, skipping list fields (the records) at every level."""
    names, children = [], []
    for i, field in enumerate(array.type):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            continue
        child = array.field(i)
        names.append(field.name)
        children.append(_struct_without_lists(child) if pa.types.is_struct(field.type) else child.to_pylist())
    if not names:
        return [{} for _ in range(len(array))]
    return [dict(zip(names, values, strict=True)) for values in zip(*children, strict=True)]
