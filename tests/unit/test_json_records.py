"""The one Arrow fast path for a JSON document (``read_document_records``), used by the HTTP and
file extractors: NULLs stay NULL, strings stay strings, anything it cannot represent is refused."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.tools.extractors.json_records import ArrowJsonReader, FastPathUnavailable, read_document_records


def test_records_at_a_path_keep_nulls_and_types() -> None:
    body = (b'{"meta": {"next": "c2"}, "data": {"items": [{"id": 1, "amount": 1.5, "when": "2026-01-15T10:00:00",'
            b' "user": {"name": "a"}}, {"id": null, "amount": null, "when": null, "user": null}]}}')
    table, doc = read_document_records(ArrowJsonReader(), body, ["data", "items"], flatten=True)
    assert table.column_names == ["id", "amount", "when", "user_name"]
    assert table.schema.field("id").type == pa.int64() and table.schema.field("amount").type == pa.float64()
    assert table.schema.field("when").type == pa.string()  # an ISO-looking string is not a timestamp
    assert table.to_pylist() == [{"id": 1, "amount": 1.5, "when": "2026-01-15T10:00:00", "user_name": "a"},
                                 {"id": None, "amount": None, "when": None, "user_name": None}]
    assert doc.column("d").to_pylist()[0]["meta"] == {"next": "c2"}


def test_a_top_level_list_unflattened() -> None:
    table, _ = read_document_records(ArrowJsonReader(), b'[{"a": {"b": 1}}, {"a": {"b": 2}}]', flatten=False)
    assert table.column_names == ["a"] and table.column("a").to_pylist() == [{"b": 1}, {"b": 2}]


@pytest.mark.parametrize("body, path", [
    (b'{"items": [{"id": 1}]}', ["data"]),              # no such path
    (b'{"items": {"id": 1}}', ["items"]),               # not a list
    (b'[1, 2]', []),                                     # not objects
    (b'[{"id": 1}, null]', []),                          # a null record
    (b'{"items": null}', ["items"]),                     # a null list
    (b'[{"tags": ["a", "b"]}]', []),                     # lists need the python path
    (b'[{"id": 1}, {"id": "x"}]', []),                   # conflicting types
    (b'[{"id": 1', []),                                  # not JSON
])
def test_what_the_fast_path_refuses(body: bytes, path: list[str]) -> None:
    with pytest.raises(FastPathUnavailable):
        read_document_records(ArrowJsonReader(), body, path, flatten=True)
