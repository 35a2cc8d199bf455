"""Reading and replaying the outbox: deliveries by state, their attempts, dead-letter replay."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from incident_hub.clock import utcnow
from incident_hub.errors import Conflict, NotFound
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryAttemptRow, DeliveryRow, EventRow
from incident_hub.sync.dispatcher import CANCELLED, DEAD, PENDING


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None


class Look(BaseModel):
    """One look for the object of a create whose outcome was unknown."""

    at: datetime
    outcome: str = Field(description="found, nothing, or failed: <error>.")
    external_id: str | None = None


class InDoubt(BaseModel):
    """A create whose outcome was unknown: the hub looks for the object until `until` before it creates
    again (`outcome`: None while it still looks; found, linked, or created again)."""

    since: datetime
    until: datetime
    looks: list[Look]
    outcome: str | None


class Delivery(BaseModel):
    id: int
    event_id: str
    event_type: str
    incident_id: str | None
    target_kind: str
    target_id: str
    state: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    in_doubt: InDoubt | None = None
    attempt_log: list[Attempt] | None = None


def _model(row: DeliveryRow, event: EventRow) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        event_type=event.type,
        incident_id=event.incident_id,
        target_kind=row.target_kind,
        target_id=row.target_id,
        state=row.state,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        in_doubt=InDoubt(
            since=row.in_doubt_since,
            until=row.in_doubt_until or row.in_doubt_since,
            looks=[Look.model_validate(look) for look in row.in_doubt_looks or []],
            outcome=row.in_doubt_outcome,
        )
        if row.in_doubt_since is not None
        else None,
    )


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def search(
        self,
        *,
        state: str | None,
        target_kind: str | None = None,
        after_id: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        query = select(DeliveryRow, EventRow).join(EventRow, EventRow.id == DeliveryRow.event_id)
        if state:
            query = query.where(DeliveryRow.state == state)
        if target_kind:
            query = query.where(DeliveryRow.target_kind == target_kind)
        if after_id is not None:
            query = query.where(DeliveryRow.id > after_id)
        with self.db.read() as session:
            rows = session.execute(query.order_by(DeliveryRow.id).limit(limit)).all()
            return [_model(d, e) for d, e in rows]

    def get(self, delivery_id: int) -> Delivery:
        with self.db.read() as session:
            found = session.execute(
                select(DeliveryRow, EventRow)
                .join(EventRow, EventRow.id == DeliveryRow.event_id)
                .where(DeliveryRow.id == delivery_id)
            ).first()
            if found is None:
                raise NotFound(f"no delivery {delivery_id}")
            delivery = _model(found[0], found[1])
            attempts = session.scalars(
                select(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.delivery_id == delivery_id)
                .order_by(DeliveryAttemptRow.id)
            ).all()
            delivery.attempt_log = [
                Attempt(
                    attempt=a.attempt,
                    started_at=a.started_at,
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                )
                for a in attempts
            ]
            return delivery

    def replay(self, delivery_id: int) -> Delivery:
        """Send a dead delivery again, with a fresh attempt budget (its attempt log is kept)."""
        with self.db.write() as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"no delivery {delivery_id}")
            if row.state != DEAD:
                raise Conflict(f"delivery {delivery_id} is {row.state}; only dead deliveries are replayed")
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(state=PENDING, attempts=0, next_attempt_at=utcnow(), lease_until=None, leased_by=None)
            )
        return self.get(delivery_id)

    def discard(self, delivery_id: int) -> Delivery:
        """Give up on a dead delivery for good (it is kept, `cancelled`): the deliveries for the same
        incident and target that waited behind it go out."""
        with self.db.write() as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"no delivery {delivery_id}")
            if row.state != DEAD:
                raise Conflict(f"delivery {delivery_id} is {row.state}; only dead deliveries are discarded")
            row.state = CANCELLED
        return self.get(delivery_id)
