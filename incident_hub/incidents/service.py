"""Incident operations: every change is one transaction that bumps the version, writes timeline entries
and emits its event (outbox), so what subscribers and connectors see always matches what was stored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incident_hub import events
from incident_hub.clock import as_utc, utcnow
from incident_hub.commands import (
    EscalationRequest,
    IncidentDraft,
    IncidentPatch,
    NoteDraft,
    ResolutionStepDraft,
    RoleAssignment,
    StatusChange,
)
from incident_hub.errors import Conflict, InvalidRequest
from incident_hub.incident_pages import NO_FILTERS, IncidentFilters, encode_cursor, list_query
from incident_hub.incidents import durations
from incident_hub.incidents.creation import Created, Creation
from incident_hub.incidents.rows import (
    EAGER,
    escalation_model,
    event_names,
    load,
    load_for_update,
    response_model,
    response_row,
    step_model,
    timeline_model,
    to_model,
)
from incident_hub.incidents.sla import record_breach
from incident_hub.incidents.transaction import write
from incident_hub.model import (
    OPEN_STATUSES,
    AffectedService,
    AutomatedResponse,
    Escalation,
    Incident,
    ResolutionStep,
    Severity,
    SlaPolicy,
    Status,
    TimelineEntry,
    TimelineType,
    merge_services,
    transition,
)
from incident_hub.store.db import Database
from incident_hub.store.tables import (
    AutomatedResponseRow,
    EscalationRow,
    IncidentRow,
    ResolutionStepRow,
    TimelineRow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EscalationResult:
    incident: Incident
    escalation: Escalation
    changed: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Page:
    incidents: list[Incident]
    next_cursor: str | None


class IncidentService:
    """The operations the API (and later the sync engine) perform on incidents."""

    def __init__(self, db: Database, sla: SlaPolicy, on_commit: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.sla = sla
        self._on_commit = on_commit
        self._creation = Creation(db, sla, on_commit)

    # ---- create -------------------------------------------------------------------------------------

    def create(self, draft: IncidentDraft, *, session: Session | None = None) -> Created:
        """Create an incident, or return the open one that holds the same dedup key. Given a `session`,
        the work joins that transaction (the sync engine's)."""
        return self._creation.create(draft, session=session)

    # ---- read ---------------------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        with self.db.read() as session:
            return to_model(load(session, incident_id))

    def wake(self) -> None:
        """Tell the dispatcher that a transaction this service did not own queued deliveries."""
        self._on_commit()

    def get_in(self, session: Session, incident_id: str) -> Incident:
        """The incident as seen inside an open transaction."""
        return to_model(load(session, incident_id))

    def search(
        self, filters: IncidentFilters = NO_FILTERS, *, cursor: str | None = None, limit: int = 50
    ) -> Page:
        """The incidents matching `filters`, newest first; `cursor` continues where the previous page
        ended."""
        query = list_query(
            filters,
            cursor=cursor,
            limit=limit + 1,
            options=EAGER,
            dialect=self.db.url.get_backend_name(),
        )
        with self.db.read() as session:
            rows = session.scalars(query).all()
            incidents = [to_model(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = incidents[-1]
            next_cursor = encode_cursor(last.created_at, str(last.id))
        return Page(incidents, next_cursor)

    def timeline(self, incident_id: str) -> list[TimelineEntry]:
        with self.db.read() as session:
            row = load(session, incident_id)
            return [timeline_model(t) for t in row.timeline]

    # ---- change -------------------------------------------------------------------------------------

    def patch(
        self,
        incident_id: str,
        patch: IncidentPatch,
        if_match: int | None = None,
        *,
        session: Session | None = None,
    ) -> Incident:
        changes = patch.model_dump(exclude_unset=True, exclude={"author", *_SERVICE_FIELDS}, mode="json")
        services_given = bool(patch.model_fields_set & set(_SERVICE_FIELDS))
        if not changes and not services_given:
            raise InvalidRequest("the patch changes nothing: give at least one field")
        with self._write(session) as session:
            row = load_for_update(session, incident_id, if_match)
            now = utcnow()
            changed: dict[str, dict[str, Any]] = {}
            for field, value in changes.items():
                old = getattr(row, field)
                if old != value:
                    changed[field] = {"old": old, "new": value}
                    setattr(row, field, value)
            if services_given:
                changed |= _patch_services(row, patch)
            if not changed:
                return to_model(row)
            if "severity" in changed:
                self._refresh_sla(row)
            self._bump(row, now)
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=TimelineType.NOTE,
                    is_public=False,
                    timestamp=now,
                    message="Updated " + ", ".join(sorted(changed)),
                    author=patch.author,
                )
            )
            events.emit(
                session,
                "incident_updated",
                row.id,
                {
                    **event_names(row),
                    "version": row.version,
                    "changes": changed,
                    "updated_by": patch.author,
                },
            )
            self._check_breach(session, row, now)
            incident = to_model(row)
        return incident

    def change_status(
        self,
        incident_id: str,
        change: StatusChange,
        if_match: int | None = None,
        *,
        session: Session | None = None,
    ) -> Incident:
        with self._write(session) as session:
            row = load_for_update(session, incident_id, if_match)
            now = utcnow()
            current = Status(row.status)
            already = frozenset(name for name in _LIFECYCLE_STAMPS if getattr(row, name) is not None)
            move = transition(current, change.status, now, reopen=change.reopen, already_set=already)
            if move.reopened:
                self._assert_dedup_key_free(session, row)
            for name in move.clears:
                setattr(row, name, None)
            for name, value in move.timestamps.items():
                setattr(row, name, value)
            row.status = move.status
            durations.refresh(row)
            self._refresh_sla(row)
            self._bump(row, now)
            verb = "Reopened" if move.reopened else "Status changed"
            message = f"{verb}: {current} → {move.status}" + (f": {change.message}" if change.message else "")
            kind = (
                TimelineType.ACKNOWLEDGED
                if move.status is Status.ACKNOWLEDGED
                else TimelineType.STATUS_CHANGE
            )
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=kind,
                    message=message,
                    author=change.author,
                    is_public=True,
                    timestamp=now,
                )
            )
            body = {
                **event_names(row),
                "version": row.version,
                "old_status": current.value,
                "new_status": move.status.value,
                "message": change.message,
                "changed_by": change.author,
                "reopened": move.reopened,
            }
            events.emit(session, "incident_status_changed", row.id, body)
            if move.status is Status.RESOLVED:
                assert row.resolved_at is not None
                events.emit(
                    session,
                    "incident_resolved",
                    row.id,
                    {
                        **event_names(row),
                        "version": row.version,
                        "resolved_at": row.resolved_at.isoformat(),
                        "resolved_by": change.author,
                        "time_to_resolve_minutes": round(
                            (row.resolved_at - row.detected_at).total_seconds() / 60, 2
                        ),
                        "root_cause": row.root_cause,
                        "resolution_notes": row.resolution_notes,
                    },
                )
            self._check_breach(session, row, now)
            incident = to_model(row)
        log.info(
            "incident status changed",
            extra={"incident_id": incident_id, "old_status": current.value, "new_status": move.status.value},
        )
        return incident

    def escalate(
        self, incident_id: str, request: EscalationRequest, if_match: int | None = None
    ) -> EscalationResult:
        with self._write() as session:
            row = load_for_update(session, incident_id, if_match)
            if not Status(row.status).is_open:
                raise Conflict(f"incident is {row.status}: reopen it before escalating")
            now = utcnow()
            old_severity = Severity(row.severity)
            old_team = row.assigned_team
            if request.target_severity is None and request.target_team is None:
                new_severity = old_severity.raised()
            else:
                new_severity = request.target_severity or old_severity
            if new_severity.rank() > old_severity.rank():
                raise InvalidRequest(
                    f"escalation cannot lower severity ({old_severity} → {new_severity}); use PATCH"
                )
            new_team = request.target_team or old_team
            changed: dict[str, dict[str, Any]] = {}
            if new_severity != old_severity:
                changed["severity"] = {"old": old_severity.value, "new": new_severity.value}
                row.severity = new_severity
            if new_team != old_team:
                changed["assigned_team"] = {"old": old_team, "new": new_team}
                row.assigned_team = new_team
            if not changed:
                raise Conflict(
                    f"nothing to escalate: incident is already {old_severity}"
                    + (f" with team {old_team}" if old_team else "")
                )
            self._refresh_sla(row)
            self._bump(row, now)
            escalation = EscalationRow(
                incident_id=row.id,
                reason=request.reason,
                from_severity=old_severity,
                to_severity=new_severity,
                from_team=old_team,
                to_team=new_team,
                escalated_by=request.author,
                escalated_at=now,
            )
            session.add(escalation)
            parts = [f"{k}: {v['old']} → {v['new']}" for k, v in changed.items()]
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=TimelineType.ESCALATED,
                    is_public=True,
                    timestamp=now,
                    author=request.author,
                    message=f"Escalated ({'; '.join(parts)}): {request.reason}",
                )
            )
            session.flush()
            events.emit(
                session,
                "incident_escalated",
                row.id,
                {
                    **event_names(row),
                    "version": row.version,
                    "reason": request.reason,
                    "old_severity": old_severity.value,
                    "new_severity": new_severity.value,
                    "old_team": old_team,
                    "new_team": new_team,
                    "escalated_by": request.author,
                },
            )
            self._check_breach(session, row, now)
            result = EscalationResult(to_model(row), escalation_model(escalation), changed)
        return result

    def add_note(
        self,
        incident_id: str,
        note: NoteDraft,
        *,
        session: Session | None = None,
        external_comment_id: str | None = None,
    ) -> TimelineEntry:
        with self._write(session) as session:
            row = load(session, incident_id)
            entry = TimelineRow(
                incident_id=row.id,
                type=TimelineType.NOTE,
                message=note.message,
                author=note.author,
                is_public=note.is_public,
                timestamp=utcnow(),
                origin_connector=session.info.get(events.ORIGIN),
                external_comment_id=external_comment_id,
            )
            session.add(entry)
            session.flush()
            result = timeline_model(entry)
            events.emit(
                session,
                "incident_note_added",
                row.id,
                {
                    **event_names(row),
                    "note": result.model_dump(mode="json"),
                },
            )
        return result

    def add_resolution_step(self, incident_id: str, draft: ResolutionStepDraft) -> ResolutionStep:
        with self._write() as session:
            row = load_for_update(session, incident_id, None)
            now = utcnow()
            number = (
                session.scalar(
                    select(func.max(ResolutionStepRow.step_number)).where(
                        ResolutionStepRow.incident_id == row.id
                    )
                )
                or 0
            ) + 1
            step = ResolutionStepRow(
                incident_id=row.id,
                step_number=number,
                action_taken=draft.action_taken,
                performed_by=draft.performed_by,
                timestamp=as_utc(draft.timestamp) if draft.timestamp else now,
            )
            session.add(step)
            self._bump(row, now)
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=TimelineType.RESOLUTION_STEP,
                    is_public=True,
                    timestamp=now,
                    author=draft.performed_by,
                    message=f"Step {number}: {draft.action_taken}",
                )
            )
            session.flush()
            result = step_model(step)
            events.emit(
                session,
                "incident_resolution_step_added",
                row.id,
                {
                    **event_names(row),
                    "version": row.version,
                    "resolution_step": result.model_dump(mode="json"),
                },
            )
        return result

    def list_resolution_steps(self, incident_id: str) -> list[ResolutionStep]:
        with self.db.read() as session:
            return [step_model(s) for s in load(session, incident_id).steps]

    def record_automated_response(self, incident_id: str, response: AutomatedResponse) -> AutomatedResponse:
        """Record an automated action; recording the same `response_id` again updates its status."""
        with self._write() as session:
            row = load_for_update(session, incident_id, None)
            now = utcnow()
            existing = session.scalar(
                select(AutomatedResponseRow).where(
                    AutomatedResponseRow.incident_id == row.id,
                    AutomatedResponseRow.response_id == response.response_id,
                )
            )
            if existing is None:
                stored = response_row(row.id, response)
                session.add(stored)
            else:
                existing.action_type = response.action_type
                existing.details = response.details
                existing.execution_status = response.execution_status
                existing.executed_at = response.executed_at
                stored = existing
            self._bump(row, now)
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=TimelineType.AUTOMATED_RESPONSE,
                    is_public=False,
                    timestamp=now,
                    author="automation",
                    message=f"{response.action_type}: {response.execution_status}",
                )
            )
            session.flush()
            result = response_model(stored)
            events.emit(
                session,
                "incident_automated_response_recorded",
                row.id,
                {
                    **event_names(row),
                    "version": row.version,
                    "automated_response": result.model_dump(mode="json"),
                },
            )
        return result

    def assign_role(
        self, incident_id: str, assignment: RoleAssignment, if_match: int | None = None
    ) -> Incident:
        with self._write() as session:
            row = load_for_update(session, incident_id, if_match)
            now = utcnow()
            field = assignment.role.value
            old = getattr(row, field)
            if old == assignment.person:
                return to_model(row)
            setattr(row, field, assignment.person)
            self._bump(row, now)
            label = field.replace("_", " ")
            message = (
                f"{assignment.person} is now {label}" if assignment.person else f"{label} cleared (was {old})"
            )
            session.add(
                TimelineRow(
                    incident_id=row.id,
                    type=TimelineType.ROLE_ASSIGNED,
                    is_public=True,
                    timestamp=now,
                    author=assignment.author,
                    message=message,
                )
            )
            events.emit(
                session,
                "incident_role_assigned",
                row.id,
                {
                    **event_names(row),
                    "version": row.version,
                    "role": field,
                    "old": old,
                    "new": assignment.person,
                    "assigned_by": assignment.author,
                },
            )
            incident = to_model(row)
        return incident

    # ---- SLA ----------------------------------------------------------------------------------------

    def check_sla(self) -> int:
        """Mark open incidents whose deadline has passed as breached (one event each); returns how many."""
        now = utcnow()
        with self._write() as session:
            rows = session.scalars(
                select(IncidentRow)
                .options(*EAGER)
                .where(
                    IncidentRow.sla_breached.is_(False),
                    IncidentRow.sla_deadline < now,
                    IncidentRow.status.in_(OPEN_STATUSES),
                )
                .limit(500)
                # Every replica runs this watch; locked rows are being settled by another one.
                .with_for_update(skip_locked=True)
            ).all()
            count = sum(1 for row in rows if self._check_breach(session, row, now))
        return count

    def _check_breach(self, session: Session, row: IncidentRow, now: datetime) -> bool:
        if row.sla_breached:
            return False
        missed = self.sla.missed(
            Severity(row.severity), row.detected_at, row.acknowledged_at, row.resolved_at, now
        )
        if missed is None:
            return False
        row.sla_breached = True
        row.version += 1
        row.updated_at = now
        record_breach(
            session,
            self.sla,
            incident_id=row.id,
            number=row.number,
            severity=Severity(row.severity),
            detected_at=row.detected_at,
            missed=missed,
            now=now,
        )
        return True

    # ---- helpers ------------------------------------------------------------------------------------

    def _refresh_sla(self, row: IncidentRow) -> None:
        deadline = self.sla.deadline(
            Severity(row.severity), row.detected_at, row.acknowledged_at, row.resolved_at
        )
        row.sla_deadline = deadline[1] if deadline else None

    @staticmethod
    def _bump(row: IncidentRow, now: datetime) -> None:
        row.version += 1
        row.updated_at = now

    @staticmethod
    def _assert_dedup_key_free(session: Session, row: IncidentRow) -> None:
        if row.dedup_key is None:
            return
        other = session.scalar(
            select(IncidentRow.number).where(
                IncidentRow.dedup_key == row.dedup_key,
                IncidentRow.status.in_(OPEN_STATUSES),
                IncidentRow.id != row.id,
            )
        )
        if other is not None:
            raise Conflict(f"cannot reopen: {other} is open with the same dedup key", open_incident=other)

    def _write(self, outer: Session | None = None) -> AbstractContextManager[Session]:
        return write(self.db, self._on_commit, outer)


_LIFECYCLE_STAMPS = ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at")
_SERVICE_FIELDS = ("affected_services", "service_impacts")


def _patch_services(row: IncidentRow, patch: IncidentPatch) -> dict[str, dict[str, Any]]:
    """Replace the row's affected services as the patch asks; what changed, in the API's two shapes."""
    known = [AffectedService.model_validate(s) for s in row.affected_services]
    services = merge_services(patch.affected_services or [], patch.service_impacts or [], known)
    old_impacts = [s.model_dump(mode="json") for s in known]
    new_impacts = [s.model_dump(mode="json") for s in services]
    if new_impacts == old_impacts:
        return {}
    changed: dict[str, dict[str, Any]] = {"service_impacts": {"old": old_impacts, "new": new_impacts}}
    old_names, new_names = [s.name for s in known], [s.name for s in services]
    if old_names != new_names:
        changed["affected_services"] = {"old": old_names, "new": new_names}
    row.affected_services = new_impacts
    return changed
