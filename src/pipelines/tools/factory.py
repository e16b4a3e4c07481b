"""``create_*`` functions that are their component class, minus the repetition.

Each component is documented once, on its class; its ``create_*`` function is made with
:func:`component_factory`, so it takes exactly the class's parameters (same names, defaults and
positional order), and ``help()``, ``inspect.signature`` and type checkers (through
``ParamSpec``) show the class's signature and documentation. Nothing is listed twice, so the
factory cannot drift from the class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
C = TypeVar("C")


def component_factory(cls: Callable[P, C], name: str) -> Callable[P, C]:
    """A function called ``name`` that builds ``cls`` with the class's own parameters."""

    def create(*args: P.args, **kwargs: P.kwargs) -> C:
        return cls(*args, **kwargs)

    cls_name = getattr(cls, "__name__", repr(cls))
    create.__name__ = create.__qualname__ = name
    create.__module__ = getattr(cls, "__module__", create.__module__)
    create.__doc__ = f"Build a :class:`{cls_name}` (same parameters).\n\n{inspect.getdoc(cls) or ''}".rstrip()
    create.__signature__ = inspect.signature(cls).replace(return_annotation=cls_name)  # type: ignore[attr-defined]
    return create
