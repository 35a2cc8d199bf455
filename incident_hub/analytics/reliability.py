"""Availability per service and per component over a window, from incident downtime, in SQL.

An incident is down time for each service it names, from detection to resolution (to now while open),
cut to the window and weighted by its impact: a total outage counts fully, a partial outage and a degraded
service by the configured weights. Where incidents on one service overlap, the time counts once, at the
heaviest weight among them: the statement cuts each service's time line at every start and end of its
incidents, takes the heaviest weight over each piece, and sums the pieces (one sweep per service, in the
order of its start and end points).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import CTE, Float, Select, and_, case, func, literal, or_, select, true, union_all

from incident_hub.analytics import sql
from incident_hub.analytics.entities import EntityKind, component_key, component_weight, impact_weight
from incident_hub.analytics.windows import Window
from incident_hub.errors import InvalidRequest
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow


class Band(StrEnum):
    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


def band(availability: float) -> Band:
    """The seed's bands: >= 99.9 excellent, >= 99.0 good, >= 95.0 fair, else poor."""
    if availability >= 99.9:
        return Band.EXCELLENT
    if availability >= 99.0:
        return Band.GOOD
    if availability >= 95.0:
        return Band.FAIR
    return Band.POOR


@dataclass(frozen=True)
class Weights:
    """Share of an impact's duration that counts as down time (a total outage: 1)."""

    partial_outage: float
    degraded: float


class EntityReliability(BaseModel):
    rank: int = Field(description="1: the most reliable in this report.")
    kind: EntityKind
    name: str
    availability_percent: float
    band: Band
    meets_target: bool
    downtime_minutes: float = Field(description="Weighted down time: overlaps once, at the heaviest impact.")
    impacted_minutes: float = Field(description="Time with any incident open on it, unweighted.")
    incidents: int = Field(description="Incidents overlapping the window.")
    failures: int = Field(description="Separate failure periods (overlapping incidents merged).")
    mtbf_minutes: float | None = Field(
        description="Mean time from the end of one failure period to the start of the next, in the "
        "window; null with fewer than two."
    )


class ReliabilityReport(BaseModel):
    generated_at: datetime
    from_: datetime = Field(serialization_alias="from")
    to: datetime = Field(description="The window's end, cut at the time of the report.")
    window_minutes: float
    target_percent: float
    partial_outage_weight: float
    degraded_weight: float
    services: list[EntityReliability] = Field(description="Most reliable first.")
    components: list[EntityReliability] = Field(description="Most reliable first.")


def report(
    db: Database, span: Window, *, weights: Weights, target: float, now: datetime
) -> ReliabilityReport:
    """Availability of every service and component that had an incident overlapping `span`."""
    span = span.until(now)
    if span.seconds <= 0:
        raise InvalidRequest("the window has not started yet: availability is known only up to now")
    dialect = db.url.get_backend_name()
    start, end = literal(span.start.timestamp(), Float), literal(span.end.timestamp(), Float)
    overlapping = and_(
        IncidentRow.detected_at < span.end,
        or_(IncidentRow.resolved_at.is_(None), IncidentRow.resolved_at > span.start),
    )
    began = sql.greatest(sql.epoch_seconds(IncidentRow.detected_at, dialect), start, dialect)
    ended = sql.least(func.coalesce(sql.epoch_seconds(IncidentRow.resolved_at, dialect), end), end, dialect)
    services, value = sql.json_elements(IncidentRow.affected_services, dialect)
    service_intervals = (
        select(
            sql.json_field(value, "name", dialect).label("entity"),
            began.label("s"),
            ended.label("e"),
            impact_weight(
                sql.json_field(value, "impact", dialect), weights.partial_outage, weights.degraded
            ).label("w"),
        )
        .select_from(IncidentRow)
        .join(services, true())
        .where(overlapping)
    )
    component = component_key(dialect)
    component_intervals = select(
        component.label("entity"),
        began.label("s"),
        ended.label("e"),
        component_weight(dialect, weights.partial_outage, weights.degraded).label("w"),
    ).where(overlapping, component.is_not(None))
    with sql.reading(db) as session:
        levels = [1.0, weights.partial_outage, weights.degraded]
        by_service = [dict(row) for row in session.execute(downtime(service_intervals, levels)).mappings()]
        by_component = [
            dict(row) for row in session.execute(downtime(component_intervals, levels)).mappings()
        ]
    return ReliabilityReport(
        generated_at=now,
        from_=span.start,
        to=span.end,
        window_minutes=span.seconds / 60,
        target_percent=target,
        partial_outage_weight=weights.partial_outage,
        degraded_weight=weights.degraded,
        services=_ranked(EntityKind.SERVICE, by_service, span.seconds, target),
        components=_ranked(EntityKind.COMPONENT, by_component, span.seconds, target),
    )


