"""Creating an incident, the API's hot path, on Core statements built once.

A create stores the incident, its "opened" timeline entry, its automated responses and its
`incident_created` event with one delivery per interested target, and takes the day's next number
(`numbering`), all in one transaction. On PostgreSQL the usual create (no automated responses, no deadline
already missed, no transaction to join) is one statement in autocommit: the day's counter row stays
locked only while PostgreSQL runs that statement, never while a Python thread waits for the GIL to send
COMMIT (which made the counter row the ceiling of concurrent creates; see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    String,
    Table,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from incident_hub import events
from incident_hub.clock import as_utc, utcnow
from incident_hub.commands import IncidentDraft
from incident_hub.errors import Conflict
from incident_hub.incidents import durations, numbering
from incident_hub.incidents.rows import load, to_model
from incident_hub.incidents.sla import record_breach
from incident_hub.incidents.transaction import write
from incident_hub.model import (
    OPEN_STATUSES,
    AutomatedResponse,
    Incident,
    Roles,
    SlaPolicy,
    Status,
    TimelineType,
)
from incident_hub.store.db import Database
from incident_hub.store.tables import AutomatedResponseRow, IncidentRow, TimelineRow

log = logging.getLogger(__name__)

INCIDENTS = cast(Table, IncidentRow.__table__)
TIMELINE = cast(Table, TimelineRow.__table__)
RESPONSES = cast(Table, AutomatedResponseRow.__table__)

# The incident columns a create sets, besides `number`.
_INCIDENT_COLUMNS = (
    "id",
    "title",
    "description",
    "severity",
    "status",
    "affected_services",
    "assigned_team",
    "assignee",
    "commander",
    "tech_lead",
    "comms_lead",
    "detected_at",
    "sla_deadline",
    "sla_breached",
    "dedup_key",
    "source",
    "tags",
    "version",
    "created_at",
    "updated_at",
    "first_signal_at",
    "time_to_detect_seconds",
)
# The "opened" entry's columns, besides `incident_id` and `message` (which names the number).
_OPENED_COLUMNS = ("type", "is_public", "author", "timestamp")

_INSERT_INCIDENT = insert(INCIDENTS)
_INSERT_TIMELINE = insert(TIMELINE)
_INSERT_RESPONSE = insert(RESPONSES)
_OPEN_WITH_KEY = select(INCIDENTS.c.id).where(
    INCIDENTS.c.dedup_key == bindparam("dedup_key"),
    INCIDENTS.c.status.in_([status.value for status in OPEN_STATUSES]),
)
_OPEN_WITH_KEY_LOCKED = _OPEN_WITH_KEY.with_for_update()


def _opened_message(number: str, title: str) -> str:
    return f"Incident {number} opened: {title}"


def _create_at_once() -> Select[str]:
    """PostgreSQL: bump the day's counter, insert the incident, its "opened" entry, its event and the
    event's deliveries, in one statement that returns the number. The event's payload is prepared with
    a placeholder number, which the statement fills in."""
    counter = numbering.BUMP_POSTGRESQL.cte("counter")
    number = numbering.number_sql(bindparam("day", type_=String), counter.c.last)
    new_incident = (
        insert(INCIDENTS)
        .values(
            {
                **{name: bindparam(f"i_{name}", type_=INCIDENTS.c[name].type) for name in _INCIDENT_COLUMNS},
                "number": select(number).scalar_subquery(),
            }
        )
        .returning(INCIDENTS.c.id, INCIDENTS.c.number)
        .cte("new_incident")
    )
    message = (
        literal("Incident ", String)
        + new_incident.c.number
        + literal(" opened: ", String)
        + bindparam("t_title", type_=String)
    )
    opened = insert(TIMELINE).from_select(
        ["incident_id", "message", *_OPENED_COLUMNS],
        select(
            new_incident.c.id,
            message,
            *(bindparam(f"t_{name}", type_=TIMELINE.c[name].type) for name in _OPENED_COLUMNS),
        ),
    )
    numbered: Any = bindparam("e_payload", type_=postgresql.JSONB)
    for key in ("incident_id", "number"):
        path = literal_column(f"'{{incident_created,{key}}}'", postgresql.ARRAY(String))
        numbered = func.jsonb_set(numbered, path, func.to_jsonb(new_incident.c.number))
    new_event = (
        insert(events.EVENTS_TABLE)
        .values(
            id=bindparam("e_id"),
            incident_id=bindparam("e_incident_id"),
            type=bindparam("e_type"),
            payload=select(sql_cast(numbered, postgresql.JSON)).select_from(new_incident).scalar_subquery(),
            created_at=bindparam("e_created_at", type_=events.EVENTS_TABLE.c.created_at.type),
        )
        .returning(events.EVENTS_TABLE.c.id)
        .cte("new_event")
    )
    targets = (
        func.unnest(
            bindparam("d_kinds", type_=postgresql.ARRAY(String)),
            bindparam("d_targets", type_=postgresql.ARRAY(String)),
        )
        .table_valued("kind", "target_id")
        .render_derived(name="target")
    )
    queued_at = bindparam("d_at", type_=events.DELIVERIES_TABLE.c.created_at.type)
    deliveries = insert(events.DELIVERIES_TABLE).from_select(
        [
            "event_id",
            "target_kind",
            "target_id",
            "ordering_key",
            "state",
            "attempts",
            "next_attempt_at",
            "created_at",
        ],
        select(
            new_event.c.id,
            targets.c.kind,
            targets.c.target_id,
            bindparam("d_ordering_key", type_=String),
            literal("pending", String),
            literal(0, Integer),
            queued_at,
            queued_at,
        ).select_from(new_event.join(targets, true())),
    )
    return select(new_incident.c.number).add_cte(opened.cte("opened"), deliveries.cte("deliveries"))


_CREATE_AT_ONCE = _create_at_once()


@dataclass(frozen=True)
class Created:
    incident: Incident
    deduplicated: bool


# Stands in for the number until the create's transaction takes it.
_UNNUMBERED = "INC-00000000-000"


@dataclass
class _NewIncident:
    """Everything one create writes, worked out before its transaction starts (so that little Python runs
    while it holds SQLite's write lock or the day's counter row); only the number is missing."""

    draft: IncidentDraft
    now: datetime
    values: dict[str, Any]
    missed: str | None
    responses: list[AutomatedResponse] = field(default_factory=list)
    unnumbered: Incident = field(init=False)
    body: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.unnumbered = self._model(_UNNUMBERED)
        self.body = self.unnumbered.model_dump(mode="json")

    def incident(self, number: str) -> Incident:
        return self.unnumbered.model_copy(update={"incident_id": number, "number": number})

    def event_body(self, number: str) -> dict[str, Any]:
        """The `incident_created` body: the incident as the API answers it."""
        return {**self.body, "incident_id": number, "number": number}

    @property
    def id(self) -> str:
        return str(self.values["id"])

    @property
    def day(self) -> str:
        """The day whose counter numbers it."""
        return numbering.day_of(self.now)

    @property
    def opened(self) -> dict[str, Any]:
        return {
            "type": TimelineType.DETECTED.value,
            "is_public": True,
            "author": self.draft.author or self.draft.source,
            "timestamp": self.now,
        }

    def _model(self, number: str) -> Incident:
        values = self.values
        return Incident(
            id=uuid.UUID(self.id),
            incident_id=number,
            number=number,
            title=values["title"],
            description=values["description"],
            severity=values["severity"],
            status=values["status"],
            affected_services=[service["name"] for service in values["affected_services"]],
            service_impacts=values["affected_services"],
            assigned_team=values["assigned_team"],
            assignee=values["assignee"],
            roles=Roles(
                commander=values["commander"],
                tech_lead=values["tech_lead"],
                comms_lead=values["comms_lead"],
            ),
            detected_at=values["detected_at"],
            acknowledged_at=None,
            mitigated_at=None,
            resolved_at=None,
            closed_at=None,
            sla_deadline=values["sla_deadline"],
            sla_breached=values["sla_breached"],
            root_cause=None,
            resolution_notes=None,
            summary=None,
            dedup_key=values["dedup_key"],
            source=values["source"],
            tags=values["tags"],
            version=1,
            created_at=self.now,
            updated_at=self.now,
            automated_responses=self.responses,
        )


class Creation:
    """Creates incidents, or hands back the open one that holds the same dedup key."""

    def __init__(self, db: Database, sla: SlaPolicy, on_commit: Callable[[], None]) -> None:
        self.db = db
        self.sla = sla
        self._on_commit = on_commit
        # Autocommit connections from the same pool, for statements that are a transaction on their own.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")

    def create(self, draft: IncidentDraft, *, session: Session | None = None) -> Created:
        """Create an incident, or return the open one that holds the same dedup key. Given a `session`,
        the work joins that transaction (the sync engine's)."""
        if session is not None:
            return self._create_in(session, self._new(draft), joined=True)
        for _attempt in range(5):
            try:
                created = self._create(draft)
            except IntegrityError:
                # Another transaction opened an incident with this dedup key between our check and our
                # insert (PostgreSQL); the next pass finds it.
                if draft.dedup_key is None:
                    raise
                continue
            if created is not None:
                return created
        raise Conflict("could not create the incident under contention; try again")

    def _create(self, draft: IncidentDraft) -> Created | None:
        """One attempt; None when the open incident seen with this dedup key closed meanwhile."""
        if self.db.is_sqlite:
            # One writer at a time: check, number and insert in the one write transaction.
            new = self._new(draft)
            with write(self.db, self._on_commit) as session:
                return self._create_in(session, new, joined=False)
        if draft.dedup_key is not None and self._open_incident_with(draft.dedup_key):
            with write(self.db, self._on_commit) as session:
                return self._deduplicate(session, draft)
        new = self._new(draft)
        if new.responses or new.missed is not None:
            with write(self.db, self._on_commit) as session:
                return self._insert(session, new, numbering.allocate(session.connection(), new.day))
        return self._insert_at_once(new)

    def _create_in(self, session: Session, new: _NewIncident, *, joined: bool) -> Created:
        if new.draft.dedup_key is not None:
            existing = self._deduplicate(session, new.draft)
            if existing is not None:
                return existing
        if joined and not self.db.is_sqlite:
            # The joined transaction may run long (the sync engine's): take the number in a statement of
            # its own, so the day's counter is not locked for all of it. A rollback leaves a gap.
            with self._autocommit.connect() as connection:
                number = numbering.allocate(connection, new.day)
        else:
            number = numbering.allocate(session.connection(), new.day)
        return self._insert(session, new, number)

    def _open_incident_with(self, dedup_key: str) -> bool:
        with self._autocommit.connect() as connection:
            return connection.execute(_OPEN_WITH_KEY, {"dedup_key": dedup_key}).first() is not None

    def _deduplicate(self, session: Session, draft: IncidentDraft) -> Created | None:
        """The open incident holding the draft's dedup key, with the duplicate report on its timeline;
        None when there is none."""
        connection = session.connection()
        existing = connection.execute(_OPEN_WITH_KEY_LOCKED, {"dedup_key": draft.dedup_key}).scalar()
        if existing is None:
            return None
        connection.execute(
            _INSERT_TIMELINE,
            {
                "incident_id": existing,
                "type": TimelineType.DETECTED.value,
                "is_public": False,
                "message": f"Duplicate report deduplicated: {draft.title}",
                "author": draft.author or draft.source,
                "timestamp": utcnow(),
            },
        )
        return Created(to_model(load(session, existing)), deduplicated=True)

    def _new(self, draft: IncidentDraft) -> _NewIncident:
        now = utcnow()
        detected_at = as_utc(draft.detected_at) if draft.detected_at else now
        first_signal_at = as_utc(draft.first_signal_at) if draft.first_signal_at else None
        deadline = self.sla.deadline(draft.severity, detected_at, None, None)
        # An incident reported after its acknowledge deadline (detected_at in the past) starts breached.
        missed = self.sla.missed(draft.severity, detected_at, None, None, now)
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "title": draft.title,
            "description": draft.description,
            "severity": draft.severity.value,
            "status": Status.OPEN.value,
            "affected_services": [s.model_dump(mode="json") for s in draft.services()],
            "assigned_team": draft.assigned_team,
            "assignee": draft.assignee,
            "commander": draft.commander,
            "tech_lead": draft.tech_lead,
            "comms_lead": draft.comms_lead,
            "detected_at": detected_at,
            "sla_deadline": deadline[1] if deadline else None,
            "sla_breached": missed is not None,
            "dedup_key": draft.dedup_key,
            "source": draft.source,
            "tags": list(draft.tags),
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "first_signal_at": first_signal_at,
            "time_to_detect_seconds": durations.time_to_detect(first_signal_at, detected_at),
        }
        responses = [
            response.model_copy(update={"executed_at": as_utc(response.executed_at)})
            if response.executed_at is not None
            else response
            for response in draft.automated_responses
        ]
        return _NewIncident(draft, now, values, missed, responses)

    def _insert(self, session: Session, new: _NewIncident, number: str) -> Created:
        """Write `new` with `number` in `session`'s transaction."""
        connection = session.connection()
        connection.execute(_INSERT_INCIDENT, {**new.values, "number": number})
        connection.execute(
            _INSERT_TIMELINE,
            {**new.opened, "incident_id": new.id, "message": _opened_message(number, new.draft.title)},
        )
        if new.responses:
            connection.execute(
                _INSERT_RESPONSE,
                [
                    {
                        "response_id": response.response_id,
                        "incident_id": new.id,
                        "action_type": response.action_type,
                        "details": response.details,
                        "execution_status": response.execution_status.value,
                        "executed_at": response.executed_at,
                    }
                    for response in new.responses
                ],
            )
        events.emit(session, "incident_created", new.id, new.event_body(number))
        incident = new.incident(number)
        if new.missed is not None:
            record_breach(
                session,
                self.sla,
                incident_id=new.id,
                number=number,
                severity=incident.severity,
                detected_at=incident.detected_at,
                missed=new.missed,
                now=new.now,
            )
        self._created(incident)
        return Created(incident, deduplicated=False)

    def _insert_at_once(self, new: _NewIncident) -> Created:
        """PostgreSQL: write `new` and take its number in one autocommit statement."""
        # Only the number is still unknown: the body's copies of it are filled in by the statement.
        with self._autocommit.connect() as connection:
            emission = events.prepare(connection, "incident_created", new.id, new.body)
            parameters: dict[str, Any] = {f"i_{name}": new.values[name] for name in _INCIDENT_COLUMNS}
            parameters.update({f"t_{name}": value for name, value in new.opened.items()})
            parameters.update(
                day=new.day,
                t_title=new.draft.title,
                e_id=emission.event_id,
                e_incident_id=new.id,
                e_type=emission.name,
                e_payload=emission.payload,
                e_created_at=emission.created_at,
                d_kinds=[kind for kind, _ in emission.targets],
                d_targets=[target for _, target in emission.targets],
                d_ordering_key=emission.ordering_key,
                d_at=emission.created_at,
            )
            number: str = connection.execute(_CREATE_AT_ONCE, parameters).scalar_one()
        events.recorded(emission)
        if emission.targets:
            self._on_commit()
        incident = new.incident(number)
        self._created(incident)
        return Created(incident, deduplicated=False)

    @staticmethod
    def _created(incident: Incident) -> None:
        log.info(
            "incident created",
            extra={
                "incident_id": str(incident.id),
                "number": incident.number,
                "severity": incident.severity.value,
            },
        )
