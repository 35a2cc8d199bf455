"""Creates whose outcome is unknown, and vendor objects made twice.

A create that timed out, lost its connection after sending, or got a 5xx may still land at the vendor
(a busy ServiceNow commits the record a minute later): creating again at once makes a second object. The
delivery is then *in doubt*: it only looks for the object (`find_all`) on the connector's
`in_doubt_schedule_seconds`, and creates again once the whole window has passed with nothing found. The
state lives on the delivery row (`in_doubt_*`), so a restart resumes it; the dispatcher's
`next_attempt_at` times the looks, and later deliveries for the incident wait behind it as behind any
pending one.

Two or more objects carrying one incident's id: the oldest is linked, the others recorded as duplicates
(`vendor_duplicates`), never written, and cancelled only when the connector says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import PushResult
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, DuplicateRow

log = logging.getLogger(__name__)

FOUND, LINKED, CREATED = "found", "linked", "created again"
_NEVER = datetime.max.replace(tzinfo=UTC)


class Duplicate(BaseModel):
    """A vendor object carrying an incident's id beside the one the incident is linked to."""

    id: int
    connector_id: str
    incident_id: str
    external_id: str
    external_key: str | None
    url: str | None
    kept_external_id: str = Field(description="The object the incident stays linked to (the oldest).")
    vendor_created_at: datetime | None
    found_at: datetime
    found_by: str = Field(description="push (a look before a create), webhook or reconciler.")
    cancelled_at: datetime | None = Field(description="When the hub cancelled it (`cancel_duplicates`).")
    cancel_error: str | None


def list_duplicates(
    db: Database,
    *,
    connector_id: str | None = None,
    incident_id: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Duplicate]:
    query = select(DuplicateRow).order_by(DuplicateRow.id).limit(limit)
    if connector_id is not None:
        query = query.where(DuplicateRow.connector_id == connector_id)
    if incident_id is not None:
        query = query.where(DuplicateRow.incident_id == incident_id)
    if after_id is not None:
        query = query.where(DuplicateRow.id > after_id)
    with db.read() as session:
        return [
            Duplicate(
                id=row.id,
                connector_id=row.connector_id,
                incident_id=row.incident_id,
                external_id=row.external_id,
                external_key=row.external_key,
                url=row.url,
                kept_external_id=row.kept_external_id,
                vendor_created_at=row.vendor_created_at,
                found_at=row.found_at,
                found_by=row.found_by,
                cancelled_at=row.cancelled_at,
                cancel_error=row.cancel_error,
            )
            for row in session.scalars(query)
        ]


@dataclass(frozen=True)
class Doubt:
    """An open doubt on one delivery: since when, the window's end, and the looks made so far."""

    since: datetime
    until: datetime
    looks: list[dict[str, Any]]

    def next_look(self, schedule: list[float], now: datetime) -> datetime | None:
        """When to look again after this look (the one after `looks`) found nothing; None: the window
        is over. Look k is due `schedule[0] + ... + schedule[k]` seconds after `since`."""
        following = len(self.looks) + 1
        if following >= len(schedule) or now >= self.until:
            return None
        return max(now, self.since + timedelta(seconds=sum(schedule[: following + 1])))


class Doubts:
    """The in-doubt state of deliveries, in the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_for(self, delivery_id: int) -> Doubt | None:
        with self.db.read() as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None or row.in_doubt_since is None or row.in_doubt_outcome is not None:
                return None
            until = row.in_doubt_until or row.in_doubt_since
            return Doubt(as_utc(row.in_doubt_since), as_utc(until), list(row.in_doubt_looks or []))

    def begin(self, delivery_id: int, schedule: list[float], reason: str) -> datetime:
        """Put the delivery in doubt from now; returns when the first look is due."""
        now = utcnow()
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(
                    in_doubt_since=now,
                    in_doubt_until=now + timedelta(seconds=sum(schedule)),
                    in_doubt_looks=[],
                    in_doubt_outcome=None,
                )
            )
        log.warning(
            "create outcome unknown; looking before creating again",
            extra={"delivery_id": delivery_id, "reason": reason[:300], "window_seconds": sum(schedule)},
        )
        return now + timedelta(seconds=schedule[0])

    def record_look(self, delivery_id: int, outcome: str, external_id: str | None = None) -> None:
        with self.db.write() as session:
            row = session.get(DeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                return
            look = {"at": utcnow().isoformat(), "outcome": outcome, "external_id": external_id}
            row.in_doubt_looks = [*(row.in_doubt_looks or []), look]

    def end(self, delivery_id: int, outcome: str) -> None:
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.in_doubt_since.is_not(None))
                .values(in_doubt_outcome=outcome)
            )


def oldest_first(candidates: list[PushResult]) -> list[PushResult]:
    """The vendor objects by creation time (unknown last), a tie broken by the lowest id (numerically
    where both are numbers): the first is the one to keep."""

    def order(found: PushResult) -> tuple[int, datetime, int, int, str]:
        created = as_utc(found.created_at) if found.created_at is not None else _NEVER
        numeric = found.external_id.isdigit()
        return (
            found.created_at is None,
            created,
            0 if numeric else 1,
            int(found.external_id) if numeric else 0,
            found.external_id,
        )

    unique = {found.external_id: found for found in candidates}
    return sorted(unique.values(), key=order)


def record_duplicate(
    session: Session,
    *,
    connector_id: str,
    incident_id: str,
    duplicate: PushResult,
    kept_external_id: str,
    found_by: str,
) -> bool:
    """Record one duplicate (once per vendor object); True when it is new."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    made = session.scalar(
        insert(DuplicateRow)
        .values(
            connector_id=connector_id,
            incident_id=incident_id,
            external_id=duplicate.external_id,
            external_key=duplicate.external_key,
            url=duplicate.url,
            kept_external_id=kept_external_id,
            vendor_created_at=duplicate.created_at,
            found_at=utcnow(),
            found_by=found_by,
        )
        .on_conflict_do_nothing()
        .returning(DuplicateRow.id)
    )
    if made is not None:
        log.warning(
            "duplicate vendor object recorded; it is never written",
            extra={
                "connector": connector_id,
                "incident_id": incident_id,
                "external_id": duplicate.external_id,
                "kept_external_id": kept_external_id,
                "found_by": found_by,
            },
        )
    return made is not None


def record_duplicates(
    db: Database, connector_id: str, incident_id: str, kept: PushResult, others: list[PushResult]
) -> list[tuple[int, PushResult]]:
    """Record the objects beside the kept one; those new to the table, with their row ids."""
    new: list[tuple[int, PushResult]] = []
    with db.write() as session:
        for duplicate in others:
            if record_duplicate(
                session,
                connector_id=connector_id,
                incident_id=incident_id,
                duplicate=duplicate,
                kept_external_id=kept.external_id,
                found_by="push",
            ):
                row_id = session.scalar(
                    select(DuplicateRow.id).where(
                        DuplicateRow.connector_id == connector_id,
                        DuplicateRow.external_id == duplicate.external_id,
                    )
                )
                if row_id is not None:
                    new.append((row_id, duplicate))
    return new


def record_cancel(db: Database, duplicate_id: int, error: str | None) -> None:
    with db.write() as session:
        values: dict[str, Any] = {"cancel_error": error} if error else {"cancelled_at": utcnow()}
        session.execute(update(DuplicateRow).where(DuplicateRow.id == duplicate_id).values(**values))
