"""The validation transformer: rows checked against a pydantic model and/or per-column rules."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import ConfigError, TransformError
from pipelines.interfaces import Batch, RunContext, to_arrow
from pipelines.tools.factory import component_factory
from pipelines.tools.transformers.common import CAST_ERRORS, RowCounting, check_columns, short

_RULES = {"not_null", "unique", "range", "min", "max", "regex", "allowed"}


class ValidationTransformer(RowCounting):
    """Validate rows with a pydantic model and/or per-column rules.

    Rules: ``{"id": {"not_null": True, "unique": True}, "amount": {"range": (0, 1000)},
    "email": {"regex": r"[^@]+@[^@]+"}, "status": {"allowed": ["new", "paid"]}}`` (``min``/``max``
    alone also work; ``unique`` holds across the run's batches; a regex must match the whole
    value; nulls pass every rule but ``not_null``). ``on_invalid="fail"`` fails the run naming the
    rule, column, row and value; ``"quarantine"`` moves failing rows to ``_dp_quarantine``
    (source: this transformer's name, raw: the row as JSON, error: the reason) and keeps the rest.
    """

    def __init__(self, model: Any = None, rules: Mapping[str, Mapping[str, Any]] | None = None,
                 on_invalid: str = "fail", name: str | None = None) -> None:
        super().__init__(name or "validation")
        if on_invalid not in {"fail", "quarantine"}:
            raise ConfigError(f"validation transformer {self.name!r}: on_invalid must be 'fail' or "
                              f"'quarantine', got {on_invalid!r}")
        if model is None and not rules:
            raise ConfigError(f"validation transformer {self.name!r}: give a pydantic model or rules")
        if model is not None and not hasattr(model, "model_validate"):
            raise ConfigError(f"validation transformer {self.name!r}: model must be a pydantic BaseModel class")
        self.model = model
        self.on_invalid = on_invalid
        self.rules = {column: self._rule(column, spec) for column, spec in (rules or {}).items()}
        self._seen: dict[str, set[Any]] = {}

    def _rule(self, column: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """One column's rules, checked, with ``range`` as ``min``/``max``."""
        spec = dict(given)
        unknown = set(spec) - _RULES
        if unknown:
            raise ConfigError(f"validation transformer {self.name!r}: column {column!r}: unknown rule(s) "
                              f"{', '.join(sorted(unknown))}; use {', '.join(sorted(_RULES))}")
        if "range" in spec:
            low, high = spec.pop("range")
            spec.setdefault("min", low)
            spec.setdefault("max", high)
        if "regex" in spec:
            try:
                re.compile(spec["regex"])
            except re.error as exc:
                raise ConfigError(f"validation transformer {self.name!r}: column {column!r}: bad regex: {exc}") \
                    from None
        if "allowed" in spec:
            spec["allowed"] = list(spec["allowed"])
        return spec

    def _new_run(self) -> None:
        self._seen = {column: set() for column, spec in self.rules.items() if spec.get("unique")}

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        first = self._start(context, batch)
        table = to_arrow(batch)
        check_columns(self.name, table, self.rules)
        reasons: list[str | None] = [None] * table.num_rows
        for column, spec in self.rules.items():
            self._check_rules(table, column, spec, reasons)
            if spec.get("unique"):
                self._check_unique(table, column, reasons)
        if self.model is not None:
            self._validate_model(table, reasons)
        bad = [i for i, reason in enumerate(reasons) if reason is not None]
        if not bad:
            return batch if isinstance(batch, pa.Table) else table
        if self.on_invalid == "fail":
            i = bad[0]
            more = f" ({len(bad) - 1} more row(s) in this batch)" if len(bad) > 1 else ""
            raise TransformError(f"{self.name}: row {first + i}: {reasons[i]}{more}")
        rows = table.take(pa.array(bad)).to_pylist()
        context.quarantine([
            {"source": self.name, "line": first + i, "raw": json.dumps(row, default=str, ensure_ascii=False),
             "error": reasons[i]}
            for i, row in zip(bad, rows, strict=False)
        ])
        context.logger.warning("%s: %d invalid row(s) quarantined (first: row %d: %s)", self.name, len(bad),
                               first + bad[0], reasons[bad[0]])
        return table.filter(pa.array([r is None for r in reasons]))

    @staticmethod
    def _check_rules(table: pa.Table, column: str, spec: dict[str, Any], reasons: list[str | None]) -> None:
        """Give each row failing one of ``column``'s vectorised rules its (first) reason."""
        col = table.column(column)

        def flag(mask: pa.Array | pa.ChunkedArray, rule: str) -> None:
            for i in _true_indices(mask):
                if reasons[i] is None:
                    reasons[i] = f"rule {rule} failed on column {column!r} with value {short(col[i].as_py())}"

        if spec.get("not_null"):
            flag(pc.is_null(col), "not_null")
        if "min" in spec and spec["min"] is not None:
            flag(pc.fill_null(pc.less(col, pa.scalar(spec["min"]).cast(col.type) if _castable(spec["min"], col)
                                      else spec["min"]), False), f"range (min {spec['min']!r})")
        if "max" in spec and spec["max"] is not None:
            flag(pc.fill_null(pc.greater(col, pa.scalar(spec["max"]).cast(col.type) if _castable(spec["max"], col)
                                         else spec["max"]), False), f"range (max {spec['max']!r})")
        if "regex" in spec:
            is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            text = col if is_text else col.cast(pa.string())
            matched = pc.match_substring_regex(text, f"^(?:{spec['regex']})$")
            flag(pc.invert(pc.fill_null(matched, True)), f"regex {spec['regex']!r}")
        if "allowed" in spec:
            allowed = pa.array(spec["allowed"])
            probe = col if allowed.type == col.type else col.cast(allowed.type) if _can_cast(col, allowed.type) \
                else col.cast(pa.string())
            if probe.type != allowed.type:
                allowed = allowed.cast(probe.type)
            ok = pc.or_(pc.is_in(probe, allowed), pc.is_null(probe))
            flag(pc.invert(ok), f"allowed values {spec['allowed']!r}")

    def _check_unique(self, table: pa.Table, column: str, reasons: list[str | None]) -> None:
        """Flag values of ``column`` already seen in this run (in this batch or an earlier one)."""
        seen = self._seen.setdefault(column, set())
        for i, value in enumerate(table.column(column).to_pylist()):
            if value is None:
                continue
            key = _hashable(value)
            if key in seen:
                if reasons[i] is None:
                    reasons[i] = f"rule unique failed on column {column!r}: duplicate value {short(value)}"
            else:
                seen.add(key)

    def _validate_model(self, table: pa.Table, reasons: list[str | None]) -> None:
        from pydantic import ValidationError

        for i, row in enumerate(table.to_pylist()):
            if reasons[i] is not None:
                continue
            try:
                self.model.model_validate(row)
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error.get("loc", ())) or "?"
                value = row.get(field, error.get("input")) if isinstance(row, dict) else error.get("input")
                reasons[i] = f"model {self.model.__name__} failed on column {field!r} with value " \
                             f"{short(value)}: {error.get('msg')}"


def _true_indices(mask: pa.Array | pa.ChunkedArray) -> list[int]:
    mask = pc.fill_null(mask, False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(mask).to_pylist()


def _castable(value: Any, column: pa.ChunkedArray) -> bool:
    try:
        pa.scalar(value).cast(column.type)
        return True
    except CAST_ERRORS:
        return False


def _can_cast(column: pa.ChunkedArray, target: pa.DataType) -> bool:
    try:
        column.cast(target)
        return True
    except CAST_ERRORS:
        return False


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


create_validation_transformer = component_factory(ValidationTransformer, "create_validation_transformer")
