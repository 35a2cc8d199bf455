"""What is broken right now: the incidents not yet resolved, with their running durations, counted by
severity, team, service and component."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select, true

from incident_hub.analytics import sql
from incident_hub.analytics.entities import component_of, service_names
from incident_hub.clock import as_utc
from incident_hub.model import OPEN_STATUSES, Severity, Status
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow

_ACTIVE = IncidentRow.status.in_([s.value for s in OPEN_STATUSES])


class ActiveIncident(BaseModel):
    id: str
    number: str
    title: str
    severity: Severity
    status: Status
    assigned_team: str | None
    services: list[str]
    component: str | None = Field(description="`host/device/component` from the incident's tags.")
    detected_at: datetime
    acknowledged_at: datetime | None
    running_seconds: float = Field(description="Detection to now.")


class ActiveCount(BaseModel):
    key: str | None = Field(description="The severity, team, service or component; null: none given.")
    count: int
    oldest_detected_at: datetime
    longest_running_seconds: float


class NowReport(BaseModel):
    generated_at: datetime
    active: int = Field(description="Incidents not resolved (OPEN to MONITORING).")
    unacknowledged: int
    by_severity: list[ActiveCount] = Field(description="Every severity, most severe first (zeroes omitted).")
    by_team: list[ActiveCount]
    by_service: list[ActiveCount] = Field(description="An incident counts once for each service it names.")
    by_component: list[ActiveCount]
    incidents: list[ActiveIncident] = Field(description="Most severe first; oldest first within a severity.")


def report(db: Database, now: datetime) -> NowReport:
    """The active incidents at `now`."""
    dialect = db.url.get_backend_name()
    with db.read() as session:
        rows = session.execute(
            select(
                IncidentRow.id,
                IncidentRow.number,
                IncidentRow.title,
                IncidentRow.severity,
                IncidentRow.status,
                IncidentRow.assigned_team,
                IncidentRow.affected_services,
                IncidentRow.tags,
                IncidentRow.detected_at,
                IncidentRow.acknowledged_at,
            )
            .where(_ACTIVE)
            # Severity names sort most severe first (SEV1_ < SEV2_ ...).
            .order_by(IncidentRow.severity, IncidentRow.detected_at, IncidentRow.number)
        ).all()
        by_severity = _counts(session.execute(_grouped(IncidentRow.severity)).all(), now)
        by_team = _counts(session.execute(_grouped(IncidentRow.assigned_team)).all(), now)
        elements, value = sql.json_elements(IncidentRow.affected_services, dialect)
        name = sql.json_field(value, "name", dialect)
        by_service = _counts(
            session.execute(
                select(name, func.count(), func.min(IncidentRow.detected_at))
                .select_from(IncidentRow)
                .join(elements, true())
                .where(_ACTIVE)
                .group_by(name)
            ).all(),
            now,
        )
    incidents = [
        ActiveIncident(
            id=row.id,
            number=row.number,
            title=row.title,
            severity=Severity(row.severity),
            status=Status(row.status),
            assigned_team=row.assigned_team,
            services=service_names(row.affected_services or []),
            component=component_of(row.tags or []),
            detected_at=row.detected_at,
            acknowledged_at=row.acknowledged_at,
            running_seconds=(now - row.detected_at).total_seconds(),
        )
        for row in rows
    ]
    # The component is composed from several tags: grouped here, over the rows just read.
    components: dict[str, list[datetime]] = {}
    for incident in incidents:
        if incident.component is not None:
            components.setdefault(incident.component, []).append(incident.detected_at)
    by_component = _counts([(k, len(v), min(v)) for k, v in components.items()], now)
    return NowReport(
        generated_at=now,
        active=len(incidents),
        unacknowledged=sum(1 for i in incidents if i.acknowledged_at is None),
        by_severity=sorted(by_severity, key=lambda c: str(c.key)),
        by_team=by_team,
        by_service=by_service,
        by_component=by_component,
        incidents=incidents,
    )


def _grouped(key: Any) -> Any:
    return select(key, func.count(), func.min(IncidentRow.detected_at)).where(_ACTIVE).group_by(key)


def _counts(rows: Any, now: datetime) -> list[ActiveCount]:
    """Counts, largest first, then by key."""
    counts = [
        ActiveCount(
            key=key,
            count=count,
            oldest_detected_at=oldest,
            longest_running_seconds=(now - _utc(oldest)).total_seconds(),
        )
        for key, count, oldest in rows
    ]
    return sorted(counts, key=lambda c: (-c.count, c.key is None, c.key or ""))


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        # SQLite hands back min() of a timestamp as the stored text.
        return as_utc(datetime.fromisoformat(value))
    return as_utc(value)