def downtime(intervals: Select[Any], levels: list[float]) -> Select[Any]:
    """Per entity of `intervals` (entity, s, e, w: epoch seconds and a weight among `levels`): incidents,
    weighted and unweighted covered seconds, failure periods and the seconds between them.

    One sweep along each entity's time line: every interval is a start (+1) and an end (-1); running
    counts, one per weight level (intervals at that level or heavier) and one of all, say what covers
    the stretch up to the next point; a stretch takes the heaviest level still counted (none: a gap).
    Points at one instant leave stretches of no length between them, which are dropped: touching
    intervals make one failure period, whatever order their points take. Linear
    after the sort, where cutting at every point and joining each piece to its intervals grew with the
    square of an entity's incidents. Every end point is some interval's end, so each gap lies between
    two failure periods."""
    iv: CTE = intervals.cte("intervals")
    heaviest_first = sorted({level for level in levels if level > 0}, reverse=True)
    starts = select(iv.c.entity, iv.c.s.label("t"), literal(1).label("delta"), iv.c.w)
    ends = select(iv.c.entity, iv.c.e.label("t"), literal(-1).label("delta"), iv.c.w)
    points = union_all(starts, ends).cte("points")
    order = (points.c.t, points.c.delta.desc())  # any order within an instant: see above

    def running(level: float | None) -> Any:
        delta = points.c.delta if level is None else case((points.c.w >= level, points.c.delta), else_=0)
        return func.sum(delta).over(partition_by=points.c.entity, order_by=order, rows=(None, 0))

    stretches = select(
        points.c.entity,
        points.c.t.label("s"),
        func.lead(points.c.t).over(partition_by=points.c.entity, order_by=order).label("e"),
        running(None).label("n"),
        *(running(level).label(f"n{i}") for i, level in enumerate(heaviest_first)),
    ).cte("stretches")
    # Stretches of no length (two points at one instant) cover nothing and do not split a period.
    real = select(stretches).where(stretches.c.e > stretches.c.s).cte("real")
    weight = case(
        *((real.c[f"n{i}"] > 0, literal(level, Float)) for i, level in enumerate(heaviest_first)),
        else_=literal(0.0, Float),
    )
    before = func.lag(real.c.n).over(partition_by=real.c.entity, order_by=real.c.s)
    marked = select(
        real.c.entity, real.c.s, real.c.e, real.c.n, weight.label("w"), before.label("before")
    ).cte("marked")
    length = marked.c.e - marked.c.s
    covered = select(
        marked.c.entity,
        func.sum(case((marked.c.n > 0, length * marked.c.w), else_=0.0)).label("weighted"),
        func.sum(case((marked.c.n > 0, length), else_=0.0)).label("impacted"),
        func.sum(case((marked.c.n == 0, length), else_=0.0)).label("gaps"),
        func.count(
            case((and_(marked.c.n > 0, or_(marked.c.before.is_(None), marked.c.before == 0)), 1))
        ).label("failures"),
    ).group_by(marked.c.entity)
    covered_sq = covered.subquery("downtime")
    counts = select(iv.c.entity, func.count().label("incidents")).group_by(iv.c.entity).subquery("counts")
    return select(
        counts.c.entity,
        counts.c.incidents,
        func.coalesce(covered_sq.c.weighted, 0.0).label("weighted"),
        func.coalesce(covered_sq.c.impacted, 0.0).label("impacted"),
        func.coalesce(covered_sq.c.gaps, 0.0).label("gaps"),
        func.coalesce(covered_sq.c.failures, 0).label("failures"),
    ).outerjoin(covered_sq, covered_sq.c.entity == counts.c.entity)


def _ranked(
    kind: EntityKind, rows: list[dict[str, Any]], window_seconds: float, target: float
) -> list[EntityReliability]:
    figures: list[dict[str, Any]] = []
    for row in rows:
        # Timestamps are stored to the microsecond; SQLite's arithmetic on them is good to the millisecond.
        weighted, impacted, gaps = (round(float(row[name]), 3) for name in ("weighted", "impacted", "gaps"))
        failures = int(row["failures"])
        availability = 100.0 * (1 - weighted / window_seconds)
        figures.append(
            {
                "kind": kind,
                "name": str(row["entity"]),
                "availability_percent": availability,
                "band": band(availability),
                "meets_target": availability >= target,
                "downtime_minutes": weighted / 60,
                "impacted_minutes": impacted / 60,
                "incidents": int(row["incidents"]),
                "failures": failures,
                "mtbf_minutes": gaps / (failures - 1) / 60 if failures > 1 else None,
            }
        )
    figures.sort(key=lambda f: (-f["availability_percent"], f["impacted_minutes"], f["name"]))
    return [EntityReliability(rank=i, **f) for i, f in enumerate(figures, start=1)]
