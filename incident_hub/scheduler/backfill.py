"""Backfill: bring a vendor's existing objects into the hub, once.

Every object `list_changed(since)` returns enters `Applier.apply` as a SNAPSHOT, like a webhook: one
that carries a hub incident id (the connector reads it from the vendor's own field) is linked to that
incident instead of duplicating it, an unknown one becomes a new incident, one linked already is brought
up to date. Resolved objects are left alone unless asked for. A second run finds everything linked and
changes nothing. A dry run applies everything inside one transaction and rolls it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from incident_hub.clock import as_utc
from incident_hub.connectors.base import ExternalChange
from incident_hub.mapping.document import MappingDocument
from incident_hub.mapping.translate import to_canonical
from incident_hub.model import Status
from incident_hub.scheduler.reconciler import Reconciler, apply_change, paced
from incident_hub.store.db import Database
from incident_hub.sync.apply import Applier, Outcome

log = logging.getLogger(__name__)

_ENDED = (Status.RESOLVED, Status.CLOSED)


@dataclass(frozen=True)
class Imported:
    """One vendor object and what backfill did with it."""

    external_id: str
    external_key: str | None
    incident_id: str | None
    detail: str | None = None

    @property
    def name(self) -> str:
        return self.external_key or self.external_id


@dataclass
class BackfillReport:
    connector_id: str
    since: datetime
    dry_run: bool
    linked: list[Imported] = field(default_factory=list)
    created: list[Imported] = field(default_factory=list)
    updated: list[Imported] = field(default_factory=list)
    in_step: list[Imported] = field(default_factory=list)
    left_alone: list[Imported] = field(default_factory=list)

    @property
    def examined(self) -> int:
        return sum(map(len, (self.linked, self.created, self.updated, self.in_step, self.left_alone)))

    def record(self, change: ExternalChange, outcome: Outcome) -> None:
        found = Imported(change.external_id, change.external_key, outcome.incident_id, outcome.detail)
        if outcome.result in ("linked", "reopened"):
            self.linked.append(found)
        elif outcome.result == "created":
            self.created.append(found)
        elif outcome.result == "applied":
            self.updated.append(found)
        elif outcome.result in ("noop", "echo", "stale"):
            self.in_step.append(found)
        else:
            self.left_alone.append(found)

    def lines(self) -> list[str]:
        """The report as `incident-hub backfill` prints it."""
        head = f"backfill {self.connector_id} since {self.since.isoformat()}"
        lines = [head + (" (dry run: nothing was kept)" if self.dry_run else "")]
        lines.append(
            f"examined {self.examined}: linked {len(self.linked)}, created {len(self.created)}, "
            f"updated {len(self.updated)}, already in step {len(self.in_step)}, "
            f"left alone {len(self.left_alone)}"
        )
        for label, items in (("linked", self.linked), ("created", self.created), ("updated", self.updated)):
            lines += [f"  {label:<10} {i.name} -> incident {i.incident_id}" for i in items]
        lines += [f"  left alone {i.name}: {i.detail}" for i in self.left_alone]
        return lines


async def backfill(
    reconciler: Reconciler,
    connector_id: str,
    since: datetime,
    *,
    include_ended: bool = False,
    dry_run: bool = False,
) -> BackfillReport:
    """Import the connector's objects changed since `since` (open ones only unless `include_ended`)."""
    connector = await asyncio.to_thread(reconciler.registry.get, connector_id)
    mapping = connector.mapping()
    report = BackfillReport(connector_id, as_utc(since), dry_run)
    wanted: list[ExternalChange] = []
    changes = paced(connector.list_changed(as_utc(since)), reconciler.budget(connector))
    async with contextlib.aclosing(changes):
        async for change in changes:
            if not include_ended and _ended(mapping, change):
                report.left_alone.append(
                    Imported(change.external_id, change.external_key, None, "ended in the vendor (see --all)")
                )
            elif dry_run:
                wanted.append(change)
            else:
                try:
                    outcome = await asyncio.to_thread(
                        apply_change, reconciler.db, reconciler.applier, change, mapping
                    )
                except Exception as error:
                    log.exception(
                        "backfill could not apply a vendor object", extra={"external_id": change.external_id}
                    )
                    outcome = Outcome("failed", None, f"{type(error).__name__}: {error}")
                report.record(change, outcome)
    if dry_run:
        await asyncio.to_thread(_rehearse, reconciler.db, reconciler.applier, wanted, mapping, report)
    log.info(
        "backfill",
        extra={
            "connector": connector_id,
            "dry_run": dry_run,
            "objects_linked": len(report.linked),
            "objects_created": len(report.created),
            "objects_left_alone": len(report.left_alone),
        },
    )
    return report


class _Rehearsal(Exception):
    """Raised to roll a dry run's transaction back."""


def _rehearse(
    db: Database,
    applier: Applier,
    changes: list[ExternalChange],
    mapping: MappingDocument,
    report: BackfillReport,
) -> None:
    """Apply every change in one transaction (each in a savepoint of its own), then roll it all back."""
    with contextlib.suppress(_Rehearsal), db.write() as session:
        for change in changes:
            report.record(change, _attempt(session, applier, change, mapping))
        raise _Rehearsal


def _attempt(session: Session, applier: Applier, change: ExternalChange, mapping: MappingDocument) -> Outcome:
    try:
        with session.begin_nested():
            return applier.apply(session, change, mapping)
    except Exception as error:
        log.warning("backfill dry run: a change would fail", extra={"external_id": change.external_id})
        return Outcome("failed", None, f"{type(error).__name__}: {error}")


def _ended(mapping: MappingDocument, change: ExternalChange) -> bool:
    """Whether the object says the incident is over, in the mapping's words (RESOLVED or CLOSED)."""
    return to_canonical(mapping, None, change.fields).status in _ENDED
