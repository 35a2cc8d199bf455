"""The audit log: every admin action (mapping saves and rollbacks, connector changes, replays, discards),
who did it, on what, when, with what detail. Written once, never edited."""

from __future__ import annotations

import builtins
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from incident_hub.clock import utcnow
from incident_hub.store.db import Database
from incident_hub.store.tables import AuditEntryRow

log = logging.getLogger(__name__)


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def actor_name(name: str, key_id: str) -> str:
    """How an API key appears as the actor: its name and id (`ops-bot (5b8d7b26-...)`)."""
    return f"{name} ({key_id})"


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> AuditEntry:
        """Keep one admin action (`mapping.save`, `connector.upsert`, ...) on `target`."""
        with self.db.write() as session:
            row = AuditEntryRow(
                at=utcnow(), actor=actor[:300], action=action[:100], target=target[:300], detail=detail
            )
            session.add(row)
            session.flush()
            entry = AuditEntry.model_validate(row)
        log.info("audit", extra={"actor": actor, "action": action, "target": target})
        return entry

    def list(self, limit: int = 100, *, before_id: int | None = None) -> builtins.list[AuditEntry]:
        """The latest entries, newest first (`before_id`: the page after the one ending there)."""
        query = select(AuditEntryRow).order_by(AuditEntryRow.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AuditEntryRow.id < before_id)
        with self.db.read() as session:
            return [AuditEntry.model_validate(row) for row in session.scalars(query)]
