"""Reconciliation passes: find what webhooks missed and repair it through the apply path.

An incremental pass asks the connector for objects changed since its watermark (minus an overlap, since
vendor clocks may run behind ours); a full sweep compares every linked object of the incidents not CLOSED,
listed a page at a time by `list_open` where the connector has it, and fetched one by one where the listing
cannot show it (the vendor ended or deleted it) or the connector cannot list.
Each object the vendor returns is a SNAPSHOT `ExternalChange` applied by `Applier.apply`, exactly as a
webhook is: an unchanged object compares equal to what the ref says the vendor holds and applies as
nothing, a stale one is dropped by vendor time, and a repair queues deliveries to every other connector.

Vendor calls come out of a budget of their own per connector (`reconcile_rate_fraction` of its
`rate_limit_per_second`), so a sweep never takes the calls that deliveries need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiolimiter import AsyncLimiter
from sqlalchemy import select

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import Connector, ExternalChange
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.errors import InvalidRequest
from incident_hub.logs import log_context
from incident_hub.mapping.document import MappingDocument
from incident_hub.metrics import RECONCILE_DRIFT_REPAIRED, RECONCILE_DURATION, RECONCILE_RUNS
from incident_hub.model import OPEN_STATUSES, ExternalRef, Status
from incident_hub.scheduler.runs import PassKind, ReconciliationRun, Runs, RunState
from incident_hub.store.db import Database
from incident_hub.store.tables import ExternalRefRow, IncidentRow
from incident_hub.sync.apply import Applier, LinkRace, Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")

# Apply results that changed the hub: the vendor object had drifted from it, and now agrees.
REPAIRED = frozenset({"applied", "created", "linked", "reopened"})
# A full sweep whose reads fail this many times in a row stops: the vendor is down, not one object.
MAX_FAILURES_IN_A_ROW = 5


@dataclass(frozen=True)
class _Held:
    """What the hub last knew of a linked object: the vendor values it holds, and their vendor time."""

    written: dict[str, Any]
    seen: datetime | None


def _in_step(change: ExternalChange, held: _Held) -> bool:
    """A listed object that says nothing the hub does not already know: every field as the link holds it
    and no later vendor time. Applying it would change nothing (apply finds no news); a sweep skips the
    transaction, which is most of a sweep's cost when nothing drifted."""
    if change.note is not None or held.seen is None:
        return False
    if as_utc(change.vendor_timestamp) > as_utc(held.seen):
        return False
    return all(held.written.get(name, _ABSENT) == value for name, value in change.fields.items())


_ABSENT = object()


class PassAborted(Exception):
    """A pass cannot go on (e.g. the vendor fails every read)."""


@dataclass
class Tally:
    # Every vendor read of the pass is made after this: a snapshot is not applied to an object the hub
    # wrote to since (apply.py).
    read_at: datetime = field(default_factory=utcnow)
    examined: int = 0
    drift_found: int = 0
    drift_repaired: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        self.examined += 1
        if outcome.result in REPAIRED:
            self.drift_found += 1
            self.drift_repaired += 1
        elif outcome.result == "unlinked":
            # The vendor holds an object the hub could neither link nor create an incident for.
            self.drift_found += 1

    def failed(self, what: str, error: BaseException) -> None:
        self.examined += 1
        self.drift_found += 1
        self.errors.append(f"{what}: {type(error).__name__}: {error}"[:1000])


def apply_change(
    db: Database,
    applier: Applier,
    change: ExternalChange,
    mapping: MappingDocument,
    read_at: datetime | None = None,
) -> Outcome:
    """Apply one vendor snapshot, read from the vendor at or after `read_at`, in its own transaction, as
    the inbox applies a webhook."""
    for attempt in range(2):
        try:
            with db.write() as session:
                outcome = applier.apply(session, change, mapping, read_at)
            break
        except LinkRace:
            # A webhook about the same new object linked it meanwhile: applied again, it finds the link.
            if attempt:
                raise
    if outcome.result in REPAIRED:
        applier.incidents.wake()
    return outcome


async def paced(items: AsyncIterator[T], limit: AsyncLimiter) -> AsyncGenerator[T, None]:
    """`items` within the budget `limit`, one token per vendor request.

    `list_changed` reads pages: only the request for a page waits on the vendor, the objects of a page
    come without a pause. A token is taken before the first step and after every step that waited (so
    before the next page can be asked for): page requests keep within the budget, and the connector
    need not know about it.
    """
    await limit.acquire()
    try:
        while True:
            step = asyncio.ensure_future(items.__anext__())
            await asyncio.sleep(0)  # the step runs until it waits on I/O or has its item
            waited = not step.done()
            try:
                item = await step
            except StopAsyncIteration:
                return
            if waited:
                await limit.acquire()
            yield item
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


