"""Apply one vendor change to the canonical incident, in one transaction.

Order of the checks, each naming the failure it prevents:
1. link: find the incident through the external ref; a vendor object that carries our incident id is our
   own create coming back, and is linked, never duplicated;
2. stale: a change older than the last vendor timestamp seen for the object is dropped (webhooks and the
   reconciler can deliver out of order; the later vendor timestamp wins, never a clock of ours); so is a
   snapshot of an object the hub wrote to after it was read (its write may not be in the snapshot, and a
   vendor that answers a write with no timestamp leaves nothing to compare until the write's webhook);
3. echo, by actor: a change made by the connector's own account is the echo of our write (this also
   catches the intermediate workflow hops a vendor makes on its way to the status we asked for);
4. echo, by value: vendor fields equal to what we last wrote are not news;
5. translate with the mapping (lossy maps stay stable) and apply through the incident operations, which
   bump the version, write the timeline and emit events — with deliveries to every connector but this one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from incident_hub import events
from incident_hub.clock import as_utc, utcnow
from incident_hub.commands import IncidentDraft, IncidentPatch, NoteDraft, StatusChange
from incident_hub.connectors.base import ChangeKind, ExternalChange, PushResult
from incident_hub.incidents import IncidentService
from incident_hub.mapping.document import MappingDocument
from incident_hub.mapping.translate import CanonicalPatch, to_canonical, to_vendor
from incident_hub.model import IllegalTransition, Incident, Status, TimelineType
from incident_hub.store.tables import (
    DeliveryRow,
    ExternalRefRow,
    IncidentRow,
    TimelineRow,
    UnmappedValueRow,
)
from incident_hub.sync.in_doubt import record_duplicate
from incident_hub.sync.refs import insert_ref, ref_for

log = logging.getLogger(__name__)


class LinkRace(Exception):
    """Two changes about one new vendor object were applied at once; the loser's transaction is undone
    and applied again, when it finds the link."""


@dataclass(frozen=True)
class Outcome:
    """What applying one change did: `applied`, `created`, `linked`, `echo`, `stale`, `unlinked`, `noop`."""

    result: str
    incident_id: str | None = None
    detail: str | None = None


class Applier:
    def __init__(self, incidents: IncidentService, owners: Callable[[], dict[str, str]] = dict) -> None:
        self.incidents = incidents
        self.owners = owners

    def apply(
        self,
        session: Session,
        change: ExternalChange,
        mapping: MappingDocument,
        read_at: datetime | None = None,
    ) -> Outcome:
        """Apply `change` inside `session` (the caller commits). `read_at`: when the vendor was asked for
        the snapshot `change` (it is dropped if the hub wrote to the object since)."""
        session.info[events.ORIGIN] = change.connector_id
        try:
            return self._apply(session, change, mapping, read_at)
        finally:
            session.info.pop(events.ORIGIN, None)

    def _apply(
        self,
        session: Session,
        change: ExternalChange,
        mapping: MappingDocument,
        read_at: datetime | None = None,
    ) -> Outcome:
        ref = session.scalar(
            select(ExternalRefRow)
            .where(
                ExternalRefRow.connector_id == change.connector_id,
                ExternalRefRow.external_id == change.external_id,
            )
            .with_for_update()
        )
        if ref is None:
            return self._first_sight(session, change, mapping, read_at)
        ref.external_key = change.external_key or ref.external_key
        ref.url = change.url or ref.url
        if change.kind is ChangeKind.NOTE:
            # Comments are not ordered against field changes (vendors send webhooks in no guaranteed
            # order) and are deduplicated by their own id: a late one is still news.
            if change.actor_is_self or change.note is None:
                return Outcome("echo", ref.incident_id, "made by the connector's own account")
            incident = self.incidents.get_in(session, ref.incident_id)
            added = self._apply_note(session, incident.id, change)
            return Outcome("applied" if added else "noop", ref.incident_id)
        if read_at is not None and _written_since(session, ref, read_at):
            # Read before our write landed, applied after it was stored: its old values would look like
            # news, be applied as this vendor's and be pushed to every other vendor. The write moves the
            # object's vendor time, so the next incremental pass reads it again.
            return Outcome("stale", ref.incident_id, f"the hub wrote to it after it was read at {read_at}")
        seen = ref.last_vendor_timestamp
        # Compared at the change's resolution (at least the millisecond): a vendor's webhooks may carry
        # finer times than its API's objects (PagerDuty: milliseconds in webhooks, whole seconds over REST;
        # Opsgenie: nanoseconds and milliseconds), and a snapshot read after a webhook must not look older
        # than it.
        resolution = max(change.vendor_time_resolution, 0.001)
        if seen is not None and _tick(as_utc(change.vendor_timestamp), resolution) < _tick(seen, resolution):
            return Outcome("stale", ref.incident_id, f"vendor time {change.vendor_timestamp} < {seen}")
        if seen is None or as_utc(change.vendor_timestamp) > seen:
            ref.last_vendor_timestamp = as_utc(change.vendor_timestamp)
        if change.actor_is_self:
            return Outcome("echo", ref.incident_id, "made by the connector's own account")
        if change.kind is ChangeKind.DELETED:
            session.add(
                TimelineRow(
                    incident_id=ref.incident_id,
                    type=TimelineType.SYNC,
                    is_public=False,
                    timestamp=utcnow(),
                    author=change.actor,
                    origin_connector=change.connector_id,
                    message=f"{change.external_key or change.external_id} deleted in {change.connector_id}",
                )
            )
            session.delete(ref)
            return Outcome("unlinked", ref.incident_id, "deleted in the vendor")
        news = {k: v for k, v in change.fields.items() if ref.written.get(k, _MISSING) != v}
        # What the vendor holds now: the next push writes only what differs from it.
        ref.written = {**ref.written, **change.fields}
        incident = self.incidents.get_in(session, ref.incident_id)
        patch = to_canonical(mapping, incident, news, held=ref.written)
        self._record_unmapped(session, change.connector_id, patch)
        self._drop_not_owned(session, patch, change)
        changed = self._apply_patch(session, incident, patch, change)
        if change.note is not None:
            changed = self._apply_note(session, incident.id, change) or changed
        if not changed:
            return Outcome("echo" if not news and change.note is None else "noop", ref.incident_id)
        return Outcome("applied", ref.incident_id)

    def _first_sight(
        self, session: Session, change: ExternalChange, mapping: MappingDocument, read_at: datetime | None
    ) -> Outcome:
        if change.hub_incident_id is not None:
            row = session.get(IncidentRow, change.hub_incident_id)
            if row is not None:
                # Written = what the vendor holds (the push that made it may not have finished its
                # later steps): the next push writes whatever still differs.
                if self._link(session, row.id, change, dict(change.fields)):
                    return Outcome("linked", row.id, "the object carries our incident id")
                held = ref_for(session, row.id, change.connector_id)
                if held is not None and held.external_id == change.external_id:
                    # The push that made the object recorded the link first: apply as to any linked one.
                    return self._apply(session, change, mapping, read_at)
                if held is not None and self._fires_again(session, row, change):
                    return self._take_over(session, held, change, mapping)
                if held is not None and change.reopen_window_seconds is None:
                    # A second object carrying our id: recorded, never written (see sync/in_doubt.py).
                    record_duplicate(
                        session,
                        connector_id=change.connector_id,
                        incident_id=row.id,
                        duplicate=PushResult(
                            external_id=change.external_id, external_key=change.external_key, url=change.url
                        ),
                        kept_external_id=held.external_id,
                        found_by="reconciler" if change.kind is ChangeKind.SNAPSHOT else "webhook",
                    )
                    return Outcome(
                        "unlinked", row.id, f"the incident is linked to {held.external_id} of this vendor"
                    )
                # Resolved too long ago: the object is a new incident, not this one again.
        if change.actor_is_self or change.kind not in (ChangeKind.CREATED, ChangeKind.SNAPSHOT):
            return Outcome("unlinked", None, f"{change.kind} for an object the hub does not know")
        return self._create(session, change, mapping)

    def _fires_again(self, session: Session, row: IncidentRow, change: ExternalChange) -> bool:
        """A new object for a hub incident resolved within the change's reopen window."""
        if change.reopen_window_seconds is None or change.kind is not ChangeKind.CREATED:
            return False
        if row.status not in (Status.RESOLVED, Status.CLOSED):
            return False
        ended = row.resolved_at or row.closed_at or row.updated_at
        age = (as_utc(change.vendor_timestamp) - as_utc(ended)).total_seconds()
        return age <= change.reopen_window_seconds

    def _take_over(
        self, session: Session, ref: ExternalRefRow, change: ExternalChange, mapping: MappingDocument
    ) -> Outcome:
        """Re-point the incident's link at the new object, then apply it: the incident reopens."""
        previous = ref.external_id
        ref.external_id = change.external_id
        ref.external_key = change.external_key
        ref.url = change.url
        ref.written = {}
        ref.last_vendor_timestamp = None
        session.add(
            TimelineRow(
                incident_id=ref.incident_id,
                type=TimelineType.SYNC,
                is_public=False,
                timestamp=utcnow(),
                author=change.actor,
                origin_connector=change.connector_id,
                message=f"{change.connector_id}: {change.external_key or change.external_id} fired again "
                f"for this incident (was {previous})",
            )
        )
        session.flush()
        outcome = self._apply(session, change, mapping)
        return Outcome("reopened", ref.incident_id, outcome.detail)

    def _create(self, session: Session, change: ExternalChange, mapping: MappingDocument) -> Outcome:
        patch = to_canonical(mapping, None, change.fields)
        self._record_unmapped(session, change.connector_id, patch)
        title = str(patch.fields.get("title") or change.external_key or change.external_id)
        draft = IncidentDraft(
            title=title[:500],
            description=_text(patch.fields.get("description")),
            severity=patch.severity or IncidentDraft.model_fields["severity"].default,
            assigned_team=_text(patch.fields.get("assigned_team")),
            assignee=_text(patch.fields.get("assignee")),
            source=change.connector_id,
            author=change.actor,
        )
        created = self.incidents.create(draft, session=session).incident
        incident = created
        if patch.status is not None and patch.status is not Status.OPEN:
            incident = self.incidents.change_status(
                str(created.id), StatusChange(status=patch.status, author=change.actor), session=session
            )
        # Written = what the vendor has now: nothing to push back to it.
        if not self._link(session, str(created.id), change, to_vendor(mapping, incident)):
            # Another webhook about the same object linked it meanwhile: undo, and retry as an update.
            raise LinkRace(f"{change.connector_id} object {change.external_id} was linked concurrently")
        return Outcome("created", str(created.id))

    def _link(
        self, session: Session, incident_id: str, change: ExternalChange, written: dict[str, Any]
    ) -> bool:
        """Record the link; False when one already exists for either side (see sync/refs.py)."""
        return insert_ref(
            session,
            incident_id=incident_id,
            connector_id=change.connector_id,
            external_id=change.external_id,
            external_key=change.external_key,
            url=change.url,
            written=written,
            last_vendor_timestamp=as_utc(change.vendor_timestamp),
        )

    def _apply_patch(
        self, session: Session, incident: Incident, patch: CanonicalPatch, change: ExternalChange
    ) -> bool:
        changed = False
        incident_id = str(incident.id)
        fields: dict[str, Any] = {k: v for k, v in patch.fields.items() if getattr(incident, k) != v}
        if patch.severity is not None and patch.severity != incident.severity:
            fields["severity"] = patch.severity
        if fields:
            self.incidents.patch(incident_id, IncidentPatch(**fields, author=change.actor), session=session)
            changed = True
        if patch.status is not None and patch.status != incident.status:
            try:
                self.incidents.change_status(
                    incident_id,
                    StatusChange(
                        status=patch.status,
                        author=change.actor,
                        message=f"from {change.connector_id}",
                        reopen=True,
                    ),
                    session=session,
                )
                changed = True
            except IllegalTransition as error:
                session.add(
                    TimelineRow(
                        incident_id=incident_id,
                        type=TimelineType.SYNC,
                        is_public=False,
                        timestamp=utcnow(),
                        author=change.actor,
                        origin_connector=change.connector_id,
                        message=f"{change.connector_id} asked for {patch.status}; not applied: {error}",
                    )
                )
        return changed

    def _apply_note(self, session: Session, incident_id: Any, change: ExternalChange) -> bool:
        note = change.note
        assert note is not None
        known = session.scalar(
            select(TimelineRow.id).where(
                TimelineRow.incident_id == str(incident_id),
                TimelineRow.origin_connector == change.connector_id,
                TimelineRow.external_comment_id == note.external_comment_id,
            )
        )
        if known is not None:
            return False
        self.incidents.add_note(
            str(incident_id),
            NoteDraft(message=note.body, author=note.author or change.actor, is_public=note.is_public),
            session=session,
            external_comment_id=note.external_comment_id,
        )
        return True

    def _drop_not_owned(self, session: Session, patch: CanonicalPatch, change: ExternalChange) -> None:
        """Per-field ownership: a field owned by another system is not changed from this one."""
        owners = self.owners()
        if not owners:
            return
        dropped = []
        if patch.status is not None and owners.get("status", change.connector_id) != change.connector_id:
            dropped.append("status")
            patch.status = None
        if patch.severity is not None and owners.get("severity", change.connector_id) != change.connector_id:
            dropped.append("severity")
            patch.severity = None
        for field in [f for f in patch.fields if owners.get(f, change.connector_id) != change.connector_id]:
            dropped.append(field)
            del patch.fields[field]
        if dropped:
            log.info(
                "changes to fields owned elsewhere ignored",
                extra={"connector": change.connector_id, "fields": dropped},
            )

    def _record_unmapped(self, session: Session, connector_id: str, patch: CanonicalPatch) -> None:
        now = utcnow()
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        for field, value in patch.unmapped:
            log.warning(
                "unmapped vendor value", extra={"connector": connector_id, "field": field, "value": value}
            )
            session.execute(
                insert(UnmappedValueRow)
                .values(
                    connector_id=connector_id,
                    field=field,
                    value=value[:500],
                    first_seen=now,
                    last_seen=now,
                    count=1,
                )
                .on_conflict_do_update(
                    index_elements=["connector_id", "field", "value"],
                    set_={"last_seen": now, "count": UnmappedValueRow.count + 1},
                )
            )


_MISSING = object()


def _written_since(session: Session, ref: ExternalRefRow, read_at: datetime) -> bool:
    """The hub is writing to `ref`'s object, or wrote to it (a vendor call made) at or after `read_at`."""
    found = session.scalar(
        select(DeliveryRow.id)
        .where(
            DeliveryRow.target_kind == events.CONNECTOR,
            DeliveryRow.target_id == ref.connector_id,
            DeliveryRow.ordering_key == ref.incident_id,
            or_(
                # Claimed: the write may have landed and its ref been stored, the delivery not yet marked.
                DeliveryRow.lease_until.is_not(None),
                (DeliveryRow.delivered_at >= read_at) & DeliveryRow.last_status_code.is_not(None),
            ),
        )
        .limit(1)
    )
    return found is not None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tick(stamp: datetime, resolution: float) -> int:
    """`stamp` in whole units of `resolution`, in integers: float seconds would put 12:00:00.445 one
    millisecond before itself (1796204240.445 / 0.001 = 1796204240444.9998)."""
    micros = (stamp - _EPOCH) // timedelta(microseconds=1)
    return micros // max(round(resolution * 1_000_000), 1)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
