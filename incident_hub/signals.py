"""Component health signals from monitoring: `stuck`/`stopped` opens an incident, `active` resolves it.

A signal names a host, a device on it and a component of that device. Its key (`signal:host/device/
component`) is the incident's dedup key, so at most one incident is open per component. Most signals
repeat what is already known (a component that stays stuck reports every minute): those cost one read.

Severity by rule: `stopped` is SEV1_CRITICAL, `stuck` SEV2_HIGH; a stuck component that stops raises its
open incident to SEV1. `active` resolves the open incident with a resolution note.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from incident_hub.commands import EscalationRequest, IncidentDraft, IncidentPatch, StatusChange
from incident_hub.incidents import IncidentService
from incident_hub.model import OPEN_STATUSES, Severity, Status, Timestamp
from incident_hub.store.tables import IncidentRow


class ComponentStatus(StrEnum):
    ACTIVE = "active"
    STUCK = "stuck"
    STOPPED = "stopped"


SEVERITY = {ComponentStatus.STOPPED: Severity.SEV1_CRITICAL, ComponentStatus.STUCK: Severity.SEV2_HIGH}
_RANK = list(Severity)


class Signal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "host": "db-2",
                    "device": "nvme0",
                    "component": "replication",
                    "status": "stuck",
                    "message": "replica lag 900 s",
                }
            ]
        },
    )

    host: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    device: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    component: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    status: ComponentStatus
    message: str | None = Field(default=None, max_length=2000)
    observed_at: Timestamp | None = Field(default=None, description="When the monitor saw it (for the note).")

    @property
    def key(self) -> str:
        return f"signal:{self.host}/{self.device}/{self.component}"


class SignalAction(StrEnum):
    OPENED = "opened"
    ALREADY_OPEN = "already_open"
    RAISED = "raised"
    RESOLVED = "resolved"
    NOTHING_OPEN = "nothing_open"


class SignalOutcome(BaseModel):
    """What a signal did; `incident_id` is the human id as on incidents and events, `id` the uuid."""

    action: SignalAction
    incident_id: str | None = None
    id: str | None = None
    number: str | None = None
    severity: Severity | None = None


class Signals:
    def __init__(self, incidents: IncidentService) -> None:
        self.incidents = incidents
        self.db = incidents.db

    def process(self, signal: Signal) -> SignalOutcome:
        """Apply one signal; a repeat of what the open incident already says is one read and no write."""
        with self.db.read() as session:
            found = session.execute(
                select(IncidentRow.id, IncidentRow.number, IncidentRow.severity).where(
                    IncidentRow.dedup_key == signal.key, IncidentRow.status.in_(OPEN_STATUSES)
                )
            ).first()
        said = _said(signal)
        if signal.status is ComponentStatus.ACTIVE:
            if found is None:
                return SignalOutcome(action=SignalAction.NOTHING_OPEN)
            incident_id = str(found.id)
            self.incidents.patch(
                incident_id, IncidentPatch(resolution_notes=f"Auto-resolved: {said}", author="signals")
            )
            resolved = self.incidents.change_status(
                incident_id, StatusChange(status=Status.RESOLVED, message=said, author="signals")
            )
            return SignalOutcome(
                action=SignalAction.RESOLVED,
                incident_id=resolved.number,
                id=incident_id,
                number=resolved.number,
                severity=resolved.severity,
            )
        wanted = SEVERITY[signal.status]
        if found is not None:
            current = Severity(found.severity)
            if _RANK.index(wanted) >= _RANK.index(current):
                return SignalOutcome(
                    action=SignalAction.ALREADY_OPEN,
                    incident_id=found.number,
                    id=str(found.id),
                    number=found.number,
                    severity=current,
                )
            raised = self.incidents.escalate(
                str(found.id), EscalationRequest(reason=said, target_severity=wanted, author="signals")
            )
            return SignalOutcome(
                action=SignalAction.RAISED,
                incident_id=raised.incident.number,
                id=str(found.id),
                number=raised.incident.number,
                severity=raised.incident.severity,
            )
        created = self.incidents.create(
            IncidentDraft(
                title=f"{signal.component} {signal.status.value} on {signal.host}/{signal.device}",
                description=signal.message,
                severity=wanted,
                dedup_key=signal.key,
                source="signals",
                tags=[f"host:{signal.host}", f"device:{signal.device}", f"component:{signal.component}"],
                author="signals",
            )
        )
        incident = created.incident
        action = SignalAction.OPENED if not created.deduplicated else SignalAction.ALREADY_OPEN
        return SignalOutcome(
            action=action,
            incident_id=incident.number,
            id=str(incident.id),
            number=incident.number,
            severity=incident.severity,
        )


def _said(signal: Signal) -> str:
    when = f" at {signal.observed_at.isoformat()}" if signal.observed_at else ""
    detail = f": {signal.message}" if signal.message else ""
    return f"{signal.component} on {signal.host}/{signal.device} {signal.status.value}{when}{detail}"
