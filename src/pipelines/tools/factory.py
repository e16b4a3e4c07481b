"""``create_*`` functions that are their component's class under a function name.

Each built-in component is documented once, on its class; its ``create_*`` function (the name
the seed's examples use) takes the class's parameters in the class's order. :func:`factory_of`
gives the function the class's signature and documentation, so ``help()``, ``inspect`` and type
checkers (through ``ParamSpec``) show the real parameters without the list being written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def factory_of(cls: Callable[P, T]) -> Callable[[Callable[..., T]], Callable[P, T]]:
    """Decorate ``def create_x(*args, **kwargs): return X(*args, **kwargs)`` with ``X``'s signature and doc."""

    def decorate(function: Callable[..., Any]) -> Callable[P, T]:
        function.__signature__ = inspect.signature(cls).replace(return_annotation=cls)  # type: ignore[attr-defined]
        function.__doc__ = inspect.getdoc(cls)
        return function

    return decorate
