"""The run's ``{placeholders}`` in the HTTP extractor's URL, query parameters and JSON body.

This is the HTTP side's only renderer (the file extractor reuses :func:`render` for paths).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{(start|end|start_date|end_date|run_id|pipeline)\}")
_INTERVAL_PLACEHOLDER = re.compile(r"\{(start|end|start_date|end_date)\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace the run's placeholders only (other braces, e.g. in JSON, stay as they are)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def uses_interval(value: Any) -> bool:
    """Whether a string, or any string inside a mapping/list, names the run's interval."""
    if isinstance(value, str):
        return bool(_INTERVAL_PLACEHOLDER.search(value))
    if isinstance(value, Mapping):
        return any(uses_interval(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(uses_interval(v) for v in value)
    return False


def render_any(value: Any, values: Mapping[str, str]) -> Any:
    """:func:`render` applied to every string inside ``value`` (mappings and lists are copied)."""
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, Mapping):
        return {k: render_any(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_any(v, values) for v in value]
    return value
