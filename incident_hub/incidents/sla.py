"""A missed SLA deadline, recorded: an internal timeline entry and the `incident_sla_breached` event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from incident_hub import events
from incident_hub.model import Severity, SlaPolicy, TimelineType
from incident_hub.store.tables import TimelineRow


def record_breach(
    session: Session,
    policy: SlaPolicy,
    *,
    incident_id: str,
    number: str,
    severity: Severity,
    detected_at: datetime,
    missed: str,
    now: datetime,
) -> None:
    """Record in `session` that the incident missed its `missed` deadline ("acknowledge" or "resolve")."""
    session.add(
        TimelineRow(
            incident_id=incident_id,
            type=TimelineType.ESCALATED,
            is_public=False,
            timestamp=now,
            author="sla",
            message=f"SLA breached: {missed} deadline missed",
        )
    )
    allowed = policy.acknowledge if missed == "acknowledge" else policy.resolve
    events.emit(
        session,
        "incident_sla_breached",
        incident_id,
        {
            "incident_id": number,
            "id": incident_id,
            "number": number,
            "severity": severity.value,
            "deadline_kind": missed,
            "deadline": (detected_at + allowed[severity]).isoformat(),
            "detected_at": detected_at.isoformat(),
        },
    )
