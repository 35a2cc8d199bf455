"""Domain events: written in the change's own transaction, with one delivery per interested target.

An event is prepared (`prepare`: its payload and the targets it is queued for) and then written
(`write`), both with Core statements built once. `emit` does both inside an ORM session's transaction;
the incident create writes a prepared event inside its own statement (see `incidents/creation.py`).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select
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

EVENTS_TABLE = cast(Table, EventRow.__table__)
DELIVERIES_TABLE = cast(Table, DeliveryRow.__table__)
_INSERT_EVENT = insert(EVENTS_TABLE)
_INSERT_DELIVERY = insert(DELIVERIES_TABLE)
_ACTIVE_SUBSCRIPTIONS = select(SubscriptionRow.id, SubscriptionRow.event_types).where(
    SubscriptionRow.active.is_(True)
)
_ENABLED_CONNECTORS = select(ConnectorRow.id).where(ConnectorRow.enabled.is_(True))


class _Targets:
    """Active subscriptions and enabled connectors, read at most every `ttl` seconds per database: every
    event needs them, and they change rarely. Changes made through this process apply at once
    (`invalidate_targets`); another replica's changes within `ttl`."""

    ttl = 2.0

    def __init__(self) -> None:
        self._cached: dict[str, tuple[float, list[tuple[str, frozenset[str]]], list[str]]] = {}
        self._lock = threading.Lock()

    def get(self, connection: Connection) -> tuple[list[tuple[str, frozenset[str]]], list[str]]:
        key = str(connection.engine.url)
        now = time.monotonic()
        with self._lock:
            cached = self._cached.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        subscriptions = [
            (subscription_id, frozenset(event_types))
            for subscription_id, event_types in connection.execute(_ACTIVE_SUBSCRIPTIONS)
        ]
        connectors = list(connection.scalars(_ENABLED_CONNECTORS))
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


@dataclass(frozen=True)
class Emission:
    """An event as it will be stored, and the (target kind, target id) pairs it is queued for."""

    event_id: str
    name: str
    incident_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    targets: list[tuple[str, str]]

    @property
    def ordering_key(self) -> str:
        """Deliveries with one ordering key go to a target in the order they were queued."""
        return self.incident_id or self.event_id

    def delivery_values(self) -> list[dict[str, Any]]:
        """The deliveries' columns, one dict per target."""
        return [
            {
                "event_id": self.event_id,
                "target_kind": kind,
                "target_id": target_id,
                "ordering_key": self.ordering_key,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": self.created_at,
                "created_at": self.created_at,
            }
            for kind, target_id in self.targets
        ]


def prepare(
    connection: Connection,
    name: str,
    incident_id: str | None,
    body: dict[str, Any],
    origin: str | None = None,
) -> Emission:
    """Event `name`, queued for every active subscription that wants it and, for incident changes, for
    every enabled connector except `origin` (the connector the change came from).

    The payload is `{"event_id", "timestamp", name: body}`; `body` must already be JSON-ready.
    """
    if name not in EVENT_TYPES:
        raise ValueError(f"unknown event type {name!r}")
    now = utcnow()
    event_id = str(uuid.uuid4())
    subscriptions, connectors = _targets.get(connection)
    targets = [
        (SUBSCRIBER, subscription_id)
        for subscription_id, event_types in subscriptions
        if name in event_types or "*" in event_types
    ]
    if name in CONNECTOR_EVENTS and incident_id is not None:
        targets += [(CONNECTOR, connector_id) for connector_id in connectors if connector_id != origin]
    payload = {"event_id": event_id, "timestamp": now.isoformat(), name: body}
    return Emission(event_id, name, incident_id, payload, now, targets)


def write(connection: Connection, emission: Emission) -> None:
    """Store a prepared event and its deliveries in `connection`'s transaction."""
    connection.execute(
        _INSERT_EVENT,
        {
            "id": emission.event_id,
            "incident_id": emission.incident_id,
            "type": emission.name,
            "payload": emission.payload,
            "created_at": emission.created_at,
        },
    )
    if emission.targets:
        connection.execute(_INSERT_DELIVERY, emission.delivery_values())
    recorded(emission)


def recorded(emission: Emission) -> None:
    """Count an event that was stored."""
    EVENTS.labels(emission.name).inc()


def emit(session: Session, name: str, incident_id: str | None, body: dict[str, Any]) -> str:
    """Record event `name` in `session`'s transaction and queue its deliveries (see `prepare`); returns
    the event's id. The session notes that deliveries were queued, so its owner wakes the dispatcher."""
    connection = session.connection()
    emission = prepare(connection, name, incident_id, body, session.info.get(ORIGIN))
    write(connection, emission)
    if emission.targets:
        session.info["deliveries_queued"] = True
    return emission.event_id
