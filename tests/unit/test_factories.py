"""Component factories are built from their classes: same parameters, same docs, same objects."""

from __future__ import annotations

import inspect
import pydoc
import re

import pytest

from pipelines.tools.extractors.db_extractor import DbExtractor, create_db_extractor
from pipelines.tools.extractors.file_extractor import FileExtractor, create_file_extractor
from pipelines.tools.extractors.sql_source import SqlExtractor, create_sql_extractor
from pipelines.tools.factory import component_factory
from pipelines.tools.transformers.transformers import (
    ColumnTransformer,
    LambdaTransformer,
    TypeTransformer,
    ValidationTransformer,
    create_column_transformer,
    create_lambda_transformer,
    create_type_transformer,
    create_validation_transformer,
)

PAIRS = [(create_file_extractor, FileExtractor), (create_db_extractor, DbExtractor),
         (create_sql_extractor, SqlExtractor),
         (create_lambda_transformer, LambdaTransformer), (create_type_transformer, TypeTransformer),
         (create_column_transformer, ColumnTransformer), (create_validation_transformer, ValidationTransformer)]


@pytest.mark.parametrize(("factory", "cls"), PAIRS, ids=[cls.__name__ for _, cls in PAIRS])
def test_a_factory_shows_its_class_parameters_and_documentation(factory, cls) -> None:
    init = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    assert list(inspect.signature(factory).parameters.values()) == init
    assert inspect.signature(factory).return_annotation == cls.__name__
    assert factory.__doc__ == cls.__doc__ and "\n" in cls.__doc__
    assert factory.__name__ == "create_" + "_".join(part.lower() for part in re.findall(r"[A-Z][a-z]+", cls.__name__))
    assert factory.__module__ == cls.__module__
    text = pydoc.render_doc(factory)
    assert all(name in text for name in inspect.signature(factory).parameters)


def test_factories_keep_the_seed_positional_order() -> None:
    def transform_data(df):
        return df

    lam = create_lambda_transformer(transform_data, "My Transformer")
    assert type(lam) is LambdaTransformer and lam.name == "My Transformer" and lam.fn is transform_data
    db = create_db_extractor("sqlite:///shop.db", None, "orders")
    assert (db.url, db.query, db.table, db.name) == ("sqlite:///shop.db", None, "orders", "db:orders")
    columns = create_column_transformer(["a"], {"a": "b"}, None, None, "cols")
    assert (columns.select, columns.rename, columns.name) == (["a"], {"a": "b"}, "cols")
    assert create_type_transformer({"a": "int"}, "t").name == "t"


def test_a_factory_refuses_what_its_class_refuses() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'nme'"):
        create_type_transformer({"a": "int"}, nme="t")
    with pytest.raises(TypeError):
        create_file_extractor("x.csv", "csv")  # format is keyword-only, as on the class


def test_component_factory_names_and_forwards() -> None:
    class Thing:
        """A thing."""

        def __init__(self, a: int, *, b: str = "x") -> None:
            self.args = (a, b)

    create_thing = component_factory(Thing, "create_thing")
    assert create_thing(1, b="y").args == (1, "y")
    assert str(inspect.signature(create_thing)) == "(a: 'int', *, b: 'str' = 'x') -> 'Thing'"
    assert (create_thing.__name__, create_thing.__qualname__, create_thing.__doc__) == \
        ("create_thing", "create_thing", "A thing.")
