"""The outbox dispatcher: claims due deliveries, sends them through the retry policy, records every attempt.

Delivery is at least once. A claim is a lease: if the process dies mid-send, the lease runs out and the
delivery is claimed again (by this process after a restart, or by another replica). Deliveries that share
a target and an ordering key (the incident) go out one at a time, in the order they were written.

A target that answers 429 (`RateLimited`) is held back for the wait it asked for: the delivery goes again
then, spending none of its attempts, and no other delivery to that target is claimed meanwhile, so the
slots go to the targets that can take them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, exists, func, select, tuple_, update
from sqlalchemy.orm import aliased
from tenacity import RetryCallState

from incident_hub.clock import utcnow
from incident_hub.logs import log_context
from incident_hub.metrics import DELIVERY_ATTEMPTS, DELIVERY_OUTCOMES
from incident_hub.store.db import Database
from incident_hub.store.tables import ConnectorRow, DeliveryAttemptRow, DeliveryRow, EventRow, UtcDateTime
from incident_hub.sync.retry import (
    DeliveryError,
    HeldDelivery,
    InDoubt,
    PermanentDeliveryError,
    RateLimited,
    RetryableDeliveryError,
    RetryPolicy,
)

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD, CANCELLED = "pending", "delivered", "dead", "cancelled"


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    event_id: str
    event_type: str
    payload: dict[str, Any]
    target_kind: str
    target_id: str
    ordering_key: str
    attempts: int
    # Claimed before by a worker that never finished it (crashed, or its lease ran out): a vendor object
    # may have been made without the hub knowing.
    reclaimed: bool = False


class DeliveryTarget(Protocol):
    """Sends one delivery; raises `RetryableDeliveryError` or `PermanentDeliveryError` on failure and
    returns the HTTP status of the success (or None)."""

    async def deliver(self, delivery: ClaimedDelivery) -> int | None: ...


def bounds_own_time(target: DeliveryTarget) -> bool:
    """Targets whose work runs in threads (vendor client libraries) cannot be cancelled: cutting the wait
    short would leave the call running while a retry starts a second one. They bound each call with their
    own client timeouts instead, and set `bounds_own_time = True`."""
    return bool(getattr(target, "bounds_own_time", False))


class Dispatcher:
    def __init__(
        self,
        db: Database,
        targets: Mapping[str, DeliveryTarget],
        policy: RetryPolicy,
        *,
        batch: int = 50,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        attempt_timeout: float = 10.0,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.targets = dict(targets)
        self.policy = policy
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.attempt_timeout = attempt_timeout
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # (target kind, target id) -> when a target that answered 429 may be called again (UTC).
        self._held_back: dict[tuple[str, str], datetime] = {}
        self._statements()

    # ---- running ------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the loop to look for work now (safe from any thread)."""
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until `stop` is set; in-flight sends are cancelled and their leases released."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        log.info("dispatcher started", extra={"worker_id": self.worker_id})
        try:
            while not stop.is_set():
                self._wakeup.clear()
                free = self._concurrency - len(self._in_flight)
                claimed: list[ClaimedDelivery] = []
                if free > 0:
                    try:
                        claimed = await asyncio.to_thread(self.claim, min(free, self.batch))
                    except Exception:
                        log.exception("claiming deliveries failed")
                for delivery in claimed:
                    task = asyncio.create_task(self._process(delivery))
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
                if len(claimed) == free and free > 0:
                    continue
                waiters = [asyncio.create_task(self._wakeup.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            for task in list(self._in_flight):
                task.cancel()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            log.info("dispatcher stopped", extra={"worker_id": self.worker_id})

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._wakeup is not None:
            self._wakeup.set()

    async def drain(self, max_seconds: float = 30.0) -> None:
        """Send everything due now and wait for it (tests and the CLI's `replay`)."""
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            claimed = await asyncio.to_thread(self.claim, self.batch)
            if not claimed:
                return
            await asyncio.gather(*(self._process(d) for d in claimed))

    # ---- database -----------------------------------------------------------------------------------

    def _statements(self) -> None:
        """Build the claim's statements once (SQLAlchemy caches the compiled form per statement object);
        only the parameters change from one poll to the next."""
        now = bindparam("now", type_=UtcDateTime())
        earlier = aliased(DeliveryRow)
        blocked = exists().where(
            and_(
                earlier.target_kind == DeliveryRow.target_kind,
                earlier.target_id == DeliveryRow.target_id,
                earlier.ordering_key == DeliveryRow.ordering_key,
                earlier.id < DeliveryRow.id,
                # A dead delivery holds back the later ones for its incident and target until it is
                # replayed: they are postponed, never sent out of order.
                earlier.state.in_((PENDING, DEAD)),
            )
        )
        # A paused connector's deliveries wait, in order, until it is resumed.
        paused = exists().where(
            and_(
                DeliveryRow.target_kind == "connector",
                ConnectorRow.id == DeliveryRow.target_id,
                ConnectorRow.paused_until > now,
            )
        )
        claimable = (
            DeliveryRow.state == PENDING,
            DeliveryRow.next_attempt_at <= now,
            (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
            ~blocked,
            ~paused,
        )
        # A target that answered 429 gets nothing more until its pause is over (this process's view).
        held_back = tuple_(DeliveryRow.target_kind, DeliveryRow.target_id).not_in(
            bindparam("held_back", expanding=True)
        )

        def claim(*more: Any) -> Select[int, str | None]:
            return (
                select(DeliveryRow.id, DeliveryRow.leased_by)
                .where(*claimable, *more)
                .order_by(DeliveryRow.id)
                .limit(bindparam("limit"))
                .with_for_update(skip_locked=True, of=DeliveryRow)
            )

        self._claim = claim()
        self._claim_held_back = claim(held_back)
        # Whether anything is there to claim, read without a write transaction (on SQLite, without the
        # write turn every webhook and create waits for): most polls find nothing.
        self._anything_due = select(DeliveryRow.id).where(*claimable).limit(1)
        self._anything_due_held_back = select(DeliveryRow.id).where(*claimable, held_back).limit(1)
        self._lease = (
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(bindparam("ids", expanding=True)))
            .values(lease_until=bindparam("lease_until", type_=UtcDateTime()), leased_by=bindparam("by"))
        )
        self._claimed = (
            select(
                DeliveryRow.id,
                DeliveryRow.event_id,
                EventRow.type,
                EventRow.payload,
                DeliveryRow.target_kind,
                DeliveryRow.target_id,
                DeliveryRow.ordering_key,
                DeliveryRow.attempts,
            )
            .join(EventRow, EventRow.id == DeliveryRow.event_id)
            .where(DeliveryRow.id.in_(bindparam("ids", expanding=True)))
            .order_by(DeliveryRow.id)
        )

    def claim(self, limit: int) -> list[ClaimedDelivery]:
        """Lease up to `limit` due deliveries, at most one per (target, ordering key)."""
        now = utcnow()
        held_back = [target for target, until in dict(self._held_back).items() if until > now]
        parameters: dict[str, Any] = {"now": now, "limit": limit}
        if held_back:
            parameters["held_back"] = held_back
        with self.db.read() as session:
            due = self._anything_due_held_back if held_back else self._anything_due
            if session.execute(due, parameters).first() is None:
                return []
        with self.db.write() as session:
            query = self._claim_held_back if held_back else self._claim
            found = session.execute(query, parameters).all()
            if not found:
                return []
            ids = [delivery_id for delivery_id, _ in found]
            reclaimed = {delivery_id for delivery_id, leased_by in found if leased_by is not None}
            lease_until = now + timedelta(seconds=self.attempt_timeout + self.lease_seconds)
            session.execute(self._lease, {"ids": ids, "lease_until": lease_until, "by": self.worker_id})
            return [
                ClaimedDelivery(
                    id=row.id,
                    event_id=row.event_id,
                    event_type=row.type,
                    payload=row.payload,
                    target_kind=row.target_kind,
                    target_id=row.target_id,
                    ordering_key=row.ordering_key,
                    attempts=row.attempts,
                    reclaimed=row.id in reclaimed,
                )
                for row in session.execute(self._claimed, {"ids": ids})
            ]

    def _extend_lease(self, delivery_id: int, seconds: float) -> None:
        """Keep the claim for `seconds` more (a pause and the next attempt), plus the grace period."""
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.leased_by == self.worker_id)
                .values(lease_until=utcnow() + timedelta(seconds=seconds + self.lease_seconds))
            )

    def _record_attempt(
        self,
        delivery_id: int,
        started: float,
        status_code: int | None,
        error: str | None,
        final_state: str | None,
        counts: bool = True,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Log one attempt; `counts=False` (a held delivery) spends none of the budget and frees the claim;
        `next_attempt_at` makes the delivery due again only then."""
        now = utcnow()
        with self.db.write() as session:
            made = (
                session.scalar(select(func.count()).where(DeliveryAttemptRow.delivery_id == delivery_id)) or 0
            )
            session.add(
                DeliveryAttemptRow(
                    delivery_id=delivery_id,
                    attempt=made + 1,
                    started_at=now - timedelta(seconds=time.monotonic() - started),
                    duration_ms=round((time.monotonic() - started) * 1000, 2),
                    status_code=status_code,
                    error=error,
                )
            )
            values: dict[str, Any] = {
                "attempts": DeliveryRow.attempts + (1 if counts else 0),
                "last_status_code": status_code,
                "last_error": error,
            }
            if not counts:
                values |= {"lease_until": None, "leased_by": None}
            if next_attempt_at is not None:
                values["next_attempt_at"] = next_attempt_at
            if final_state is not None:
                values |= {"state": final_state, "lease_until": None, "leased_by": None}
                if final_state == DELIVERED:
                    values["delivered_at"] = now
            session.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(**values))

    def _postpone(self, delivery_id: int, until: datetime) -> None:
        """Free the claim and make the delivery due again only at `until`; no attempt is logged (nothing
        was sent)."""
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.leased_by == self.worker_id)
                .values(next_attempt_at=until, lease_until=None, leased_by=None)
            )

    def _release(self, delivery_id: int) -> None:
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.leased_by == self.worker_id)
                .values(lease_until=None, leased_by=None)
            )

    # ---- sending ------------------------------------------------------------------------------------

    async def _process(self, delivery: ClaimedDelivery) -> None:
        # Deliveries to a connector name it as `connector`, like the inbox and the reconciler do.
        connector = {"connector": delivery.target_id} if delivery.target_kind == "connector" else {}
        with log_context(
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            incident_id=delivery.ordering_key,
            target=f"{delivery.target_kind}:{delivery.target_id}",
            **connector,
        ):
            async with self._slots:
                try:
                    await self._send_with_retries(delivery)
                except asyncio.CancelledError:
                    await asyncio.shield(asyncio.to_thread(self._release, delivery.id))
                    raise
                except Exception:
                    log.exception("delivery crashed; it will be claimed again when its lease ends")

    async def _send_with_retries(self, delivery: ClaimedDelivery) -> None:
        target = self.targets.get(delivery.target_kind)
        if target is None:
            await asyncio.to_thread(
                self._record_attempt,
                delivery.id,
                time.monotonic(),
                None,
                f"no target of kind {delivery.target_kind!r}",
                DEAD,
            )
            DELIVERY_OUTCOMES.labels(delivery.target_kind, DEAD).inc()
            return

        async def before_sleep(state: RetryCallState) -> None:
            pause = state.next_action.sleep if state.next_action else 0.0
            await asyncio.to_thread(self._extend_lease, delivery.id, pause + self.attempt_timeout)

        attempt_number = delivery.attempts
        try:
            async for attempt in self.policy.retrying(
                attempts_made=delivery.attempts, before_sleep=before_sleep
            ):
                with attempt:
                    attempt_number += 1
                    started = time.monotonic()
                    try:
                        if bounds_own_time(target):
                            status = await self._with_heartbeat(delivery, target.deliver(delivery))
                        else:
                            status = await asyncio.wait_for(target.deliver(delivery), self.attempt_timeout)
                    except TimeoutError:
                        error = RetryableDeliveryError(f"no answer within {self.attempt_timeout}s")
                        await self._failed(delivery, started, error, attempt_number)
                        raise error from None
                    except HeldDelivery as error:
                        await self._held(delivery, started, error)
                        return
                    except InDoubt as error:
                        await self._in_doubt(delivery, started, error)
                        return
                    except RateLimited as error:
                        await self._rate_limited(delivery, started, error)
                        return
                    except DeliveryError as error:
                        await self._failed(delivery, started, error, attempt_number)
                        raise
                    await asyncio.to_thread(
                        self._record_attempt, delivery.id, started, status, None, DELIVERED
                    )
                    DELIVERY_ATTEMPTS.labels(delivery.target_kind, "success").inc()
                    DELIVERY_OUTCOMES.labels(delivery.target_kind, DELIVERED).inc()
                    log.info("delivered", extra={"attempt": attempt_number, "status_code": status})
        except DeliveryError as error:
            log.warning("delivery dead", extra={"attempt": attempt_number, "error": str(error)[:300]})

    async def _with_heartbeat(self, delivery: ClaimedDelivery, work: Awaitable[int | None]) -> int | None:
        """Await `work`, extending the claim while it runs, however long its own timeouts let it take."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(max(self.attempt_timeout / 2, 0.5))
                await asyncio.to_thread(self._extend_lease, delivery.id, self.attempt_timeout)

        heartbeat = asyncio.create_task(beat())
        try:
            return await work
        finally:
            heartbeat.cancel()

    async def _held(self, delivery: ClaimedDelivery, started: float, error: DeliveryError) -> None:
        await asyncio.to_thread(
            self._record_attempt, delivery.id, started, error.status_code, str(error)[:2000], None, False
        )
        log.info("delivery held: target paused", extra={"error": str(error)[:300]})

    async def _in_doubt(self, delivery: ClaimedDelivery, started: float, error: InDoubt) -> None:
        """Free the claim until the next look: the attempt is logged, none of the budget is spent, and the
        deliveries behind it (same incident and target) keep waiting."""
        await asyncio.to_thread(
            self._record_attempt,
            delivery.id,
            started,
            error.status_code,
            str(error)[:2000],
            None,
            False,
            error.look_at,
        )
        DELIVERY_ATTEMPTS.labels(delivery.target_kind, "in_doubt").inc()
        log.info("delivery in doubt", extra={"look_at": error.look_at.isoformat(), "error": str(error)[:300]})

    async def _rate_limited(self, delivery: ClaimedDelivery, started: float, error: RateLimited) -> None:
        """Hold the target back until its pause is over and send this delivery again then, first among
        its incident's (the ones behind it keep waiting): a 429 spends none of the attempt budget."""
        until = error.resume_at
        if until is None:
            until = utcnow() + timedelta(seconds=error.retry_after or 1.0)
        target = (delivery.target_kind, delivery.target_id)
        known = self._held_back.get(target)
        if known is None or known < until:
            self._held_back[target] = until
            if self._loop is not None:
                # Look for work the moment the pause ends rather than at the next poll.
                delay = max(0.0, (until - utcnow()).total_seconds())
                self._loop.call_later(delay, self.wake)
        if error.status_code is None:
            # Held back by the target's pause before anything was sent.
            await asyncio.to_thread(self._postpone, delivery.id, until)
            return
        await asyncio.to_thread(
            self._record_attempt,
            delivery.id,
            started,
            error.status_code,
            str(error)[:2000],
            None,
            False,
            until,
        )
        DELIVERY_ATTEMPTS.labels(delivery.target_kind, "rate_limited").inc()
        log.info(
            "delivery rate limited; sending again after the pause",
            extra={"resume_at": until.isoformat(), "error": str(error)[:300]},
        )

    async def _failed(
        self, delivery: ClaimedDelivery, started: float, error: DeliveryError, attempt: int
    ) -> None:
        out_of_attempts = attempt >= self.policy.max_attempts
        dead = isinstance(error, PermanentDeliveryError) or out_of_attempts
        await asyncio.to_thread(
            self._record_attempt,
            delivery.id,
            started,
            error.status_code,
            str(error)[:2000],
            DEAD if dead else None,
        )
        DELIVERY_ATTEMPTS.labels(
            delivery.target_kind, "permanent" if isinstance(error, PermanentDeliveryError) else "retryable"
        ).inc()
        if dead:
            DELIVERY_OUTCOMES.labels(delivery.target_kind, DEAD).inc()
        else:
            log.info(
                "delivery attempt failed; retrying", extra={"attempt": attempt, "error": str(error)[:300]}
            )
