"""Pushing canonical changes to a vendor: the dispatcher's `connector` target.

A delivery names an event and a connector. The push reads the incident as it is now and writes only the
vendor fields that differ from what the ref says we last wrote — so a burst of changes collapses into
one call, a no-op sends nothing, and a replay after a crash repeats nothing. A first push looks for an
object already made for the incident (a create whose answer was lost) before creating one, and a note
sent again looks for itself among the vendor's notes before it is added.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import Connector, ConnectorError, OutboundNote, PushResult
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.errors import NotFound
from incident_hub.incidents import IncidentService
from incident_hub.mapping.document import MappingDocument
from incident_hub.mapping.store import MappingStore, MappingVersion
from incident_hub.mapping.translate import settled, to_vendor
from incident_hub.model import ExternalRef, Incident, TimelineType
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryAttemptRow, DeliveryRow, ExternalRefRow, TimelineRow
from incident_hub.sync.dispatcher import ClaimedDelivery
from incident_hub.sync.in_doubt import (
    CREATED,
    FOUND,
    LINKED,
    Doubts,
    oldest_first,
    record_cancel,
    record_duplicates,
)
from incident_hub.sync.refs import insert_ref, ref_for
from incident_hub.sync.retry import (
    DeliveryError,
    HeldDelivery,
    InDoubt,
    OutcomeUnknown,
    PermanentDeliveryError,
    RateLimited,
)
from incident_hub.sync.throttle import Throttle

log = logging.getLogger(__name__)


class ConnectorTarget:
    # Vendor client libraries run in threads: each call is bounded by the connector's `timeout_seconds`.
    bounds_own_time = True

    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        incidents: IncidentService,
        mappings: MappingStore | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.incidents = incidents
        # The stored mapping versions (None: each connector's own mapping, as in unit tests).
        self.mappings = mappings
        self.doubts = Doubts(db)
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._throttles: dict[str, Throttle] = {}

    async def deliver(self, delivery: ClaimedDelivery) -> int | None:
        try:
            connector = await asyncio.to_thread(self._connector, delivery.target_id)
        except (NotFound, ConnectorError) as error:
            raise PermanentDeliveryError(f"connector {delivery.target_id}: {error}") from error
        state = await asyncio.to_thread(self.registry.state, connector.id)
        if state.paused(utcnow()):
            raise HeldDelivery(f"connector {connector.id} is paused: {state.pause_reason}")
        active = await asyncio.to_thread(self._active_mapping, connector)
        mapping = active.document if active is not None else connector.mapping()
        gate = self._gates.setdefault(connector.id, asyncio.Semaphore(connector.config.max_concurrency))
        async with gate:
            try:
                result = await self._push(_Calls(connector, self._throttle(connector)), delivery, mapping)
            except DeliveryError as error:
                # Only a vendor that is broken (5xx, timeouts, no connection) counts toward the breaker: a
                # wait in doubt is the hub's own, and a 429 is the vendor working as it should.
                if not isinstance(error, PermanentDeliveryError | InDoubt | RateLimited):
                    paused = await asyncio.to_thread(self.registry.record_failure, connector.id, str(error))
                    if paused:
                        raise HeldDelivery(f"connector {connector.id} paused after: {error}") from error
                raise
        await asyncio.to_thread(self.registry.record_success, connector.id)
        if result is not None and active is not None:
            await asyncio.to_thread(self._record_mapping_version, delivery.id, active.version)
        return result

    def _connector(self, connector_id: str) -> Connector:
        try:
            return self.registry.get(connector_id)
        except NotFound:
            # A connector another replica added within this registry's cache time is not known here yet:
            # read the stored connectors afresh once before calling the delivery undeliverable.
            self.registry.invalidate()
            return self.registry.get(connector_id)

    def _active_mapping(self, connector: Connector) -> MappingVersion | None:
        """The current stored mapping version, handed to the connector too (it may read it inside)."""
        if self.mappings is None:
            return None
        active = self.mappings.current(connector.id)
        connector.use_mapping(active.document)
        return active

    def _record_mapping_version(self, delivery_id: int, version: int) -> None:
        with self.db.write() as session:
            session.execute(
                update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(mapping_version=version)
            )

    def _throttle(self, connector: Connector) -> Throttle:
        """The connector's pace: `rate_limit_per_second` vendor calls, bursts up to one second's worth,
        paused after a 429. A delivery that needs no call (nothing changed) takes nothing from it."""
        throttle = self._throttles.get(connector.id)
        if throttle is None:
            throttle = self._throttles[connector.id] = Throttle(
                connector.id, connector.config.rate_limit_per_second
            )
        throttle.set_rate(connector.config.rate_limit_per_second)
        return throttle

    def rate_limited_until(self, connector_id: str) -> datetime | None:
        """When the connector's calls start again after a 429 seen by this process, or None."""
        throttle = self._throttles.get(connector_id)
        return throttle.paused_until() if throttle is not None else None

    async def _push(
        self, connector: _Calls, delivery: ClaimedDelivery, mapping: MappingDocument
    ) -> int | None:
        incident, ref, tried = await asyncio.to_thread(self._load, delivery, connector.id)
        # The mapping's routing rules, where it has them, win over the connector configuration's.
        routing = mapping.routing if mapping.routing is not None else connector.config.routing
        if ref is None and not routing.admits(incident):
            return None
        if ref is not None and await asyncio.to_thread(self.doubts.open_for, delivery.id) is not None:
            # The object landed and its webhook (or the reconciler) linked it while we waited.
            await asyncio.to_thread(self.doubts.end, delivery.id, LINKED)
        if delivery.event_type == "incident_note_added":
            return await self._push_note(connector, delivery, incident, ref, tried, mapping)
        desired = to_vendor(mapping, incident)
        if ref is None:
            await self._create(connector, delivery, incident, desired, tried)
            return 201
        keep = settled(mapping, incident, ref.written)
        changed = {k: v for k, v in desired.items() if ref.written.get(k) != v and k not in keep}
        if not changed:
            return None
        result = await connector.update(_model(ref), changed)
        await asyncio.to_thread(self._store, incident, connector.id, result, {**ref.written, **changed})
        return 200

    async def _create(
        self,
        connector: _Calls,
        delivery: ClaimedDelivery,
        incident: Incident,
        desired: dict[str, Any],
        tried: bool,
    ) -> ExternalRefRow:
        """Link the object an earlier attempt made, else make it. In doubt (an earlier create's outcome
        unknown) this only looks, on the connector's schedule, until the window is over."""
        doubt = await asyncio.to_thread(self.doubts.open_for, delivery.id)
        found: PushResult | None = None
        # Look first only when an earlier push for this incident may have made the object unseen.
        if tried or doubt is not None:
            try:
                found = await self._find_oldest(connector, incident)
            except DeliveryError as error:
                if doubt is not None:
                    await asyncio.to_thread(self.doubts.record_look, delivery.id, f"failed: {error}"[:300])
                raise
            if doubt is not None:
                outcome = FOUND if found is not None else "nothing"
                external_id = found.external_id if found is not None else None
                await asyncio.to_thread(self.doubts.record_look, delivery.id, outcome, external_id)
                if found is None:
                    schedule = connector.config.in_doubt_schedule_seconds
                    look_at = doubt.next_look(schedule, utcnow())
                    if look_at is not None:
                        raise InDoubt(
                            f"create outcome unknown since {doubt.since.isoformat()}: nothing found yet; "
                            f"looking again at {look_at.isoformat()}",
                            look_at=look_at,
                        )
        if found is not None:
            # Made by an attempt whose answer was lost: bring it to the wanted state.
            result = await connector.update(
                ExternalRef(connector_id=connector.id, external_id=found.external_id), desired
            )
        else:
            try:
                result = await connector.create(incident, desired)
            except OutcomeUnknown as error:
                schedule = connector.config.in_doubt_schedule_seconds
                look_at = await asyncio.to_thread(self.doubts.begin, delivery.id, schedule, str(error))
                raise InDoubt(
                    f"{error}; in doubt: looking for the object until the window of "
                    f"{sum(schedule):g} s is over before creating again",
                    look_at=look_at,
                ) from error
        ref = await asyncio.to_thread(self._store, incident, connector.id, result, desired)
        if doubt is not None:
            await asyncio.to_thread(self.doubts.end, delivery.id, FOUND if found is not None else CREATED)
        return ref

    async def _find_oldest(self, connector: _Calls, incident: Incident) -> PushResult | None:
        """The oldest vendor object carrying the incident's id; any others are recorded as duplicates
        (and cancelled, when the connector is configured to)."""
        candidates = oldest_first(await connector.find_all(incident))
        if not candidates:
            return None
        kept, others = candidates[0], candidates[1:]
        if others:
            new = await asyncio.to_thread(
                record_duplicates, self.db, connector.id, str(incident.id), kept, others
            )
            if connector.config.cancel_duplicates and new:
                await self._cancel(connector, kept, new)
        return kept

    async def _cancel(
        self, connector: _Calls, kept: PushResult, duplicates: list[tuple[int, PushResult]]
    ) -> None:
        """Close each new duplicate with a note naming the kept object; a failure is recorded on the
        duplicate's row (visible in the API), never retried by the delivery."""
        kept_ref = ExternalRef(
            connector_id=connector.id,
            external_id=kept.external_id,
            external_key=kept.external_key,
            url=kept.url,
        )
        for row_id, duplicate in duplicates:
            try:
                await connector.cancel_duplicate(
                    ExternalRef(
                        connector_id=connector.id,
                        external_id=duplicate.external_id,
                        external_key=duplicate.external_key,
                        url=duplicate.url,
                    ),
                    kept_ref,
                )
            except DeliveryError as error:
                log.warning(
                    "cancelling a duplicate failed",
                    extra={
                        "connector": connector.id,
                        "external_id": duplicate.external_id,
                        "error": str(error),
                    },
                )
                await asyncio.to_thread(record_cancel, self.db, row_id, str(error)[:2000])
                continue
            await asyncio.to_thread(record_cancel, self.db, row_id, None)

    async def _push_note(
        self,
        connector: _Calls,
        delivery: ClaimedDelivery,
        incident: Incident,
        ref: ExternalRefRow | None,
        tried: bool,
        mapping: MappingDocument,
    ) -> int | None:
        body = delivery.payload["incident_note_added"]["note"]
        if body.get("origin_connector") == connector.id or not mapping.notes.outbound:
            return None
        if ref is None:
            ref = await self._create(connector, delivery, incident, to_vendor(mapping, incident), tried)
        origin = body.get("origin_connector") or "incident-hub"
        author = body.get("author") or "someone"
        note = OutboundNote(
            body=_note_text(mapping, origin, author, body["message"]),
            author=body.get("author"),
            is_public=bool(body.get("is_public", True)),
            origin=origin,
        )
        # Adding a note is not idempotent: an earlier attempt may have added it unrecorded (killed after
        # the call, or the database unwritable then). Only a retry pays this look at the vendor.
        retried = delivery.reclaimed or await asyncio.to_thread(self._attempted, delivery.id)
        if retried and await self._note_landed(connector, ref, note, incident, body, mapping):
            return 200
        await connector.add_note(_model(ref), note)
        return 201

    async def _note_landed(
        self,
        connector: _Calls,
        ref: ExternalRefRow,
        note: OutboundNote,
        incident: Incident,
        body: dict[str, Any],
        mapping: MappingDocument,
    ) -> bool:
        """Whether the vendor holds this note already: more copies of its text than the hub's earlier
        notes of the same text (pushed before it, in order) account for. False when the vendor cannot
        say."""
        held = await connector.count_notes(_model(ref), note)
        if held is None:
            return False
        earlier = await asyncio.to_thread(
            self._earlier_copies, str(incident.id), int(body["id"]), connector.id, note.body, mapping
        )
        if held > earlier:
            log.info(
                "note found at the vendor: not added again",
                extra={"incident_id": str(incident.id), "connector": connector.id, "note_id": body["id"]},
            )
            return True
        return False

    def _attempted(self, delivery_id: int) -> bool:
        """Whether the delivery was attempted before (an attempt is logged, or counted)."""
        with self.db.read() as session:
            return bool(
                session.scalar(
                    select(
                        exists().where(DeliveryAttemptRow.delivery_id == delivery_id)
                        | exists().where(DeliveryRow.id == delivery_id, DeliveryRow.attempts > 0)
                    )
                )
            )

    def _earlier_copies(
        self, incident_id: str, note_id: int, connector_id: str, text: str, mapping: MappingDocument
    ) -> int:
        """How many of the incident's notes before `note_id` read as `text` at this connector."""
        with self.db.read() as session:
            rows = session.execute(
                select(TimelineRow.message, TimelineRow.author, TimelineRow.origin_connector).where(
                    TimelineRow.incident_id == incident_id,
                    TimelineRow.type == TimelineType.NOTE,
                    TimelineRow.id < note_id,
                )
            ).all()
        return sum(
            1
            for message, author, origin in rows
            if origin != connector_id
            and _note_text(mapping, origin or "incident-hub", author or "someone", message) == text
        )

    def _load(
        self, delivery: ClaimedDelivery, connector_id: str
    ) -> tuple[Incident, ExternalRefRow | None, bool]:
        """The incident, its ref at this connector, and whether a push for it may have reached the vendor
        before without the hub recording it (this delivery, or an earlier one, was attempted or claimed
        and not finished): only then does a create look for an object made already."""
        incident_id = delivery.ordering_key
        with self.db.read() as session:
            incident = self.incidents.get_in(session, incident_id)
            ref = session.scalar(
                select(ExternalRefRow).where(
                    ExternalRefRow.incident_id == incident_id, ExternalRefRow.connector_id == connector_id
                )
            )
            tried = delivery.reclaimed
            if ref is None and not tried:
                # Any attempt so far, this delivery's included (its retries reuse the claim), or another
                # worker's claim on an earlier delivery of the incident.
                tried = bool(
                    session.scalar(
                        select(
                            exists().where(
                                DeliveryRow.target_kind == "connector",
                                DeliveryRow.target_id == connector_id,
                                DeliveryRow.ordering_key == incident_id,
                                (DeliveryRow.attempts > 0)
                                | ((DeliveryRow.id != delivery.id) & DeliveryRow.leased_by.is_not(None)),
                            )
                        )
                    )
                )
            if ref is not None:
                session.expunge(ref)
            return incident, ref, tried

    def _store(
        self, incident: Incident, connector_id: str, result: PushResult, written: dict[str, Any]
    ) -> ExternalRefRow:
        vendor_time = as_utc(result.vendor_timestamp) if result.vendor_timestamp is not None else None
        with self.db.write() as session:
            ref = ref_for(session, str(incident.id), connector_id)
            if ref is None:
                # The vendor's webhook for this object may link it at the same moment (see sync/refs.py).
                insert_ref(
                    session,
                    incident_id=str(incident.id),
                    connector_id=connector_id,
                    external_id=result.external_id,
                    external_key=result.external_key,
                    url=result.url,
                    written={**written, **result.fields},
                    last_vendor_timestamp=vendor_time,
                    last_synced_version=incident.version,
                )
                ref = ref_for(session, str(incident.id), connector_id)
                if ref is None:
                    raise PermanentDeliveryError(
                        f"{connector_id} object {result.external_id} is linked to another incident"
                    )
            ref.external_id = result.external_id
            ref.external_key = result.external_key or ref.external_key
            ref.url = result.url or ref.url
            ref.written = {**written, **result.fields}
            ref.last_synced_version = incident.version
            if vendor_time is not None and (
                ref.last_vendor_timestamp is None or vendor_time > ref.last_vendor_timestamp
            ):
                ref.last_vendor_timestamp = vendor_time
            session.flush()
            session.expunge(ref)
        log.info(
            "pushed",
            extra={
                "incident_id": str(incident.id),
                "connector": connector_id,
                "external_id": result.external_id,
                "at": utcnow().isoformat(),
            },
        )
        return ref


