"""Reports as CSV: one header row, then one row per item of the report's main table."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel


def flatten(item: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested models and mappings as one flat row, nested names joined with `_` (`mtta_p50_seconds`)."""
    values = item.model_dump(mode="json") if isinstance(item, BaseModel) else dict(item)
    row: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel | Mapping):
            row.update(flatten(value, f"{key}_"))
        elif isinstance(value, list | tuple):
            row[key] = ";".join(str(_cell(v)) for v in value)
        else:
            row[key] = value
    return row


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    """`rows` as CSV text with `columns` in that order (empty cell: null)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def table(items: Iterable[BaseModel], columns: list[str]) -> str:
    """Items of one model as CSV, one flattened item per row."""
    return to_csv((flatten(item) for item in items), columns)


def columns_of(model: type[BaseModel]) -> list[str]:
    """The flattened column names of `model`, in declaration order."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(f"{name}_{inner}" for inner in columns_of(annotation))
        else:
            names.append(name)
    return names
