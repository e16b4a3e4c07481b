"""The run's ``{placeholders}`` in the HTTP extractor's URL, query parameters and JSON body.

Rendering is :func:`core.placeholders.render_placeholders` in its lenient mode (other braces, e.g.
in a JSON body, stay as written); this module applies it to nested parameters and bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.placeholders import placeholders_in, render_placeholders

INTERVAL_PLACEHOLDERS = frozenset({"start", "end", "start_date", "end_date"})


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace the run's placeholders only (other braces, e.g. in JSON, stay as they are)."""
    return render_placeholders(template, values, strict=False)


def uses_interval(value: Any) -> bool:
    """Whether a string, or any string inside a mapping/list, names the run's interval."""
    if isinstance(value, str):
        return bool(placeholders_in(value, strict=False) & INTERVAL_PLACEHOLDERS)
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
