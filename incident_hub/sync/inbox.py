"""Ingress and the inbox: authenticate a vendor webhook, keep its raw body (deduplicated), answer 202;
then, off the request path, parse and apply it.

A rejected call (unknown connector, bad signature, malformed or stale body) is answered 404/401/400 and
recorded in `webhook_rejections` with its reason; nothing is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import ChangeKind, ConnectorError, WebhookRejected
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.errors import NotFound
from incident_hub.logs import log_context
from incident_hub.mapping.store import MappingStore
from incident_hub.store.db import Database
from incident_hub.store.tables import InboxRow, WebhookRejectionRow
from incident_hub.sync.apply import Applier, LinkRace

log = logging.getLogger(__name__)

# Headers worth keeping with the raw body (for parsing later and for audit); never credentials.
_KEPT_HEADERS = ("content-type", "user-agent", "x-webhook-id", "x-atlassian-webhook-identifier")


@dataclass(frozen=True)
class Received:
    status: int
    detail: str
    inbox_id: int | None = None
    duplicate: bool = False


class Inbox:
    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        applier: Applier,
        max_age: timedelta = timedelta(hours=48),
        lease: timedelta = timedelta(seconds=10),
        mappings: MappingStore | None = None,
    ) -> None:
        self.db = db
        # The stored mapping versions (None: each connector's own mapping).
        self.mappings = mappings
        self.registry = registry
        self.applier = applier
        self.max_age = max_age
        # A claimed batch is leased for this long: what a crashed replica had claimed waits at most this
        # long. Applying is guarded by the row lock and the state check, so a lease that runs out while
        # a slow replica is still working costs a wasted parse, never a second apply.
        self.lease = lease
        self.max_attempts = 5

    # ---- ingress ------------------------------------------------------------------------------------

    def receive(
        self, connector_id: str, headers: Mapping[str, str], body: bytes, remote: str | None = None
    ) -> Received:
        """Authenticate and store one webhook; says what to answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            connector = self.registry.get(connector_id)
        except (NotFound, ConnectorError) as error:
            return self._reject(connector_id, 404, f"no connector {connector_id!r}: {error}", body, remote)
        try:
            connector.verify_webhook(lowered, body)
            changes = connector.parse_webhook(lowered, body)
        except WebhookRejected as error:
            return self._reject(connector_id, error.status, error.reason, body, remote)
        oldest = utcnow() - self.max_age
        stale = [c for c in changes if as_utc(c.vendor_timestamp) < oldest]
        if stale:
            return self._reject(
                connector_id,
                400,
                f"stale: event from {stale[0].vendor_timestamp}, older than {self.max_age}",
                body,
                remote,
            )
        body = connector.stored_body(body)
        event_id = connector.webhook_event_id(lowered, body)
        dedup_key = event_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
        insert = pg_insert if not self.db.is_sqlite else sqlite_insert
        with self.db.write() as session:
            inbox_id = session.scalar(
                insert(InboxRow)
                .values(
                    connector_id=connector_id,
                    dedup_key=dedup_key[:200],
                    received_at=utcnow(),
                    headers={k: v for k, v in lowered.items() if k in _KEPT_HEADERS},
                    body=body.decode("utf-8", errors="replace"),
                    state="pending",
                    attempts=0,
                )
                .on_conflict_do_nothing(index_elements=["connector_id", "dedup_key"])
                .returning(InboxRow.id)
            )
        if inbox_id is None:
            return Received(202, "duplicate delivery: already received", duplicate=True)
        return Received(202, "accepted", inbox_id=inbox_id)

    def _reject(
        self, connector_id: str, status: int, reason: str, body: bytes, remote: str | None
    ) -> Received:
        log.warning("webhook rejected", extra={"connector": connector_id, "status": status, "reason": reason})
        with self.db.write() as session:
            session.add(
                WebhookRejectionRow(
                    connector_id=connector_id[:200],
                    received_at=utcnow(),
                    status=status,
                    reason=reason[:2000],
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_excerpt=body[:2048].decode("utf-8", errors="replace"),
                    remote_addr=remote,
                )
            )
        return Received(status, reason)

    # ---- processing ---------------------------------------------------------------------------------

    def process_pending(self, limit: int = 20) -> int:
        """Parse and apply pending inbox rows, oldest first; returns how many were processed."""
        now = utcnow()
        with self.db.write() as session:
            ids = list(
                session.scalars(
                    select(InboxRow.id)
                    .where(
                        InboxRow.state == "pending",
                        (InboxRow.lease_until.is_(None)) | (InboxRow.lease_until < now),
                    )
                    .order_by(InboxRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(
                    update(InboxRow).where(InboxRow.id.in_(ids)).values(lease_until=now + self.lease)
                )
        for inbox_id in ids:
            self._process_one(inbox_id)
        return len(ids)

    def _process_one(self, inbox_id: int) -> None:
        with self.db.write() as session:
            row = session.get(InboxRow, inbox_id)
            if row is None or row.state != "pending":
                return
            connector_id, headers, body = row.connector_id, dict(row.headers), row.body.encode()
        with log_context(inbox_id=inbox_id, connector=connector_id):
            try:
                connector = self.registry.get(connector_id)
                changes = connector.parse_webhook(headers, body)
                mapping = (
                    self.mappings.current(connector_id).document
                    if self.mappings is not None
                    else connector.mapping()
                )
                if not mapping.notes.inbound:
                    changes = [c for c in changes if c.kind is not ChangeKind.NOTE]
                with self.db.write() as session:
                    row = session.get(InboxRow, inbox_id, with_for_update=True)
                    if row is None or row.state != "pending":
                        return  # another replica applied it after our lease ran out
                    outcomes = [self.applier.apply(session, change, mapping) for change in changes]
                    row.state, row.processed_at, row.lease_until = "applied", utcnow(), None
                    row.error = "; ".join(
                        f"{o.result}" + (f": {o.detail}" if o.detail else "") for o in outcomes
                    )
                self.applier.incidents.wake()
                log.info("webhook applied", extra={"outcomes": [o.result for o in outcomes]})
            except Exception as error:
                if isinstance(error, LinkRace):
                    log.info("webhook raced another for a new link", extra={"error": str(error)})
                else:
                    log.exception("applying a webhook failed")
                with self.db.write() as session:
                    row = session.get(InboxRow, inbox_id)
                    if row is not None and row.state == "pending":
                        row.attempts += 1
                        row.error = f"{type(error).__name__}: {error}"[:2000]
                        # Back off 0.5, 1, 2, 4 s (a race is retried at once); then it waits for an admin.
                        pause = 0.0 if isinstance(error, LinkRace) else 0.5 * 2 ** (row.attempts - 1)
                        row.lease_until = utcnow() + timedelta(seconds=pause)
                        if row.attempts >= self.max_attempts:
                            row.state = "failed"

    async def run(self, stop: asyncio.Event, wakeup: asyncio.Event, poll_seconds: float) -> None:
        while not stop.is_set():
            wakeup.clear()
            try:
                processed = await asyncio.to_thread(self.process_pending)
            except Exception:
                log.exception("inbox processing failed")
                processed = 0
            if processed:
                continue
            waiters = [asyncio.create_task(wakeup.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
