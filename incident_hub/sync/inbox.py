"""Ingress and the inbox: authenticate a vendor webhook, keep its raw body (deduplicated), answer 202;
then, off the request path, parse and apply it.

A rejected call (unknown connector, bad signature, malformed or stale body) is answered 404/401/400 and
recorded in `webhook_rejections` with its reason; nothing is applied.

Our own writes come back as webhooks (every push brings one). Those are recognised at receive, when the
webhook is stored, and stored as already applied; what applying them would have done to the link (its
vendor timestamp, key and url) is done in the same transaction. Only news reaches the appliers.

Appliers claim rows by the vendor object they are about (`subject`): only the oldest pending row of an
object can be claimed, with the later ones of that object, so one object's webhooks are applied in arrival
order while different objects' are applied in parallel (PostgreSQL, `FOR UPDATE SKIP LOCKED`). A claimed
batch is applied in one transaction, one savepoint per row: a failing row is undone alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import (
    ChangeKind,
    Connector,
    ConnectorError,
    ExternalChange,
    WebhookRejected,
)
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.errors import NotFound
from incident_hub.logs import log_context
from incident_hub.mapping.document import MappingDocument
from incident_hub.mapping.store import MappingStore
from incident_hub.store.db import Database
from incident_hub.store.tables import ExternalRefRow, InboxRow, UtcDateTime
from incident_hub.sync.apply import Applier, LinkRace, Outcome
from incident_hub.sync.rejections import RejectionLog

log = logging.getLogger(__name__)

# Headers worth keeping with the raw body (for parsing later and for audit); never credentials.
_KEPT_HEADERS = ("content-type", "user-agent", "x-webhook-id", "x-atlassian-webhook-identifier")

# A batch's transaction stops taking rows after this long (the rest are claimed again at once): on SQLite
# it holds the one write lock, and webhooks waiting to be stored must not wait behind a long batch.
_BATCH_SECONDS = {True: 0.05, False: 0.25}

_inbox: Table = InboxRow.__table__  # type: ignore[assignment]
_refs: Table = ExternalRefRow.__table__  # type: ignore[assignment]
_MISSING = object()


@dataclass(frozen=True)
class Received:
    status: int
    detail: str
    inbox_id: int | None = None
    duplicate: bool = False
    # Stored as already applied (our own write coming back): nothing for the appliers to do.
    echo: bool = False


@dataclass
class _Claimed:
    """A claimed row, parsed outside the batch's transaction."""

    id: int
    connector_id: str
    subject: str | None
    attempts: int
    changes: list[ExternalChange]
    mapping: MappingDocument | None
    error: Exception | None = None


class _Superseded(Exception):
    """The row was applied by another applier after this one's lease ran out."""


