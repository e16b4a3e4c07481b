"""Pipelines: the component interfaces, factories, discovery and your *_pipeline.py modules.

The common names import from here in one line (``from pipelines import create_file_extractor,
create_clickhouse_loader, create_etl_pipeline``). Each is imported from its module when first used,
so importing the package costs nothing (commands that touch no data never load the data stack).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module defining it (docs/api-reference.md lists them).
_EXPORTS = {
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
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipelines' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
