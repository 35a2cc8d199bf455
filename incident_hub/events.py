"""Domain events: written in the change's own transaction, with one delivery per interested target."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incident_hub.clock import utcnow
from incident_hub.metrics import EVENTS
from incident_hub.store.tables import ConnectorRow, DeliveryRow, EventRow, SubscriptionRow

EVENT_TYPES: tuple[str, ...] = (
    "incident_created",
    "incident_updated",
    "incident_status_changed",
    "incident_escalated",
    "incident_resolved",
    "incident_sla_breached",
    "incident_note_added",
    "incident_role_assigned",
    "incident_resolution_step_added",
    "incident_automated_response_recorded",
)

SUBSCRIBER = "subscriber"
CONNECTOR = "connector"

# Events a vendor connector acts on (resolution is a status change; SLA and bookkeeping events are not).
CONNECTOR_EVENTS = frozenset(
    {
        "incident_created",
        "incident_updated",
        "incident_status_changed",
        "incident_escalated",
        "incident_note_added",
    }
)

# `session.info[ORIGIN]` names the connector a change came from: it gets no delivery of its own change.
ORIGIN = "origin_connector"


class _Targets:
    """Active subscriptions and enabled connectors, read at most every `ttl` seconds per database: every
    event needs them, and they change rarely. Changes made through this process apply at once
    (`invalidate_targets`); another replica's changes within `ttl`."""

    ttl = 2.0

    def __init__(self) -> None:
        self._cached: dict[str, tuple[float, list[tuple[str, frozenset[str]]], list[str]]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session) -> tuple[list[tuple[str, frozenset[str]]], list[str]]:
        key = str(session.get_bind().engine.url)
        now = time.monotonic()
        with self._lock:
            cached = self._cached.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        subscriptions = [
            (row.id, frozenset(row.event_types))
            for row in session.scalars(select(SubscriptionRow).where(SubscriptionRow.active.is_(True)))
        ]
        connectors = list(session.scalars(select(ConnectorRow.id).where(ConnectorRow.enabled.is_(True))))
        with self._lock:
            self._cached[key] = (now + self.ttl, subscriptions, connectors)
        return subscriptions, connectors

    def invalidate(self) -> None:
        with self._lock:
            self._cached.clear()


_targets = _Targets()


def invalidate_targets() -> None:
    """Subscriptions or connectors changed: the next event reads them again."""
    _targets.invalidate()


def emit(session: Session, name: str, incident_id: str | None, body: dict[str, Any]) -> EventRow:
    """Record event `name` and queue it for every active subscription that wants it, and, for incident
    changes, for every enabled connector except the one the change came from.

    The payload is `{"event_id", "timestamp", name: body}`; `body` must already be JSON-ready.
    """
    if name not in EVENT_TYPES:
        raise ValueError(f"unknown event type {name!r}")
    now = utcnow()
    event_id = str(uuid.uuid4())
    row = EventRow(
        id=event_id,
        incident_id=incident_id,
        type=name,
        payload={"event_id": event_id, "timestamp": now.isoformat(), name: body},
        created_at=now,
    )
    session.add(row)
    # Deliveries reference the event, and no relationship tells the unit of work to insert it first.
    session.flush()
    EVENTS.labels(name).inc()
    subscriptions, connectors = _targets.get(session)
    for subscription_id, event_types in subscriptions:
        if name in event_types or "*" in event_types:
            session.add(
                DeliveryRow(
                    event_id=event_id,
                    target_kind=SUBSCRIBER,
                    target_id=subscription_id,
                    ordering_key=incident_id or event_id,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            session.info["deliveries_queued"] = True
    if name in CONNECTOR_EVENTS and incident_id is not None:
        origin = session.info.get(ORIGIN)
        for connector_id in connectors:
            if connector_id == origin:
                continue
            session.add(
                DeliveryRow(
                    event_id=event_id,
                    target_kind=CONNECTOR,
                    target_id=connector_id,
                    ordering_key=incident_id,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            session.info["deliveries_queued"] = True
    return row
