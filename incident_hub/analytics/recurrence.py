"""Recurrence: incidents in a window whose dedup key or root-cause category already occurred in the 90
days before them, and the root-cause categories seen more than twice in the window.

A root-cause category is the incident's `root_cause` text, trimmed and lower-cased."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select

from incident_hub.analytics import sql
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
    in_window = and_(IncidentRow.detected_at >= span.start, IncidentRow.detected_at < span.end)
    # Each incident of the window and the lookback before it, with the detection of the previous incident
    # of the same dedup key and of the same category: the most recent earlier one is within 90 days if
    # any is. One sorted pass, instead of a search per incident.
    order = (IncidentRow.detected_at, IncidentRow.id)
    scoped = (
        select(
            IncidentRow.detected_at,
            IncidentRow.dedup_key,
            category(IncidentRow.root_cause).label("category"),
            func.lag(IncidentRow.detected_at)
            .over(partition_by=IncidentRow.dedup_key, order_by=order)
            .label("previous_same_key"),
            func.lag(IncidentRow.detected_at)
            .over(partition_by=category(IncidentRow.root_cause), order_by=order)
            .label("previous_same_category"),
        )
        .where(
            IncidentRow.detected_at >= span.start - timedelta(days=LOOKBACK_DAYS),
            IncidentRow.detected_at < span.end,
        )
        .subquery("scoped")
    )
    since = _days_before(scoped.c.detected_at, LOOKBACK_DAYS, dialect)

    def recent(previous: Any) -> ColumnElement[bool]:
        return and_(previous.is_not(None), previous < scoped.c.detected_at, previous >= since)

    repeats = or_(
        and_(scoped.c.dedup_key.is_not(None), recent(scoped.c.previous_same_key)),
        and_(
            scoped.c.category.is_not(None), scoped.c.category != "", recent(scoped.c.previous_same_category)
        ),
    )
    name = category(IncidentRow.root_cause)
    with sql.reading(db) as session:
        total = session.scalar(select(func.count()).select_from(IncidentRow).where(in_window)) or 0
        recurring = (
            session.scalar(
                select(func.count()).where(
                    scoped.c.detected_at >= span.start, scoped.c.detected_at < span.end, repeats
                )
            )
            or 0
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