class Reconciler:
    """Runs one pass of either kind over one connector and records it in `reconciliation_runs`."""

    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        applier: Applier,
        *,
        overlap: timedelta = timedelta(minutes=2),
        first_lookback: timedelta = timedelta(hours=1),
        rate_fraction: float = 0.2,
        page_size: int = 100,
    ) -> None:
        self.db = db
        self.registry = registry
        self.applier = applier
        self.runs = Runs(db)
        self.overlap = overlap
        self.first_lookback = first_lookback
        self.rate_fraction = rate_fraction
        self.page_size = page_size
        self._budgets: dict[tuple[str, asyncio.AbstractEventLoop], tuple[float, AsyncLimiter]] = {}
        self._passes: dict[tuple[str, PassKind], asyncio.Lock] = {}

    def budget(self, connector: Connector) -> AsyncLimiter:
        """The reconciler's share of the connector's rate limit (the push path keeps its own bucket)."""
        rate = connector.config.rate_limit_per_second * self.rate_fraction
        # A limiter belongs to one event loop (the API's, or a backfill's own `asyncio.run`).
        key = (connector.id, asyncio.get_running_loop())
        found = self._budgets.get(key)
        if found is None or found[0] != rate:
            found = (rate, AsyncLimiter(max(rate, 1.0), time_period=max(rate, 1.0) / rate))
            self._budgets = {k: v for k, v in self._budgets.items() if not k[1].is_closed()}
            self._budgets[key] = found
        return found[1]

    async def run(
        self,
        connector_id: str,
        kind: PassKind,
        *,
        trigger: str = "api",
        stop: asyncio.Event | None = None,
    ) -> ReconciliationRun:
        """Run one pass now (after any pass of the same kind on this connector in this process) and
        return its record. `stop` set ends it between two objects, as `interrupted`."""
        state = await asyncio.to_thread(self.registry.state, connector_id)
        if not state.config.enabled:
            raise InvalidRequest(f"connector {connector_id} is disabled")
        connector = await asyncio.to_thread(self.registry.get, connector_id)
        gate = self._passes.setdefault((connector_id, kind), asyncio.Lock())
        async with gate:
            with log_context(connector=connector_id, reconcile=kind.value):
                return await self._run(connector, kind, trigger, stop)

    async def _run(
        self, connector: Connector, kind: PassKind, trigger: str, stop: asyncio.Event | None
    ) -> ReconciliationRun:
        run = await asyncio.to_thread(self.runs.start, connector.id, kind, trigger)
        started = time.monotonic()
        tally = Tally()
        window_start: datetime | None = None
        interrupted = False
        failed = False
        try:
            if kind is PassKind.INCREMENTAL:
                window_start, interrupted = await self._incremental(connector, tally, stop)
            else:
                interrupted = await self._full(connector, tally, stop)
        except Exception as error:
            # One place for the pass's own failure: logged once here, counted, and kept on the run.
            failed = True
            tally.errors.append(f"pass failed: {type(error).__name__}: {error}"[:2000])
            log.warning("reconciliation pass failed", extra={"error": str(error)[:500]})
        if failed:
            outcome = RunState.FAILED
        elif interrupted:
            outcome = RunState.INTERRUPTED
        else:
            outcome = RunState.PARTIAL if tally.errors else RunState.OK
        finished = await asyncio.to_thread(
            self.runs.finish,
            run.model_copy(
                update={
                    "state": outcome,
                    "ended_at": utcnow(),
                    "window_start": window_start,
                    "examined": tally.examined,
                    "drift_found": tally.drift_found,
                    "drift_repaired": tally.drift_repaired,
                    "errors": "\n".join(tally.errors) or None,
                }
            ),
        )
        RECONCILE_RUNS.labels(connector.id, kind.value, outcome.value).inc()
        RECONCILE_DRIFT_REPAIRED.labels(connector.id, kind.value).inc(tally.drift_repaired)
        RECONCILE_DURATION.labels(connector.id, kind.value).observe(time.monotonic() - started)
        log.info(
            "reconciliation pass",
            extra={
                "run_id": finished.id,
                "state": outcome.value,
                "examined": tally.examined,
                "drift_found": tally.drift_found,
                "drift_repaired": tally.drift_repaired,
            },
        )
        return finished

    # ---- incremental ------------------------------------------------------------------------------

    async def _incremental(
        self, connector: Connector, tally: Tally, stop: asyncio.Event | None
    ) -> tuple[datetime, bool]:
        """Objects changed since the watermark; the watermark moves to this pass's start only when every
        object was read and applied."""
        began = utcnow()
        watermark = await asyncio.to_thread(self.runs.watermark, connector.id)
        since = (watermark or began - self.first_lookback) - self.overlap
        mapping = connector.mapping()
        changes = paced(connector.list_changed(since), self.budget(connector))
        async with contextlib.aclosing(changes):
            async for change in changes:
                if stop is not None and stop.is_set():
                    return since, True
                await self._reconcile(change, mapping, tally)
        if not tally.errors:
            await asyncio.to_thread(self.runs.advance_watermark, connector.id, began)
        return since, False

    # ---- full sweep -------------------------------------------------------------------------------

    async def _full(self, connector: Connector, tally: Tally, stop: asyncio.Event | None) -> bool:
        """Compare every object linked to an incident not CLOSED: the vendor's open objects a page at a
        time (`list_open`), then, one by one, the links of open incidents the listing left out (the vendor
        ended or deleted them, or they are outside the listing's scope). A connector without `list_open`
        has every link fetched one by one."""
        try:
            listing = connector.list_open()
        except NotImplementedError:
            return await self._fetch_each(connector, tally, stop, statuses=None, listed=frozenset())
        linked = await asyncio.to_thread(self._swept_links, connector.id)
        if not linked:
            # Nothing to compare with: no vendor call.
            close = getattr(listing, "aclose", None)
            if close is not None:
                await close()
            return False
        listed: set[str] = set()
        mapping = connector.mapping()
        changes = paced(listing, self.budget(connector))
        try:
            async with contextlib.aclosing(changes):
                async for change in changes:
                    if stop is not None and stop.is_set():
                        return True
                    # Objects no swept incident links to are the incremental pass's (and backfill's).
                    if change.external_id not in linked or change.external_id in listed:
                        continue
                    listed.add(change.external_id)
                    if _in_step(change, linked[change.external_id]):
                        tally.examined += 1  # what apply would find: nothing new, no write
                        continue
                    await self._reconcile(change, mapping, tally)
        except NotImplementedError:
            if listed:
                raise
            return await self._fetch_each(connector, tally, stop, statuses=None, listed=frozenset())
        # An incident RESOLVED in the hub whose object the listing left out is ended in the vendor too.
        return await self._fetch_each(connector, tally, stop, statuses=OPEN_STATUSES, listed=listed)

    async def _fetch_each(
        self,
        connector: Connector,
        tally: Tally,
        stop: asyncio.Event | None,
        *,
        statuses: tuple[Status, ...] | None,
        listed: Set[str],
    ) -> bool:
        """Fetch the objects linked to incidents in `statuses` (None: all but CLOSED) not in `listed`,
        a page of links at a time."""
        mapping = connector.mapping()
        limit = self.budget(connector)
        after = 0
        failures_in_a_row = 0
        while True:
            page = await asyncio.to_thread(self._linked, connector.id, after, statuses)
            if not page:
                return False
            for ref_id, ref in page:
                if stop is not None and stop.is_set():
                    return True
                after = ref_id
                if ref.external_id in listed:
                    continue
                try:
                    async with limit:
                        change = await connector.fetch(ref)
                except Exception as error:
                    tally.failed(ref.external_key or ref.external_id, error)
                    log.warning(
                        "reconciliation could not read a linked object",
                        extra={"external_id": ref.external_id, "error": str(error)[:500]},
                    )
                    failures_in_a_row += 1
                    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise PassAborted(f"{failures_in_a_row} reads failed in a row") from error
                    continue
                failures_in_a_row = 0
                await self._reconcile(change, mapping, tally)

    def _swept_links(self, connector_id: str) -> dict[str, _Held]:
        """The connector's objects linked to an incident not CLOSED, with what the hub last knew of each."""
        with self.db.read() as session:
            rows = session.execute(
                select(
                    ExternalRefRow.external_id, ExternalRefRow.written, ExternalRefRow.last_vendor_timestamp
                )
                .join(IncidentRow, IncidentRow.id == ExternalRefRow.incident_id)
                .where(
                    ExternalRefRow.connector_id == connector_id,
                    IncidentRow.status != Status.CLOSED.value,
                )
            )
            return {external_id: _Held(written or {}, seen) for external_id, written, seen in rows}

    def _linked(
        self, connector_id: str, after: int, statuses: tuple[Status, ...] | None
    ) -> list[tuple[int, ExternalRef]]:
        wanted = (
            IncidentRow.status != Status.CLOSED.value
            if statuses is None
            else IncidentRow.status.in_([s.value for s in statuses])
        )
        with self.db.read() as session:
            rows = session.scalars(
                select(ExternalRefRow)
                .join(IncidentRow, IncidentRow.id == ExternalRefRow.incident_id)
                .where(ExternalRefRow.connector_id == connector_id, ExternalRefRow.id > after, wanted)
                .order_by(ExternalRefRow.id)
                .limit(self.page_size)
            )
            return [
                (
                    row.id,
                    ExternalRef(
                        connector_id=row.connector_id,
                        external_id=row.external_id,
                        external_key=row.external_key,
                        url=row.url,
                        last_synced_version=row.last_synced_version,
                        last_vendor_timestamp=row.last_vendor_timestamp,
                        fingerprint=row.fingerprint,
                    ),
                )
                for row in rows
            ]

    # ---- one object -------------------------------------------------------------------------------

    async def _reconcile(self, change: ExternalChange, mapping: MappingDocument, tally: Tally) -> None:
        try:
            outcome = await asyncio.to_thread(
                apply_change, self.db, self.applier, change, mapping, tally.read_at
            )
        except Exception as error:
            tally.failed(change.external_key or change.external_id, error)
            log.exception(
                "reconciliation could not apply a vendor object", extra={"external_id": change.external_id}
            )
            return
        tally.count(outcome)
        if outcome.result in REPAIRED:
            log.info(
                "drift repaired",
                extra={
                    "external_id": change.external_id,
                    "incident_id": outcome.incident_id,
                    "result": outcome.result,
                },
            )
