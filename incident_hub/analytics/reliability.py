"""Availability per service and per component over a window, from incident downtime.

An incident is down time for each service it names, from detection to resolution (to now while open),
weighted by its impact: a total outage counts fully, a partial outage and a degraded service by the
configured weights. Where incidents on one service overlap, the time counts once, at the heaviest weight
among them. SQL selects the incidents overlapping the window with their services (one row each); the
union of their intervals is swept here, per service, in order of time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select, true

from incident_hub.analytics import sql
from incident_hub.analytics.entities import EntityKind, component_of, worst_impact
from incident_hub.analytics.windows import Window
from incident_hub.errors import InvalidRequest
from incident_hub.model import Impact, Severity
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
    """Share of an impact's duration that counts as down time."""

    partial_outage: float
    degraded: float

    def of(self, impact: Impact) -> float:
        if impact is Impact.TOTAL_OUTAGE:
            return 1.0
        return self.partial_outage if impact is Impact.PARTIAL_OUTAGE else self.degraded


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


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    weight: float


def report(
    db: Database, span: Window, *, weights: Weights, target: float, now: datetime
) -> ReliabilityReport:
    """Availability of every service and component that had an incident overlapping `span`."""
    span = span.until(now)
    if span.seconds <= 0:
        raise InvalidRequest("the window has not started yet: availability is known only up to now")
    dialect = db.url.get_backend_name()
    overlapping = and_(
        IncidentRow.detected_at < span.end,
        or_(IncidentRow.resolved_at.is_(None), IncidentRow.resolved_at > span.start),
    )
    elements, value = sql.json_elements(IncidentRow.affected_services, dialect)
    with db.read() as session:
        service_rows = session.execute(
            select(
                sql.json_field(value, "name", dialect),
                sql.json_field(value, "impact", dialect),
                IncidentRow.detected_at,
                IncidentRow.resolved_at,
            )
            .select_from(IncidentRow)
            .join(elements, true())
            .where(overlapping)
        ).all()
        component_rows = session.execute(
            select(
                IncidentRow.tags,
                IncidentRow.affected_services,
                IncidentRow.severity,
                IncidentRow.detected_at,
                IncidentRow.resolved_at,
            ).where(overlapping)
        ).all()
    start, end = span.start.timestamp(), span.end.timestamp()

    def clipped(detected: datetime, resolved: datetime | None, weight: float) -> Interval:
        return Interval(
            max(detected.timestamp(), start), min(resolved.timestamp() if resolved else end, end), weight
        )

    services: dict[str, list[Interval]] = {}
    for name, impact, detected, resolved in service_rows:
        weight = weights.of(_impact(impact))
        services.setdefault(str(name), []).append(clipped(detected, resolved, weight))
    components: dict[str, list[Interval]] = {}
    for tags, affected, severity, detected, resolved in component_rows:
        component = component_of(tags or [])
        if component is not None:
            weight = weights.of(worst_impact(affected or [], Severity(severity)))
            components.setdefault(component, []).append(clipped(detected, resolved, weight))
    return ReliabilityReport(
        generated_at=now,
        from_=span.start,
        to=span.end,
        window_minutes=span.seconds / 60,
        target_percent=target,
        partial_outage_weight=weights.partial_outage,
        degraded_weight=weights.degraded,
        services=_ranked(EntityKind.SERVICE, services, span.seconds, target),
        components=_ranked(EntityKind.COMPONENT, components, span.seconds, target),
    )


@dataclass(frozen=True)
class Downtime:
    weighted_seconds: float
    impacted_seconds: float
    periods: list[tuple[float, float]]


def sweep(intervals: Iterable[Interval]) -> Downtime:
    """Weighted down time of overlapping intervals (each instant once, at its heaviest weight), the time
    covered at all, and the merged failure periods in order."""
    edges: list[tuple[float, int, float]] = []
    for interval in intervals:
        if interval.end > interval.start:
            edges += [(interval.start, 1, interval.weight), (interval.end, -1, interval.weight)]
    edges.sort(key=lambda edge: (edge[0], -edge[1]))
    active: dict[float, int] = {}
    weighted = impacted = 0.0
    periods: list[tuple[float, float]] = []
    previous: float | None = None
    for at, change, weight in edges:
        if active and previous is not None:
            weighted += (at - previous) * max(active)
            impacted += at - previous
        if change > 0:
            # Starts sort before ends at one instant, so back-to-back incidents make one period.
            if not active:
                periods.append((at, at))
            active[weight] = active.get(weight, 0) + 1
        else:
            active[weight] -= 1
            if not active[weight]:
                del active[weight]
            if not active:
                periods[-1] = (periods[-1][0], at)
        previous = at
    return Downtime(weighted, impacted, periods)


def _ranked(
    kind: EntityKind, entities: dict[str, list[Interval]], window_seconds: float, target: float
) -> list[EntityReliability]:
    figures: list[dict[str, Any]] = []
    for name, intervals in entities.items():
        downtime = sweep(intervals)
        availability = 100.0 * (1 - downtime.weighted_seconds / window_seconds)
        gaps = [b[0] - a[1] for a, b in zip(downtime.periods, downtime.periods[1:], strict=False)]
        figures.append(
            {
                "kind": kind,
                "name": name,
                "availability_percent": availability,
                "band": band(availability),
                "meets_target": availability >= target,
                "downtime_minutes": downtime.weighted_seconds / 60,
                "impacted_minutes": downtime.impacted_seconds / 60,
                "incidents": len(intervals),
                "failures": len(downtime.periods),
                "mtbf_minutes": sum(gaps) / len(gaps) / 60 if gaps else None,
            }
        )
    figures.sort(key=lambda f: (-f["availability_percent"], f["impacted_minutes"], f["name"]))
    return [EntityReliability(rank=i, **f) for i, f in enumerate(figures, start=1)]


def _impact(value: Any) -> Impact:
    """A stored impact; anything else reads as the weakest, as a service named without one does."""
    try:
        return Impact(value)
    except ValueError:
        return Impact.DEGRADED
