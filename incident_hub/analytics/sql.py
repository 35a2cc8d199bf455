"""The few expressions that are spelled differently on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, ColumnElement, Float, FromClause, cast, func, literal_column, text
from sqlalchemy.orm import QueryableAttribute, Session

from incident_hub.store.db import Database

Expression = ColumnElement[Any] | QueryableAttribute[Any]


def epoch_seconds(column: Expression, dialect: str) -> ColumnElement[float]:
    """Seconds since 1970 of a stored timestamp (SQLite: from the stored text, to some microseconds)."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def greatest(a: Expression, b: Expression, dialect: str) -> ColumnElement[Any]:
    return func.max(a, b) if dialect == "sqlite" else func.greatest(a, b)


def least(a: Expression, b: Expression, dialect: str) -> ColumnElement[Any]:
    return func.min(a, b) if dialect == "sqlite" else func.least(a, b)


def json_elements(
    column: Expression, dialect: str, *, text: bool = False
) -> tuple[FromClause, ColumnElement[Any]]:
    """A table of the elements of a JSON array column, to join with `true()` or select from in a
    correlated subquery, and its value column (`text`: string elements as text)."""
    if dialect == "sqlite":
        elements = func.json_each(column).table_valued("value").alias()
    else:
        # Cast: the same call works whether the column is `json` or `jsonb`.
        function = func.json_array_elements_text if text else func.json_array_elements
        elements = function(cast(column, JSON)).table_valued("value").alias()
    return elements, elements.c.value


def json_field(value: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[str]:
    """The text of one field of a JSON object value."""
    if dialect == "sqlite":
        return func.json_extract(value, f"$.{name}")
    return value.op("->>")(literal_column(f"'{name}'"))


@contextmanager
def reading(db: Database) -> Iterator[Session]:
    """A read transaction for a report. On PostgreSQL without JIT compilation: the planner cannot see how
    few elements a JSON array has, overestimates the reports' joins by orders of magnitude, and would
    spend a second compiling a statement that runs in milliseconds."""
    with db.read() as session:
        if not db.is_sqlite:
            session.execute(text("SET LOCAL jit = off"))
        yield session