class _Calls:
    """A connector seen through its throttle: each vendor call waits for its token, none goes while the
    vendor has asked the hub to wait."""

    def __init__(self, connector: Connector, throttle: Throttle) -> None:
        self.connector = connector
        self.throttle = throttle
        self.id = connector.id
        self.config = connector.config

    def mapping(self) -> MappingDocument:
        return self.connector.mapping()

    async def find_all(self, incident: Incident) -> list[PushResult]:
        return await self.throttle.call(lambda: self.connector.find_all(incident))

    async def cancel_duplicate(self, duplicate: ExternalRef, kept: ExternalRef) -> None:
        await self.throttle.call(lambda: self.connector.cancel_duplicate(duplicate, kept))

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        return await self.throttle.call(lambda: self.connector.create(incident, fields))

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        return await self.throttle.call(lambda: self.connector.update(ref, fields))

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        return await self.throttle.call(lambda: self.connector.add_note(ref, note))

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        return await self.throttle.call(lambda: self.connector.count_notes(ref, note))


def _note_text(mapping: MappingDocument, origin: str, author: str, message: str) -> str:
    return mapping.notes.format.format(origin=origin, author=author, message=message)


def _model(row: ExternalRefRow) -> ExternalRef:
    return ExternalRef(
        connector_id=row.connector_id,
        external_id=row.external_id,
        external_key=row.external_key,
        url=row.url,
        last_synced_version=row.last_synced_version,
        last_vendor_timestamp=row.last_vendor_timestamp,
        fingerprint=row.fingerprint,
    )
