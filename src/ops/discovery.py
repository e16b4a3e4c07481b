"""Discovery as the commands see it: the pipelines layer's discovery plus the validations that
belong to the layers above it (data checks: ``audit``; per-pipeline alert settings: ``ops.alerts``).

``pipelines.pipeline_registry`` cannot import those layers (lower layers never import higher
ones), so they are handed to it here as entry checks. Everything that runs pipelines for a
person (the CLI, ``check``, ``pipelines.testing``) discovers through this module.
"""

from __future__ import annotations

from pathlib import Path

from core.models import PipelineEntry
from pipelines.pipeline_registry import EntryCheck, Registry
from pipelines.pipeline_registry import discover as discover_modules
from pipelines.pipeline_registry import get_registry as cached_registry


def _resolve_checks(name: str, entry: PipelineEntry) -> None:
    from audit.run import resolve_checks  # imported where used: discovery of a light module stays light

    entry.checks = resolve_checks(name, entry.checks, entry.pipeline.loader)


def _validate_alerts(name: str, entry: PipelineEntry) -> None:
    from ops.alerts.config import validate_overrides

    validate_overrides(name, entry.alerts)


#: Run on each valid entry, in this order (a bad check is reported before bad alert settings).
ENTRY_CHECKS: tuple[EntryCheck, ...] = (_resolve_checks, _validate_alerts)


def discover(pipelines_dir: Path) -> Registry:
    """A fresh discovery of ``pipelines_dir`` with every layer's validation."""
    return discover_modules(pipelines_dir, ENTRY_CHECKS)


def get_registry(pipelines_dir: Path, refresh: bool = False) -> Registry:
    """The process's registry for ``pipelines_dir`` (discovered once, with every layer's validation)."""
    return cached_registry(pipelines_dir, refresh, ENTRY_CHECKS)
