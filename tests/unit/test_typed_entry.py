"""The typed registry entry and the short import path (issue 26 §4): ``PipelineEntryDict`` has the
keys and types of the pydantic ``PipelineEntry``, and ``from pipelines import ...`` gives the common
factories without importing the data stack until one is used."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from conftest import SRC
from core.models import PipelineEntry, PipelineEntryDict

SHORT = {
    "create_etl_pipeline": "pipelines.pipeline_factory",
    "create_el_pipeline": "pipelines.pipeline_factory",
    "create_sql_pipeline": "pipelines.tools.extractors.sql_source",
    "create_file_extractor": "pipelines.tools.extractors.file_extractor",
    "create_http_extractor": "pipelines.tools.extractors.http.extractor",
    "create_db_extractor": "pipelines.tools.extractors.db_extractor",
    "create_sql_extractor": "pipelines.tools.extractors.sql_source",
    "create_lambda_transformer": "pipelines.tools.transformers.transformers",
    "create_type_transformer": "pipelines.tools.transformers.transformers",
    "create_column_transformer": "pipelines.tools.transformers.transformers",
    "create_validation_transformer": "pipelines.tools.transformers.validation",
    "create_clickhouse_loader": "pipelines.tools.loaders.clickhouse_loader",
    "create_console_loader": "pipelines.tools.loaders.console_loader",
    "create_file_loader": "pipelines.tools.loaders.file_loader",
    "Extractor": "pipelines.interfaces",
    "Transformer": "pipelines.interfaces",
    "Loader": "pipelines.interfaces",
    "RunContext": "pipelines.interfaces",
    "PipelineEntryDict": "core.models",
}

WIDER = {"start_date": str, "depends_on": str}
EXAMPLE = {"start_date": "2013-01-01", "depends_on": "orders"}


def test_the_typed_entry_has_the_models_keys_and_types() -> None:
    hints = typing.get_type_hints(PipelineEntryDict)
    assert list(hints) == list(PipelineEntry.model_fields)
    assert PipelineEntryDict.__total__ is False and PipelineEntryDict.__required_keys__ == frozenset()
    for key, field in PipelineEntry.model_fields.items():
        if key in WIDER:  # the model also accepts this form (its validator or pydantic parses it)
            assert hints[key] == field.annotation | WIDER[key], key
            PipelineEntry(pipeline=None, **{key: EXAMPLE[key]})
        else:
            assert hints[key] == field.annotation, key


def test_a_typed_entry_is_accepted_by_the_model() -> None:
    entry: PipelineEntryDict = {"pipeline": object(), "schedule": "0 * * * *", "retries": 2,
                                "depends_on": ["orders"]}
    assert PipelineEntry(**entry).retries == 2


@pytest.mark.parametrize("name", sorted(SHORT))
def test_the_short_import_path_is_the_same_object(name: str) -> None:
    import importlib

    import pipelines

    assert getattr(pipelines, name) is getattr(importlib.import_module(SHORT[name]), name)
    assert name in pipelines.__all__ and name in dir(pipelines)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pipelines

    with pytest.raises(AttributeError, match="module 'pipelines' has no attribute 'create_nothing'"):
        pipelines.create_nothing  # noqa: B018


def test_importing_the_package_imports_no_data_stack() -> None:
    heavy = "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'httpx', 'chdb') if m in sys.modules))"
    probe = f"import sys; sys.path.insert(0, {str(SRC)!r}); import pipelines; {heavy}"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
