"""The few expressions that are spelled differently on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ColumnElement, Float, FromClause, cast, func, literal_column
from sqlalchemy.orm import QueryableAttribute

Expression = ColumnElement[Any] | QueryableAttribute[Any]


def epoch_seconds(column: Expression, dialect: str) -> ColumnElement[float]:
    """Seconds since 1970 of a stored timestamp (SQLite: from the stored text, to about a millisecond)."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def json_elements(column: Expression, dialect: str) -> tuple[FromClause, ColumnElement[Any]]:
    """A table of the elements of a JSON array column, to join with `true()`, and its value column."""
    if dialect == "sqlite":
        elements = func.json_each(column).table_valued("value").alias("element")
    else:
        # Cast: the same call works whether the column is `json` or `jsonb`.
        elements = func.json_array_elements(cast(column, JSON)).table_valued("value").alias("element")
    return elements, elements.c.value


def json_field(value: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[str]:
    """The text of one field of a JSON object value."""
    if dialect == "sqlite":
        return func.json_extract(value, f"$.{name}")
    return value.op("->>")(literal_column(f"'{name}'"))


def json_text(value: ColumnElement[Any], dialect: str) -> ColumnElement[str]:
    """A JSON string element as text."""
    if dialect == "sqlite":
        return value
    return value.op("#>>")(literal_column("'{}'"))
