"""``create_*`` functions built from their component classes: one parameter list, one docstring.

    class FileExtractor(Extractor):
        \"\"\"... Args: ...\"\"\"
        def __init__(self, path, *, format=None, ...): ...

    create_file_extractor = component_factory(FileExtractor, "create_file_extractor")

The factory forwards its arguments to the class unchanged, and shows the class's parameters and
documentation (``help()``, ``inspect.signature``, editors), so neither is written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def component_factory(cls: Callable[P, T], name: str) -> Callable[P, T]:
    """A function named ``name`` that returns ``cls(*args, **kwargs)``, with the signature of
    ``cls.__init__`` (without ``self``, returning ``cls``) and the class's docstring."""

    def create(*args: P.args, **kwargs: P.kwargs) -> T:
        return cls(*args, **kwargs)

    create.__signature__ = inspect.signature(cls).replace(  # type: ignore[attr-defined]
        return_annotation=getattr(cls, "__name__", inspect.Signature.empty))
    create.__name__ = create.__qualname__ = name
    create.__doc__ = cls.__doc__
    create.__module__ = cls.__module__
    return create
