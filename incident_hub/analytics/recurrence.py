"""Recurrence: incidents in a window whose dedup key or root-cause category already occurred in the 90
days before them, and the root-cause categories seen more than twice in the window.

A root-cause category is the incident's `root_cause` text, trimmed and lower-cased."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, exists, func, literal_column, or_, select
from sqlalchemy.orm import aliased

from incident_hub.analytics.windows import Window
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow

LOOKBACK_DAYS = 90
PATTERN_MINIMUM = 3


class Category(BaseModel):
    category: str
    incidents: int
    first_detected_at: datetime
    last_detected_at: datetime


class RecurrenceReport(BaseModel):
    generated_at: datetime
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    lookback_days: int
    incidents: int = Field(description="Incidents detected in the window.")
    recurring: int = Field(
        description="Of those, how many had an earlier incident with the same dedup key or root-cause "
        f"category detected in the {LOOKBACK_DAYS} days before them."
    )
    recurrence_percent: float | None
    target_percent: float
    categories: list[Category] = Field(
        description=f"Root-cause categories of at least {PATTERN_MINIMUM} incidents in the window, "
        "most first."
    )


def category(column: Any) -> ColumnElement[str]:
    return func.lower(func.trim(column))


def report(db: Database, span: Window, *, target: float, now: datetime) -> RecurrenceReport:
    """Recurrence over the incidents detected in `span`."""
    dialect = db.url.get_backend_name()
    earlier = aliased(IncidentRow)
    in_window = and_(IncidentRow.detected_at >= span.start, IncidentRow.detected_at < span.end)
    repeats = exists().where(
        earlier.id != IncidentRow.id,
        earlier.detected_at < IncidentRow.detected_at,
        earlier.detected_at >= _days_before(IncidentRow.detected_at, LOOKBACK_DAYS, dialect),
        or_(
            and_(IncidentRow.dedup_key.is_not(None), earlier.dedup_key == IncidentRow.dedup_key),
            and_(
                category(IncidentRow.root_cause) != "",
                category(earlier.root_cause) == category(IncidentRow.root_cause),
            ),
        ),
    )
    name = category(IncidentRow.root_cause)
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(IncidentRow).where(in_window)) or 0
        recurring = (
            session.scalar(select(func.count()).select_from(IncidentRow).where(in_window, repeats)) or 0
        )
        categories = session.execute(
            select(
                name,
                func.count(),
                func.min(IncidentRow.detected_at),
                func.max(IncidentRow.detected_at),
            )
            .where(in_window, IncidentRow.root_cause.is_not(None), name != "")
            .group_by(name)
            .having(func.count() >= PATTERN_MINIMUM)
            .order_by(func.count().desc(), name)
        ).all()
    return RecurrenceReport(
        generated_at=now,
        from_=span.start,
        to=span.end,
        lookback_days=LOOKBACK_DAYS,
        incidents=total,
        recurring=recurring,
        recurrence_percent=100.0 * recurring / total if total else None,
        target_percent=target,
        categories=[
            Category(category=c, incidents=n, first_detected_at=first, last_detected_at=last)
            for c, n, first, last in categories
        ],
    )


def _days_before(column: Any, days: int, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        # The stored text's format, so that the comparison is the timestamps' order.
        return func.strftime("%Y-%m-%d %H:%M:%f000", column, f"-{days} days")
    earlier: ColumnElement[Any] = column - literal_column(f"interval '{days} days'")
    return earlier
