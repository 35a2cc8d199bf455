"""Incident rows and the API's models of them: loading, and turning one into the other."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, selectinload

from incident_hub.clock import as_utc
from incident_hub.errors import NotFound, VersionMismatch
from incident_hub.model import (
    AffectedService,
    AutomatedResponse,
    Escalation,
    ExecutionStatus,
    ExternalRef,
    Incident,
    ResolutionStep,
    Roles,
    Severity,
    Status,
    Summary,
    TimelineEntry,
    TimelineType,
)
from incident_hub.store.tables import (
    AutomatedResponseRow,
    EscalationRow,
    IncidentRow,
    ResolutionStepRow,
    TimelineRow,
)


def event_names(row: IncidentRow) -> dict[str, str]:
    """How every event body names its incident: the seed's `incident_id` (the human id), the uuid as
    `id`, and `number` (the human id again) for subscribers written before the seed contract."""
    return {"incident_id": row.number, "id": row.id, "number": row.number}


EAGER = (
    selectinload(IncidentRow.steps),
    selectinload(IncidentRow.responses),
    selectinload(IncidentRow.external_refs),
)


def load(session: Session, incident_id: str) -> IncidentRow:
    row = session.scalar(select(IncidentRow).options(*EAGER).where(identified_by(incident_id)))
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return row


def load_for_update(session: Session, incident_id: str, if_match: int | None) -> IncidentRow:
    row = session.scalar(
        select(IncidentRow).options(*EAGER).where(identified_by(incident_id)).with_for_update()
    )
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    if if_match is not None and row.version != if_match:
        raise VersionMismatch(
            f"incident is at version {row.version}, not {if_match}", current_version=row.version
        )
    return row


def identified_by(incident_id: str) -> ColumnElement[bool]:
    """The incident a caller names by its uuid or by its human id (`INC-20250621-001`, the seed's
    `incident_id`): either way one lookup on a unique index."""
    try:
        return IncidentRow.id == str(uuid.UUID(incident_id))
    except ValueError:
        return IncidentRow.number == incident_id


def response_row(incident_id: str, response: AutomatedResponse) -> AutomatedResponseRow:
    return AutomatedResponseRow(
        response_id=response.response_id,
        incident_id=incident_id,
        action_type=response.action_type,
        details=response.details,
        execution_status=response.execution_status,
        executed_at=as_utc(response.executed_at) if response.executed_at else None,
    )


def response_model(row: AutomatedResponseRow) -> AutomatedResponse:
    return AutomatedResponse(
        response_id=row.response_id,
        action_type=row.action_type,
        details=row.details,
        execution_status=ExecutionStatus(row.execution_status),
        executed_at=row.executed_at,
    )


def step_model(row: ResolutionStepRow) -> ResolutionStep:
    return ResolutionStep(
        step_number=row.step_number,
        action_taken=row.action_taken,
        performed_by=row.performed_by,
        timestamp=row.timestamp,
    )


def timeline_model(row: TimelineRow) -> TimelineEntry:
    return TimelineEntry(
        id=row.id,
        type=TimelineType(row.type),
        message=row.message,
        author=row.author,
        is_public=row.is_public,
        timestamp=row.timestamp,
        origin_connector=row.origin_connector,
        external_comment_id=row.external_comment_id,
    )


def escalation_model(row: EscalationRow) -> Escalation:
    return Escalation(
        id=row.id,
        reason=row.reason,
        from_severity=Severity(row.from_severity),
        to_severity=Severity(row.to_severity),
        from_team=row.from_team,
        to_team=row.to_team,
        escalated_by=row.escalated_by,
        escalated_at=row.escalated_at,
    )


def to_model(row: IncidentRow) -> Incident:
    services = [AffectedService.model_validate(s) for s in row.affected_services]
    return Incident(
        id=uuid.UUID(row.id),
        incident_id=row.number,
        number=row.number,
        title=row.title,
        description=row.description,
        severity=Severity(row.severity),
        status=Status(row.status),
        affected_services=[service.name for service in services],
        service_impacts=services,
        assigned_team=row.assigned_team,
        assignee=row.assignee,
        roles=Roles(commander=row.commander, tech_lead=row.tech_lead, comms_lead=row.comms_lead),
        detected_at=row.detected_at,
        acknowledged_at=row.acknowledged_at,
        mitigated_at=row.mitigated_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        sla_deadline=row.sla_deadline,
        sla_breached=row.sla_breached,
        root_cause=row.root_cause,
        resolution_notes=row.resolution_notes,
        summary=Summary.model_validate(row.summary) if row.summary else None,
        dedup_key=row.dedup_key,
        source=row.source,
        tags=list(row.tags or []),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        automated_responses=[response_model(r) for r in row.responses],
        resolution_steps=[step_model(s) for s in row.steps],
        external_refs=[
            ExternalRef(
                connector_id=r.connector_id,
                external_id=r.external_id,
                external_key=r.external_key,
                url=r.url,
                last_synced_version=r.last_synced_version,
                last_vendor_timestamp=r.last_vendor_timestamp,
                fingerprint=r.fingerprint,
            )
            for r in row.external_refs
        ],
    )