class Inbox:
    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        applier: Applier,
        max_age: timedelta = timedelta(hours=48),
        lease: timedelta = timedelta(seconds=10),
        mappings: MappingStore | None = None,
        batch: int = 20,
    ) -> None:
        self.db = db
        # The stored mapping versions (None: each connector's own mapping).
        self.mappings = mappings
        self.registry = registry
        self.rejections = RejectionLog(db)
        self.applier = applier
        self.max_age = max_age
        # A claimed batch is leased for this long: what a crashed replica had claimed waits at most this
        # long. Applying is guarded by the state check in the row's own update, so a lease that runs out
        # while a slow replica is still working costs a wasted apply (undone), never a second one.
        self.lease = lease
        self.batch = batch
        self.max_attempts = 5
        self._statements(batch)

    def _statements(self, batch: int) -> None:
        """Build the statements of the hot paths once: SQLAlchemy caches the compiled form per object."""
        insert = pg_insert if not self.db.is_sqlite else sqlite_insert
        self._store = (
            insert(_inbox)
            .on_conflict_do_nothing(index_elements=["connector_id", "dedup_key"])
            .returning(_inbox.c.id)
        )
        self._link_state = select(
            _refs.c.id,
            _refs.c.written,
            exists()
            .where(_inbox.c.state == "pending", _inbox.c.subject == bindparam("subject"))
            .label("queued"),
        ).where(
            _refs.c.connector_id == bindparam("connector_id"), _refs.c.external_id == bindparam("external_id")
        )
        seen = _refs.c.last_vendor_timestamp
        stamp = bindparam("stamp", type_=UtcDateTime())
        self._advance = (
            update(_refs)
            .where(_refs.c.id == bindparam("ref_id"))
            .values(
                last_vendor_timestamp=case(
                    (and_(stamp.is_not(None), or_(seen.is_(None), seen < stamp)), stamp), else_=seen
                ),
                external_key=func.coalesce(bindparam("key"), _refs.c.external_key),
                url=func.coalesce(bindparam("link"), _refs.c.url),
            )
        )
        earlier = _inbox.alias("earlier")
        claimable = (
            _inbox.c.state == "pending",
            or_(_inbox.c.lease_until.is_(None), _inbox.c.lease_until < bindparam("now", type_=UtcDateTime())),
        )
        columns = (
            _inbox.c.id,
            _inbox.c.connector_id,
            _inbox.c.subject,
            _inbox.c.attempts,
            _inbox.c.headers,
            _inbox.c.body,
        )
        # The oldest pending row of each object (no pending row of the same object before it)...
        self._claim_heads = (
            select(*columns)
            .where(
                *claimable,
                ~exists().where(
                    earlier.c.state == "pending",
                    earlier.c.subject == _inbox.c.subject,
                    earlier.c.id < _inbox.c.id,
                ),
            )
            .order_by(_inbox.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True, of=_inbox)
        )
        # ...and the rows after it of the objects claimed: no other applier claims those while the oldest
        # is pending.
        self._claim_followers = (
            select(*columns)
            .where(*claimable, _inbox.c.subject.in_(bindparam("subjects", expanding=True)))
            .order_by(_inbox.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        self._lease_rows = (
            update(_inbox)
            .where(_inbox.c.id.in_(bindparam("ids", expanding=True)))
            .values(lease_until=bindparam("until", type_=UtcDateTime()))
        )
        self._mark_applied = (
            update(_inbox)
            .where(_inbox.c.id == bindparam("row_id"), _inbox.c.state == "pending")
            .values(state="applied", processed_at=bindparam("at"), lease_until=None, error=bindparam("said"))
        )

    # ---- ingress ------------------------------------------------------------------------------------

    def receive(
        self, connector_id: str, headers: Mapping[str, str], body: bytes, remote: str | None = None
    ) -> Received:
        """Authenticate and store one webhook; says what to answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            connector = self.registry.get(connector_id)
        except (NotFound, ConnectorError) as error:
            return self._reject(
                None, connector_id, 404, f"no connector {connector_id!r}: {error}", body, remote
            )
        try:
            connector.verify_webhook(lowered, body)
            changes = connector.read_webhook(lowered, body)
        except WebhookRejected as error:
            return self._reject(connector, connector_id, error.status, error.reason, body, remote)
        oldest = utcnow() - self.max_age
        stale = [c for c in changes if as_utc(c.vendor_timestamp) < oldest]
        if stale:
            return self._reject(
                connector,
                connector_id,
                400,
                f"stale: event from {stale[0].vendor_timestamp}, older than {self.max_age}",
                body,
                remote,
            )
        body = connector.kept_body(body)
        event_id = connector.event_key(lowered, body)
        dedup_key = event_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
        subject = _subject(changes)
        now = utcnow()
        row: dict[str, Any] = {
            "connector_id": connector_id,
            "dedup_key": dedup_key[:200],
            "received_at": now,
            "headers": {k: v for k, v in lowered.items() if k in _KEPT_HEADERS},
            "body": body.decode("utf-8", errors="replace"),
            "state": "pending",
            "attempts": 0,
            "lease_until": None,
            "error": None,
            "processed_at": None,
            "subject": subject,
        }
        echo: str | None = None
        with self.db.write_connection() as connection:
            if subject is not None and _maybe_echo(changes):
                echo = self._echo(connection, changes, subject)
                if echo is not None:
                    row.update(state="applied", processed_at=now, error=f"echo: {echo}")
            # A duplicate's echo changed nothing: advancing the link is idempotent.
            inbox_id = connection.execute(self._store, row).scalar()
        if inbox_id is None:
            return Received(202, "duplicate delivery: already received", duplicate=True)
        return Received(202, "accepted", inbox_id=inbox_id, echo=echo is not None)

    def _echo(self, connection: Any, changes: Sequence[ExternalChange], subject: str) -> str | None:
        """If every change is our own write coming back, do to the link what applying them would (advance
        its vendor timestamp, keep its key and url) and say why it is an echo; else None.

        Only when no earlier webhook about the object waits in the inbox: advancing the timestamp first
        would make that earlier change look stale."""
        first = changes[0]
        link = connection.execute(
            self._link_state,
            {"subject": subject, "connector_id": first.connector_id, "external_id": first.external_id},
        ).first()
        if link is None or link.queued:
            return None
        reason = _echo_reason(changes, link.written or {})
        if reason is None:
            return None
        # Notes are not ordered against field changes: they leave the vendor timestamp alone (apply.py).
        stamps = [as_utc(c.vendor_timestamp) for c in changes if c.kind is not ChangeKind.NOTE]
        connection.execute(
            self._advance,
            {
                "ref_id": link.id,
                "stamp": max(stamps) if stamps else None,
                "key": next((c.external_key for c in changes if c.external_key), None),
                "link": next((c.url for c in changes if c.url), None),
            },
        )
        return reason

    def _reject(
        self,
        connector: Connector | None,
        connector_id: str,
        status: int,
        reason: str,
        body: bytes,
        remote: str | None,
    ) -> Received:
        """Answer `status` and record why, with the body stripped of every credential the hub knows (the
        connector's, or every connector's when the id is unknown) before anything is kept."""
        if connector is not None:
            kept = connector.kept_body(body)
        else:
            kept = body
            for known in self.registry.every():
                kept = known.kept_body(kept)
        self.rejections.record(connector_id, connector is not None, status, reason, kept, remote)
        return Received(status, reason)

    # ---- processing ---------------------------------------------------------------------------------

    def process_pending(self) -> int:
        """Claim a batch of pending rows, parse them, apply them in one transaction; returns how many
        were processed."""
        claimed = [self._parse(row) for row in self._claim()]
        if claimed:
            self._apply(claimed)
        return len(claimed)

    def _claim(self) -> list[Any]:
        now = utcnow()
        with self.db.write_connection() as connection:
            rows = list(connection.execute(self._claim_heads, {"now": now}))
            subjects = sorted({r.subject for r in rows if r.subject is not None})
            if subjects and len(rows) < self.batch:
                heads = {r.id for r in rows}
                followers = connection.execute(self._claim_followers, {"now": now, "subjects": subjects})
                rows += [r for r in followers if r.id not in heads][: self.batch - len(rows)]
                rows.sort(key=lambda r: r.id)
            if rows:
                connection.execute(self._lease_rows, {"ids": [r.id for r in rows], "until": now + self.lease})
        return rows

    def _parse(self, row: Any) -> _Claimed:
        claimed = _Claimed(row.id, row.connector_id, row.subject, row.attempts, [], None)
        try:
            connector = self.registry.get(row.connector_id)
            changes = connector.read_webhook(dict(row.headers), row.body.encode())
            mapping = (
                self.mappings.current(row.connector_id).document
                if self.mappings is not None
                else connector.mapping()
            )
            if not mapping.notes.inbound:
                changes = [c for c in changes if c.kind is not ChangeKind.NOTE]
            claimed.changes, claimed.mapping = changes, mapping
        except Exception as error:
            claimed.error = error
        return claimed

    def _apply(self, batch: list[_Claimed]) -> None:
        """Apply `batch` in one transaction, a savepoint per row; when the transaction itself fails, apply
        its rows one by one."""
        applied: list[tuple[_Claimed, list[Outcome]]] = []
        failed: list[tuple[_Claimed, Exception]] = []
        released: list[int] = []
        try:
            with self.db.write() as session:
                started = time.monotonic()
                blocked: set[str] = set()
                for item in batch:
                    if item.subject in blocked or (
                        len(batch) > 1 and time.monotonic() - started > _BATCH_SECONDS[self.db.is_sqlite]
                    ):
                        # After a failed row of the same object (order), or past the batch's time: let it
                        # be claimed again.
                        released.append(item.id)
                        continue
                    outcome = self._apply_one(session, item)
                    if isinstance(outcome, Exception):
                        failed.append((item, outcome))
                        if item.subject is not None:
                            blocked.add(item.subject)
                    elif outcome is not None:
                        applied.append((item, outcome))
                self._record_failures(session, failed)
                if released:
                    session.execute(self._lease_rows, {"ids": released, "until": None})
        except Exception as error:
            if len(batch) == 1:
                log.exception("applying a webhook failed", extra={"inbox_id": batch[0].id})
                with self.db.write() as session:
                    self._record_failures(session, [(batch[0], error)])
                return
            log.warning("a batch of webhooks failed as a whole; applying its rows one by one", exc_info=True)
            for item in batch:
                self._apply([item])
            return
        if applied:
            self.applier.incidents.wake()
        for item, outcomes in applied:
            log.info(
                "webhook applied",
                extra={
                    "inbox_id": item.id,
                    "connector": item.connector_id,
                    "outcomes": [o.result for o in outcomes],
                },
            )

    def _apply_one(self, session: Session, item: _Claimed) -> list[Outcome] | Exception | None:
        """Apply one row inside its own savepoint: its outcomes, the error that undid it, or None when
        another applier had applied it already."""
        with log_context(inbox_id=item.id, connector=item.connector_id):
            if item.error is not None:
                log.error("parsing a stored webhook failed", exc_info=item.error)
                return item.error
            assert item.mapping is not None
            try:
                with session.begin_nested():
                    outcomes = [self.applier.apply(session, c, item.mapping) for c in item.changes]
                    said = "; ".join(f"{o.result}" + (f": {o.detail}" if o.detail else "") for o in outcomes)
                    marked = session.execute(
                        self._mark_applied, {"row_id": item.id, "at": utcnow(), "said": said}
                    )
                    if marked.rowcount == 0:  # type: ignore[attr-defined]
                        raise _Superseded
                return outcomes
            except _Superseded:
                return None
            except LinkRace as error:
                log.info("webhook raced another for a new link", extra={"error": str(error)})
                return error
            except Exception as error:
                log.exception("applying a webhook failed")
                return error

    def _record_failures(self, session: Session, failed: list[tuple[_Claimed, Exception]]) -> None:
        now = utcnow()
        for item, error in failed:
            attempts = item.attempts + 1
            # Back off 0.5, 1, 2, 4 s (a race is retried at once); then it waits for an admin.
            pause = 0.0 if isinstance(error, LinkRace) else 0.5 * 2 ** (attempts - 1)
            session.execute(
                update(_inbox)
                .where(_inbox.c.id == item.id, _inbox.c.state == "pending")
                .values(
                    attempts=attempts,
                    error=f"{type(error).__name__}: {error}"[:2000],
                    lease_until=now + timedelta(seconds=pause),
                    state="failed" if attempts >= self.max_attempts else "pending",
                )
            )

    async def run(self, stop: asyncio.Event, wakeup: asyncio.Event, poll_seconds: float) -> None:
        """One applier: claim and apply batches until `stop`; sleep until `wakeup` or the next poll."""
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


def _subject(changes: Sequence[ExternalChange]) -> str | None:
    """The vendor object a webhook is about (its first change's)."""
    if not changes:
        return None
    return f"{changes[0].connector_id}:{changes[0].external_id}"[:300]


def _maybe_echo(changes: Sequence[ExternalChange]) -> bool:
    """Cheap test before any read: every change is about one object and none is plainly news."""
    first = changes[0]
    return all(
        c.external_id == first.external_id
        and (c.actor_is_self or (c.note is None and c.kind is not ChangeKind.DELETED))
        for c in changes
    )


def _echo_reason(changes: Sequence[ExternalChange], written: Mapping[str, Any]) -> str | None:
    """Why applying `changes` to a linked object would change nothing (apply.py's echo checks 3 and 4),
    or None."""
    if all(c.actor_is_self for c in changes):
        return "made by the connector's own account"
    for change in changes:
        if change.actor_is_self:
            continue
        if change.kind is ChangeKind.NOTE or change.note is not None or change.kind is ChangeKind.DELETED:
            return None
        if any(written.get(k, _MISSING) != v for k, v in change.fields.items()):
            return None
    return "what the hub last wrote"
