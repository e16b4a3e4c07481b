"""What a data check is: a small object that looks at a run's staged rows in ClickHouse.

A check is either a subclass of :class:`Check` or a function decorated with :func:`data_check`.
The built-ins (``audit.builtins``) are written exactly that way, so a check of your own gets
everything they get: validation when the pipeline is built and when the run starts, a result
row in ``_dp_checks``, severities, samples of failing rows, ``./run.sh checks``, alerts.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import wraps
from typing import Any, ClassVar, Literal

from audit.staged import Audit, Outcome
from core.exceptions import CheckDefinitionError

__all__ = ["Check", "FunctionCheck", "Outcome", "Severity", "data_check", "parse_age"]

Severity = Literal["error", "warn"]
SEVERITIES = ("error", "warn")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:()\-, ]*$")


class Check:
    """Base of every data check.

    Subclasses set ``kind`` (the short name shown in results), list the columns they read in
    :meth:`columns` (validated against the table, so a typo fails before any data moves), and
    implement either :meth:`failing_sql` (a query returning the failing rows) or
    :meth:`evaluate` (anything else, returning an :class:`Outcome`).
    """

    kind: ClassVar[str] = "check"

    def __init__(self, *, name: str | None = None, severity: Severity = "error") -> None:
        if severity not in SEVERITIES:
            raise CheckDefinitionError(f"check '{name or self.kind}': severity must be 'error' or 'warn', "
                                       f"got {severity!r}")
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            raise CheckDefinitionError(f"check name {name!r}: use letters, digits and _ . : - ( ) , only")
        self.severity: Severity = severity
        self._name = name

    @property
    def name(self) -> str:
        """Unique within a pipeline: the given name, else ``kind(columns)``."""
        if self._name:
            return self._name
        columns = self.columns()
        return f"{self.kind}({', '.join(columns)})" if columns else self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.severity})>"

    def columns(self) -> list[str]:
        """Columns of the table this check reads (checked to exist)."""
        return []

    def validate(self, loader: Any) -> None:
        """Refuse a definition the loader cannot run (raise :class:`CheckDefinitionError`); no I/O."""

    def failing_sql(self, audit: Audit) -> str:
        """A SELECT over ``audit.staging`` returning the failing rows (parameters: ``audit.params``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement failing_sql() or evaluate()")

    def sql_to_explain(self, audit: Audit) -> str | None:
        """SQL whose syntax and columns ClickHouse checks when the run starts (None: nothing to check)."""
        return None

    def evaluate(self, audit: Audit) -> Outcome:
        """Run the check; the default counts and samples the rows of :meth:`failing_sql`."""
        return audit.failing_rows(self.failing_sql(audit))


class FunctionCheck(Check):
    """A check made from a function by :func:`data_check`."""

    def __init__(self, function: Callable[..., Any], kind: str, bound: inspect.BoundArguments, *,
                 name: str | None = None, severity: Severity = "error") -> None:
        self.kind = kind  # type: ignore[misc]  (per instance: one class serves every function)
        super().__init__(name=name, severity=severity)
        self.function = function
        self.bound = bound  # the declared arguments, the first (the audit) left as None
        self.arguments = dict(list(bound.arguments.items())[1:])

    def columns(self) -> list[str]:
        found: list[str] = []
        for key in ("column", "columns"):
            value = self.arguments.get(key)
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, Sequence):
                found.extend(str(v) for v in value)
        return found

    def evaluate(self, audit: Audit) -> Outcome:
        result = self.function(audit, *self.bound.args[1:], **self.bound.kwargs)
        if isinstance(result, Outcome):
            return result
        if isinstance(result, str):
            return audit.failing_rows(result)
        if isinstance(result, bool) or not isinstance(result, int):
            raise CheckDefinitionError(f"check '{self.name}': the function must return SQL (failing rows), "
                                       f"an int (failing count) or an Outcome, got {type(result).__name__}")
        return Outcome(result, detail=f"{result} failing")


def data_check(function: Callable[..., Any] | None = None, *, kind: str | None = None,
               validate: Callable[[dict[str, Any]], str | None] | None = None) -> Any:
    """Turn ``function(audit, **arguments)`` into a check factory, as the built-ins are made::

        @data_check
        def positive(audit, column):
            return f"SELECT * FROM {audit.staging} WHERE {audit.q(column)} <= 0"

        'checks': [positive("amount", severity="warn")]

    The function returns SQL selecting the failing rows, a failing count, or an :class:`Outcome`.
    Arguments named ``column`` / ``columns`` are validated as column names; ``validate``
    (optional) gets the arguments when the check is declared and returns a problem or None.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., FunctionCheck]:
        signature = inspect.signature(fn)
        label = kind or fn.__name__

        @wraps(fn)
        def factory(*args: Any, name: str | None = None, severity: Severity = "error", **kwargs: Any) -> FunctionCheck:
            try:
                bound = signature.bind(None, *args, **kwargs)
            except TypeError as exc:
                raise CheckDefinitionError(f"check '{name or label}': {exc}") from None
            bound.apply_defaults()
            check = FunctionCheck(fn, label, bound, name=name, severity=severity)
            problem = _column_problem(check.arguments) or (validate(check.arguments) if validate else None)
            if problem:
                raise CheckDefinitionError(f"check '{check.name}': {problem}")
            return check

        return factory

    return wrap(function) if function is not None else wrap


def _column_problem(arguments: dict[str, Any]) -> str | None:
    for key in ("column", "columns"):
        if key not in arguments:
            continue
        value = arguments[key]
        names = [value] if isinstance(value, str) else list(value or [])
        if not names or not all(isinstance(n, str) and n for n in names):
            return f"'{key}' must name one or more columns, got {value!r}"
    return None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(value: timedelta | float | int | str, what: str) -> timedelta:
    """``timedelta``, seconds, or text like ``90s``, ``30m``, ``2h``, ``1d``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise CheckDefinitionError(f"{what}: expected a duration like '2h', '30m', '1d' or seconds, got {value!r}")
    if seconds <= 0:
        raise CheckDefinitionError(f"{what}: the duration must be greater than 0, got {value!r}")
    return timedelta(seconds=seconds)
