"""Capabilities as keywords of the built-in extractors (issue 26 §4): ``interval_aware=True`` declares
what the source reads, instead of an attribute set after construction (which keeps working)."""

from __future__ import annotations

import inspect

import pytest

from pipelines.tools.extractors.db_extractor import create_db_extractor
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.extractors.http_extractor import create_http_extractor
from pipelines.tools.extractors.sql_source import create_sql_extractor

# Each factory with arguments whose source does not name the interval, and with ones that do.
PLAIN = {
    create_file_extractor: (("data/orders.csv",), {}),
    create_http_extractor: (("https://api.example.com/orders",), {}),
    create_db_extractor: ((), {"url": "sqlite:///x.db", "query": "SELECT * FROM orders"}),
    create_sql_extractor: (("SELECT * FROM orders",), {}),
}
DATED = {
    create_file_extractor: (("data/orders_{start_date}.csv",), {}),
    create_http_extractor: (("https://api.example.com/orders?since={start}",), {}),
    create_db_extractor: ((), {"url": "sqlite:///x.db",
                               "query": "SELECT * FROM orders WHERE t >= :start AND t < :end"}),
    create_sql_extractor: (("SELECT * FROM orders WHERE t >= {start} AND t < {end}",), {}),
}


@pytest.mark.parametrize("factory", list(PLAIN), ids=lambda f: f.__name__)
def test_interval_aware_is_a_keyword_that_overrides_what_is_inferred(factory) -> None:
    args, kwargs = PLAIN[factory]
    assert factory(*args, **kwargs).interval_aware is False  # inferred: the source names no interval
    assert factory(*args, **kwargs, interval_aware=True).interval_aware is True
    dated_args, dated_kwargs = DATED[factory]
    assert factory(*dated_args, **dated_kwargs).interval_aware is True
    assert factory(*dated_args, **dated_kwargs, interval_aware=False).interval_aware is False
    param = inspect.signature(factory).parameters["interval_aware"]
    assert (param.kind, param.default) == (inspect.Parameter.KEYWORD_ONLY, None)
    assert "interval_aware" in (factory.__doc__ or "")


def test_the_attribute_set_after_construction_still_works() -> None:
    extractor = create_file_extractor("data/orders.csv")
    extractor.interval_aware = True
    assert extractor.interval_aware is True


def test_the_shipped_example_declares_it_as_a_keyword() -> None:
    from core.config import PROJECT_ROOT

    source = (PROJECT_ROOT / "src" / "pipelines" / "example_pipeline.py").read_text()
    assert "interval_aware=True" in source and ".interval_aware = True" not in source
