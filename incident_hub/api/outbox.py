"""Event subscriptions and the deliveries that carry events to them (dead letters, replay)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from incident_hub.api.auth import Admin, Reader, Writer
from incident_hub.api.params import Cursor, RowId
from incident_hub.audit import actor_name
from incident_hub.commands import SubscriptionDraft
from incident_hub.hub import Hub
from incident_hub.sync.in_doubt import Duplicate, list_duplicates
from incident_hub.sync.outbox import Delivery
from incident_hub.sync.subscribers import Subscription

router = APIRouter(prefix="/api/v1", tags=["events"])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@router.post("/subscriptions", response_model=Subscription, status_code=status.HTTP_201_CREATED)
def create_subscription(draft: SubscriptionDraft, request: Request, who: Admin) -> Subscription:
    """Receive events at `url`, each signed `X-Incident-Hub-Signature: sha256=<HMAC-SHA256(secret, body)>`."""
    hub = _hub(request)
    created = hub.subscriptions.create(draft)
    target = f"subscription/{created.id}"
    hub.audit.record(actor_name(who.name, who.key_id), "subscription.create", target, {"name": created.name})
    return created


@router.get("/subscriptions", response_model=list[Subscription])
def list_subscriptions(request: Request, _: Admin) -> list[Subscription]:
    return _hub(request).subscriptions.active()


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(subscription_id: str, request: Request, who: Admin) -> Response:
    """Stop sending; deliveries still queued for this subscription are cancelled."""
    hub = _hub(request)
    hub.subscriptions.delete(subscription_id)
    target = f"subscription/{subscription_id}"
    hub.audit.record(actor_name(who.name, who.key_id), "subscription.delete", target, {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/deliveries", response_model=list[Delivery])
def list_deliveries(
    request: Request,
    _: Reader,
    state: Annotated[str | None, Query(pattern="^(pending|delivered|dead|cancelled)$")] = None,
    target_kind: str | None = None,
    after_id: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Delivery]:
    """Deliveries by state (`?state=dead` lists the dead letters), oldest first."""
    return _hub(request).outbox.search(state=state, target_kind=target_kind, after_id=after_id, limit=limit)


@router.get("/deliveries/{delivery_id}", response_model=Delivery)
def get_delivery(delivery_id: RowId, request: Request, _: Reader) -> Delivery:
    """One delivery with every attempt made."""
    return _hub(request).outbox.get(delivery_id)


@router.post("/deliveries/{delivery_id}/replay", response_model=Delivery)
def replay_delivery(delivery_id: RowId, request: Request, who: Writer) -> Delivery:
    """Send a dead delivery again (with a fresh retry budget). Later deliveries for the same incident and
    target wait behind a dead one; after it, they go out in order."""
    hub = _hub(request)
    delivery = hub.outbox.replay(delivery_id)
    hub.audit.record(actor_name(who.name, who.key_id), "delivery.replay", f"delivery/{delivery_id}", {})
    hub.dispatcher.wake()
    return delivery


@router.post("/deliveries/{delivery_id}/discard", response_model=Delivery)
def discard_delivery(delivery_id: RowId, request: Request, who: Admin) -> Delivery:
    """Give up on a dead delivery (kept as `cancelled`): the deliveries waiting behind it go out."""
    hub = _hub(request)
    delivery = hub.outbox.discard(delivery_id)
    hub.audit.record(actor_name(who.name, who.key_id), "delivery.discard", f"delivery/{delivery_id}", {})
    hub.dispatcher.wake()
    return delivery


@router.get("/duplicates", response_model=list[Duplicate])
def list_vendor_duplicates(
    request: Request,
    _: Reader,
    connector_id: str | None = None,
    incident_id: str | None = None,
    after_id: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Duplicate]:
    """Vendor objects that carry an incident's id beside the one it is linked to (the oldest). The hub
    never writes to them; closing them is left to a person unless the connector has `cancel_duplicates`."""
    return list_duplicates(
        _hub(request).db, connector_id=connector_id, incident_id=incident_id, after_id=after_id, limit=limit
    )
