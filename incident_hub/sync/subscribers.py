"""Event subscribers: HTTP endpoints that receive the hub's events, signed with their own secret."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import httpx
from pydantic import BaseModel
from sqlalchemy import select, update

from incident_hub import __version__
from incident_hub.clock import utcnow
from incident_hub.commands import SubscriptionDraft
from incident_hub.errors import NotFound
from incident_hub.events import SUBSCRIBER, invalidate_targets
from incident_hub.signing import sign_sha256
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, SubscriptionRow
from incident_hub.sync.dispatcher import CANCELLED, PENDING, ClaimedDelivery
from incident_hub.sync.retry import PermanentDeliveryError, classify_transport_error, raise_for_response

SIGNATURE_HEADER = "X-Incident-Hub-Signature"


def event_body(payload: dict[str, object]) -> bytes:
    """The exact bytes sent (and signed) for an event."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class SubscriberTarget:
    """POSTs each event to the subscription's URL with `X-Incident-Hub-Signature: sha256=<hmac>`."""

    def __init__(self, db: Database, client: httpx.AsyncClient) -> None:
        self.db = db
        self.client = client

    def _subscription(self, subscription_id: str) -> tuple[str, str] | None:
        with self.db.read() as session:
            row = session.scalar(select(SubscriptionRow).where(SubscriptionRow.id == subscription_id))
            if row is None or not row.active:
                return None
            return row.url, row.secret

    async def deliver(self, delivery: ClaimedDelivery) -> int | None:
        found = await asyncio.to_thread(self._subscription, delivery.target_id)
        if found is None:
            raise PermanentDeliveryError(f"subscription {delivery.target_id} no longer exists")
        url, secret = found
        body = event_body(delivery.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"incident-hub/{__version__}",
            SIGNATURE_HEADER: f"sha256={sign_sha256(secret, body)}",
            "X-Incident-Hub-Event": delivery.event_type,
            "X-Incident-Hub-Event-Id": delivery.event_id,
            "X-Incident-Hub-Delivery": str(delivery.id),
        }
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise classify_transport_error(error) from error
        raise_for_response(response)
        return response.status_code


class Subscription(BaseModel):
    """A subscription as the API shows it: never with its secret."""

    id: str
    name: str | None
    url: str
    event_types: list[str]
    active: bool
    created_at: datetime


def _subscription_model(row: SubscriptionRow) -> Subscription:
    return Subscription(
        id=row.id,
        name=row.name,
        url=row.url,
        event_types=list(row.event_types),
        active=row.active,
        created_at=row.created_at,
    )


class Subscriptions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, draft: SubscriptionDraft) -> Subscription:
        row = SubscriptionRow(
            id=str(uuid.uuid4()),
            name=draft.name,
            url=str(draft.url),
            event_types=sorted(set(draft.event_types)),
            secret=draft.secret,
            active=True,
            created_at=utcnow(),
        )
        with self.db.write() as session:
            session.add(row)
        invalidate_targets()
        return _subscription_model(row)

    def active(self) -> list[Subscription]:
        with self.db.read() as session:
            rows = session.scalars(
                select(SubscriptionRow)
                .where(SubscriptionRow.active.is_(True))
                .order_by(SubscriptionRow.created_at)
            ).all()
            return [_subscription_model(r) for r in rows]

    def delete(self, subscription_id: str) -> None:
        """Stop the subscription; deliveries still queued for it are cancelled, not sent."""
        with self.db.write() as session:
            row = session.get(SubscriptionRow, subscription_id)
            if row is None or not row.active:
                raise NotFound(f"no subscription {subscription_id}")
            row.active = False
            session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.target_kind == SUBSCRIBER,
                    DeliveryRow.target_id == subscription_id,
                    DeliveryRow.state == PENDING,
                )
                .values(state=CANCELLED, lease_until=None, leased_by=None)
            )
        invalidate_targets()
