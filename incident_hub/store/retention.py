"""Retention: rows kept for audit and replay are pruned once they are older than their setting.

What goes: webhook rejections; inbox rows already applied (never pending or failed ones: those still
matter); deliveries that reached an end (delivered, or cancelled by an admin) with their attempts. Dead
deliveries stay until an admin replays or discards them; events and incidents are never pruned.

Deletes go in small batches, each its own transaction, so a prune never holds the write lock for long
(SQLite has one writer). Every replica may prune: deleting what another replica deleted is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from incident_hub.clock import utcnow
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, InboxRow, WebhookRejectionRow

log = logging.getLogger(__name__)

BATCH = 1000


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of row is kept; 0 keeps it forever."""

    rejections_days: float = 30
    inbox_days: float = 14
    deliveries_days: float = 30


@dataclass(frozen=True)
class Pruned:
    rejections: int = 0
    inbox: int = 0
    deliveries: int = 0

    @property
    def total(self) -> int:
        return self.rejections + self.inbox + self.deliveries


class Retention:
    def __init__(self, db: Database, policy: RetentionPolicy, interval: timedelta = timedelta(hours=1)):
        self.db = db
        self.policy = policy
        self.interval = interval

    def prune(self, now: datetime | None = None) -> Pruned:
        """Delete every row past its retention; says how many of each went."""
        now = now or utcnow()
        counts = Pruned(
            rejections=self._prune(
                self.policy.rejections_days, now, WebhookRejectionRow, WebhookRejectionRow.received_at
            ),
            inbox=self._prune(
                self.policy.inbox_days, now, InboxRow, InboxRow.received_at, InboxRow.state == "applied"
            ),
            deliveries=self._prune(
                self.policy.deliveries_days,
                now,
                DeliveryRow,
                DeliveryRow.created_at,
                DeliveryRow.state.in_(("delivered", "cancelled")),
            ),
        )
        if counts.total:
            log.info("pruned old rows", extra={"pruned": counts.__dict__})
        return counts

    def _prune(self, days: float, now: datetime, table: Any, stamp: Any, *where: Any) -> int:
        if days <= 0:
            return 0
        cutoff = now - timedelta(days=days)
        removed = 0
        while True:
            with self.db.write() as session:
                ids = list(
                    session.scalars(
                        select(table.id).where(stamp < cutoff, *where).order_by(table.id).limit(BATCH)
                    )
                )
                if ids:
                    session.execute(delete(table).where(table.id.in_(ids)))
            removed += len(ids)
            if len(ids) < BATCH:
                return removed

    async def run(self, stop: asyncio.Event) -> None:
        """Prune every interval (the first right away) until `stop` is set."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.prune)
            except Exception:
                log.exception("pruning failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval.total_seconds())
