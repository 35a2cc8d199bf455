"""Incident operations: every change is one transaction that bumps the version, writes timeline entries
and emits its event (outbox), so what subscribers and connectors see always matches what was stored."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

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
from incident_hub.errors import Conflict, InvalidRequest, NotFound, VersionMismatch
from incident_hub.incident_pages import encode_cursor, list_query
from incident_hub.model import (
    OPEN_STATUSES,
    AffectedService,
    AutomatedResponse,
    Escalation,
    ExecutionStatus,
    ExternalRef,
    Incident,
    ResolutionStep,
    Roles,
    Severity,
    SlaPolicy,
    Status,
    Summary,
    TimelineEntry,
    TimelineType,
    merge_services,
    transition,
)
from incident_hub.store.db import Database
from incident_hub.store.tables import (
    AutomatedResponseRow,
    EscalationRow,
    IncidentCounterRow,
    IncidentRow,
    ResolutionStepRow,
    TimelineRow,
)

log = logging.getLogger(__name__)


class _CreateRace(Exception):
    """The open incident seen before the transaction was gone inside it: start over."""


@dataclass(frozen=True)
class Created:
    incident: Incident
    deduplicated: bool


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

    # ---- create -------------------------------------------------------------------------------------

    def create(self, draft: IncidentDraft, *, session: Session | None = None) -> Created:
        """Create an incident, or return the open one that holds the same dedup key. Given a `session`,
        the work joins that transaction (the sync engine's)."""
        if session is not None:
            return self._create_once(draft, session)
        for _attempt in range(5):
            try:
                return self._create_once(draft)
            except IntegrityError:
                # Another transaction opened an incident with this dedup key between our check and our
                # insert (PostgreSQL); the next pass finds it.
                if draft.dedup_key is None:
                    raise
            except _CreateRace:
                continue
        raise Conflict("could not create the incident under contention; try again")

    def _create_once(self, draft: IncidentDraft, outer: Session | None = None) -> Created:
        now = utcnow()
        number: str | None = None
        # SQLite has one writer at a time: the number is taken inside the create's own transaction. On
        # PostgreSQL it is taken before, by one autocommit statement (see `_allocate_number`), and only
        # when a dedup key does not already name an open incident.
        in_transaction = self.db.is_sqlite
        if not in_transaction and (
            draft.dedup_key is None or self._open_incident_with(draft.dedup_key) is None
        ):
            number = self._allocate_number(now)
        detected_at = as_utc(draft.detected_at) if draft.detected_at else now
        severity = draft.severity
        deadline = self.sla.deadline(severity, detected_at, None, None)
        # An incident reported after its acknowledge deadline (detected_at in the past) starts breached.
        missed = self.sla.missed(severity, detected_at, None, None, now)
        incident_id = str(uuid.uuid4())
        with self._write(outer) as session:
            if draft.dedup_key is not None:
                existing = session.scalar(
                    select(IncidentRow.id)
                    .where(IncidentRow.dedup_key == draft.dedup_key, IncidentRow.status.in_(OPEN_STATUSES))
                    .with_for_update()
                )
                if existing is not None:
                    session.add(
                        TimelineRow(
                            incident_id=existing,
                            type=TimelineType.DETECTED,
                            is_public=False,
                            message=f"Duplicate report deduplicated: {draft.title}",
                            author=draft.author or draft.source,
                            timestamp=now,
                        )
                    )
                    return Created(_to_model(_load(session, existing)), deduplicated=True)
            if in_transaction:
                number = self._allocate_number(now, session)
            if number is None:
                raise _CreateRace
            row = IncidentRow(
                id=incident_id,
                number=number,
                title=draft.title,
                description=draft.description,
                severity=severity,
                status=Status.OPEN,
                affected_services=[s.model_dump(mode="json") for s in draft.services()],
                assigned_team=draft.assigned_team,
                assignee=draft.assignee,
                commander=draft.commander,
                tech_lead=draft.tech_lead,
                comms_lead=draft.comms_lead,
                detected_at=detected_at,
                sla_deadline=deadline[1] if deadline else None,
                sla_breached=missed is not None,
                dedup_key=draft.dedup_key,
                source=draft.source,
                tags=list(draft.tags),
                version=1,
                created_at=now,
                updated_at=now,
            )
            responses = [_response_row(incident_id, response) for response in draft.automated_responses]
            session.add(row)
            session.add(
                TimelineRow(
                    incident_id=incident_id,
                    type=TimelineType.DETECTED,
                    is_public=True,
                    message=f"Incident {number} opened: {draft.title}",
                    author=draft.author or draft.source,
                    timestamp=now,
                )
            )
            session.add_all(responses)
            session.flush()
            # A new incident has exactly these children: no need to read them back.
            set_committed_value(row, "steps", [])
            set_committed_value(row, "responses", responses)
            set_committed_value(row, "external_refs", [])
            incident = _to_model(row)
            events.emit(session, "incident_created", incident_id, incident.model_dump(mode="json"))
            if missed is not None:
                self._record_breach(session, row, missed, now)
        log.info(
            "incident created",
            extra={"incident_id": incident_id, "number": number, "severity": severity.value},
        )
        return Created(incident, deduplicated=False)

    def _open_incident_with(self, dedup_key: str) -> str | None:
        with self.db.read() as session:
            return session.scalar(
                select(IncidentRow.id).where(
                    IncidentRow.dedup_key == dedup_key, IncidentRow.status.in_(OPEN_STATUSES)
                )
            )

    def _allocate_number(self, now: datetime, outer: Session | None = None) -> str:
        """Next `INC-YYYYMMDD-NNN` for today's UTC date. On PostgreSQL one autocommit statement, so the
        counter row is locked for that statement only (a failed create leaves a gap, never a twin); on
        SQLite inside the create's transaction (`outer`), which already holds SQLite's one write lock."""
        day = now.strftime("%Y%m%d")
        insert = pg_insert if not self.db.is_sqlite else sqlite_insert
        statement = (
            insert(IncidentCounterRow)
            .values(day=day, last=1)
            .on_conflict_do_update(index_elements=["day"], set_={"last": IncidentCounterRow.last + 1})
            .returning(IncidentCounterRow.last)
        )
        if outer is not None:
            last = outer.execute(statement).scalar_one()
        else:
            # Autocommit: the counter row is locked for this one statement only.
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                last = connection.execute(statement).scalar_one()
        return f"INC-{day}-{last:03d}"

    # ---- read ---------------------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        with self.db.read() as session:
            return _to_model(_load(session, incident_id))

    def wake(self) -> None:
        """Tell the dispatcher that a transaction this service did not own queued deliveries."""
        self._on_commit()

    def get_in(self, session: Session, incident_id: str) -> Incident:
        """The incident as seen inside an open transaction."""
        return _to_model(_load(session, incident_id))

    def search(
        self,
        *,
        status: Sequence[Status] = (),
        severity: Sequence[Severity] = (),
        assigned_team: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first; `cursor` continues where the previous page ended."""
        query = list_query(
            status=status,
            severity=severity,
            assigned_team=assigned_team,
            cursor=cursor,
            limit=limit + 1,
            options=_EAGER,
            dialect=self.db.url.get_backend_name(),
        )
        with self.db.read() as session:
            rows = session.scalars(query).all()
            incidents = [_to_model(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = incidents[-1]
            next_cursor = encode_cursor(last.created_at, str(last.id))
        return Page(incidents, next_cursor)

    def timeline(self, incident_id: str) -> list[TimelineEntry]:
        with self.db.read() as session:
            row = _load(session, incident_id)
            return [_timeline_model(t) for t in row.timeline]

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
            row = _load_for_update(session, incident_id, if_match)
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
                return _to_model(row)
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
                    **_event_names(row),
                    "version": row.version,
                    "changes": changed,
                    "updated_by": patch.author,
                },
            )
            self._check_breach(session, row, now)
            incident = _to_model(row)
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
            row = _load_for_update(session, incident_id, if_match)
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
                **_event_names(row),
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
                        **_event_names(row),
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
            incident = _to_model(row)
        log.info(
            "incident status changed",
            extra={"incident_id": incident_id, "old_status": current.value, "new_status": move.status.value},
        )
        return incident

    def escalate(
        self, incident_id: str, request: EscalationRequest, if_match: int | None = None
    ) -> EscalationResult:
        with self._write() as session:
            row = _load_for_update(session, incident_id, if_match)
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
                    **_event_names(row),
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
            result = EscalationResult(_to_model(row), _escalation_model(escalation), changed)
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
            row = _load(session, incident_id)
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
            result = _timeline_model(entry)
            events.emit(
                session,
                "incident_note_added",
                row.id,
                {
                    **_event_names(row),
                    "note": result.model_dump(mode="json"),
                },
            )
        return result

    def add_resolution_step(self, incident_id: str, draft: ResolutionStepDraft) -> ResolutionStep:
        with self._write() as session:
            row = _load_for_update(session, incident_id, None)
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
            result = _step_model(step)
            events.emit(
                session,
                "incident_resolution_step_added",
                row.id,
                {
                    **_event_names(row),
                    "version": row.version,
                    "resolution_step": result.model_dump(mode="json"),
                },
            )
        return result

    def list_resolution_steps(self, incident_id: str) -> list[ResolutionStep]:
        with self.db.read() as session:
            return [_step_model(s) for s in _load(session, incident_id).steps]

    def record_automated_response(self, incident_id: str, response: AutomatedResponse) -> AutomatedResponse:
        """Record an automated action; recording the same `response_id` again updates its status."""
        with self._write() as session:
            row = _load_for_update(session, incident_id, None)
            now = utcnow()
            existing = session.scalar(
                select(AutomatedResponseRow).where(
                    AutomatedResponseRow.incident_id == row.id,
                    AutomatedResponseRow.response_id == response.response_id,
                )
            )
            if existing is None:
                stored = _response_row(row.id, response)
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
            result = _response_model(stored)
            events.emit(
                session,
                "incident_automated_response_recorded",
                row.id,
                {
                    **_event_names(row),
                    "version": row.version,
                    "automated_response": result.model_dump(mode="json"),
                },
            )
        return result

    def assign_role(
        self, incident_id: str, assignment: RoleAssignment, if_match: int | None = None
    ) -> Incident:
        with self._write() as session:
            row = _load_for_update(session, incident_id, if_match)
            now = utcnow()
            field = assignment.role.value
            old = getattr(row, field)
            if old == assignment.person:
                return _to_model(row)
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
                    **_event_names(row),
                    "version": row.version,
                    "role": field,
                    "old": old,
                    "new": assignment.person,
                    "assigned_by": assignment.author,
                },
            )
            incident = _to_model(row)
        return incident

    # ---- SLA ----------------------------------------------------------------------------------------

    def check_sla(self) -> int:
        """Mark open incidents whose deadline has passed as breached (one event each); returns how many."""
        now = utcnow()
        with self._write() as session:
            rows = session.scalars(
                select(IncidentRow)
                .options(*_EAGER)
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
        self._record_breach(session, row, missed, now)
        return True

    def _record_breach(self, session: Session, row: IncidentRow, missed: str, now: datetime) -> None:
        session.add(
            TimelineRow(
                incident_id=row.id,
                type=TimelineType.ESCALATED,
                is_public=False,
                timestamp=now,
                author="sla",
                message=f"SLA breached: {missed} deadline missed",
            )
        )
        events.emit(
            session,
            "incident_sla_breached",
            row.id,
            {
                **_event_names(row),
                "severity": row.severity,
                "deadline_kind": missed,
                "deadline": (
                    row.detected_at
                    + (self.sla.acknowledge if missed == "acknowledge" else self.sla.resolve)[
                        Severity(row.severity)
                    ]
                ).isoformat(),
                "detected_at": row.detected_at.isoformat(),
            },
        )

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

    @contextmanager
    def _write(self, outer: Session | None = None) -> Iterator[Session]:
        """A write transaction; after it commits, the dispatcher is woken if it queued deliveries. With
        `outer`, the work joins that transaction and its owner commits (and wakes)."""
        if outer is not None:
            yield outer
            return
        with self.db.write() as session:
            yield session
            queued = session.info.pop("deliveries_queued", False)
        if queued:
            self._on_commit()


def _event_names(row: IncidentRow) -> dict[str, str]:
    """How every event body names its incident: the seed's `incident_id` (the human id), the uuid as
    `id`, and `number` (the human id again) for subscribers written before the seed contract."""
    return {"incident_id": row.number, "id": row.id, "number": row.number}


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


_EAGER = (
    selectinload(IncidentRow.steps),
    selectinload(IncidentRow.responses),
    selectinload(IncidentRow.external_refs),
)


def _load(session: Session, incident_id: str) -> IncidentRow:
    row = session.scalar(select(IncidentRow).options(*_EAGER).where(_identified_by(incident_id)))
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return row


def _load_for_update(session: Session, incident_id: str, if_match: int | None) -> IncidentRow:
    row = session.scalar(
        select(IncidentRow).options(*_EAGER).where(_identified_by(incident_id)).with_for_update()
    )
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    if if_match is not None and row.version != if_match:
        raise VersionMismatch(
            f"incident is at version {row.version}, not {if_match}", current_version=row.version
        )
    return row


def _identified_by(incident_id: str) -> ColumnElement[bool]:
    """The incident a caller names by its uuid or by its human id (`INC-20250621-001`, the seed's
    `incident_id`): either way one lookup on a unique index."""
    try:
        return IncidentRow.id == str(uuid.UUID(incident_id))
    except ValueError:
        return IncidentRow.number == incident_id


def _response_row(incident_id: str, response: AutomatedResponse) -> AutomatedResponseRow:
    return AutomatedResponseRow(
        response_id=response.response_id,
        incident_id=incident_id,
        action_type=response.action_type,
        details=response.details,
        execution_status=response.execution_status,
        executed_at=as_utc(response.executed_at) if response.executed_at else None,
    )


def _response_model(row: AutomatedResponseRow) -> AutomatedResponse:
    return AutomatedResponse(
        response_id=row.response_id,
        action_type=row.action_type,
        details=row.details,
        execution_status=ExecutionStatus(row.execution_status),
        executed_at=row.executed_at,
    )


def _step_model(row: ResolutionStepRow) -> ResolutionStep:
    return ResolutionStep(
        step_number=row.step_number,
        action_taken=row.action_taken,
        performed_by=row.performed_by,
        timestamp=row.timestamp,
    )


def _timeline_model(row: TimelineRow) -> TimelineEntry:
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


def _escalation_model(row: EscalationRow) -> Escalation:
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


def _to_model(row: IncidentRow) -> Incident:
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
        automated_responses=[_response_model(r) for r in row.responses],
        resolution_steps=[_step_model(s) for s in row.steps],
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
