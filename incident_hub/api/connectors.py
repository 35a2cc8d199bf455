"""Connectors (admin), vendor webhook ingress, and what inbound sync refused or could not map."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from incident_hub.api.auth import Admin, Reader
from incident_hub.api.params import RowId
from incident_hub.audit import actor_name
from incident_hub.connectors.base import ConnectorConfig, ConnectorError, Health
from incident_hub.connectors.registry import ConnectorState, unreadable_secrets
from incident_hub.errors import Conflict, InvalidRequest, NotFound
from incident_hub.hub import Hub
from incident_hub.store.tables import InboxRow, UnmappedValueRow, WebhookRejectionRow
from incident_hub.sync.push import ConnectorTarget

router = APIRouter(tags=["connectors"])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


class ConnectorView(BaseModel):
    """A connector as the API shows it: credentials appear only as references (env var, file path)."""

    config: ConnectorConfig
    source: str
    paused_until: datetime | None
    pause_reason: str | None
    consecutive_failures: int


def _view(state: ConnectorState) -> ConnectorView:
    return ConnectorView(
        config=state.config,
        source=state.source,
        paused_until=state.paused_until,
        pause_reason=state.pause_reason,
        consecutive_failures=state.consecutive_failures,
    )


@router.post("/webhooks/{connector_id}", status_code=status.HTTP_202_ACCEPTED, tags=["webhooks"])
async def receive_webhook(connector_id: str, request: Request) -> JSONResponse:
    """Vendor webhooks. Authenticated the way the vendor signs; stored raw, answered 202, applied after."""
    hub = _hub(request)
    body = await request.body()
    remote = request.client.host if request.client else None
    received = await asyncio.to_thread(hub.inbox.receive, connector_id, dict(request.headers), body, remote)
    if received.status >= 400:
        titles = {400: "Bad webhook", 401: "Unauthenticated webhook", 404: "Unknown connector"}
        return JSONResponse(
            {
                "type": "about:blank",
                "title": titles.get(received.status, "Rejected"),
                "status": received.status,
                "detail": received.detail,
                "instance": request.url.path,
            },
            status_code=received.status,
            media_type="application/problem+json",
        )
    if received.inbox_id is not None and not received.echo:
        hub.inbox_received()
    return JSONResponse(
        {"status": "duplicate" if received.duplicate else "accepted", "inbox_id": received.inbox_id},
        status_code=202,
    )


@router.get("/api/v1/connectors", response_model=list[ConnectorView])
def list_connectors(request: Request, _: Reader) -> list[ConnectorView]:
    return [_view(s) for s in _hub(request).connectors.states()]


@router.get("/api/v1/connectors/{connector_id}", response_model=ConnectorView)
def get_connector(connector_id: str, request: Request, _: Reader) -> ConnectorView:
    return _view(_hub(request).connectors.state(connector_id))


@router.put("/api/v1/connectors/{connector_id}", response_model=ConnectorView)
def put_connector(connector_id: str, config: ConnectorConfig, request: Request, who: Admin) -> ConnectorView:
    """Add or change a connector. Credentials are given as `{"env": NAME}` or `{"file": PATH}`, and must
    be readable by the hub now (422 names the one that is not), not only at the first push."""
    if config.id != connector_id:
        raise InvalidRequest(f"body id {config.id!r} differs from the path's {connector_id!r}")
    hub = _hub(request)
    try:
        unreadable = unreadable_secrets(config)
        if unreadable is not None:
            raise InvalidRequest(f"connector {connector_id}: {unreadable}")
        view = _view(hub.connectors.upsert(config))
    except ConnectorError as error:
        raise InvalidRequest(str(error)) from error
    detail = {"kind": config.kind, "enabled": config.enabled, "base_url": config.base_url}
    hub.audit.record(actor_name(who.name, who.key_id), "connector.upsert", connector_id, detail)
    return view


@router.delete("/api/v1/connectors/{connector_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_connector(connector_id: str, request: Request, who: Admin) -> Response:
    hub = _hub(request)
    hub.connectors.delete(connector_id)
    hub.audit.record(actor_name(who.name, who.key_id), "connector.delete", connector_id, {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/v1/connectors/{connector_id}/health", response_model=Health)
async def connector_health(connector_id: str, request: Request, _: Reader) -> Health:
    """Calls the vendor with the configured credentials; says until when its calls are paused after a 429."""
    hub = _hub(request)
    pushes = hub.dispatcher.targets.get("connector")
    paused = pushes.rate_limited_until(connector_id) if isinstance(pushes, ConnectorTarget) else None
    try:
        connector = await asyncio.to_thread(hub.connectors.get, connector_id)
        health = await connector.health()
    except ConnectorError as error:
        health = Health(ok=False, detail=str(error))
    return health.model_copy(update={"rate_limited_until": paused})


@router.post("/api/v1/connectors/{connector_id}/resume", response_model=ConnectorView)
def resume_connector(connector_id: str, request: Request, who: Admin) -> ConnectorView:
    """Lift a circuit-breaker pause now; held deliveries go out in order."""
    hub = _hub(request)
    state = hub.connectors.resume(connector_id)
    hub.audit.record(actor_name(who.name, who.key_id), "connector.resume", connector_id, {})
    hub.dispatcher.wake()
    return _view(state)


class Rejection(BaseModel):
    id: int
    connector_id: str
    received_at: datetime
    status: int
    reason: str
    body_sha256: str
    body_excerpt: str
    remote_addr: str | None


@router.get("/api/v1/webhook-rejections", response_model=list[Rejection])
def webhook_rejections(
    request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[Rejection]:
    """Refused inbound webhooks, newest first, with the reason."""
    with _hub(request).db.read() as session:
        rows = session.scalars(
            select(WebhookRejectionRow).order_by(WebhookRejectionRow.id.desc()).limit(limit)
        )
        return [Rejection.model_validate(r, from_attributes=True) for r in rows]


class UnmappedValue(BaseModel):
    connector_id: str
    field: str
    value: str
    first_seen: datetime
    last_seen: datetime
    count: int


@router.get("/api/v1/unmapped-values", response_model=list[UnmappedValue])
def unmapped_values(request: Request, _: Reader) -> list[UnmappedValue]:
    """Vendor values the connectors' mappings do not cover (e.g. a new Jira status): fix the mapping."""
    with _hub(request).db.read() as session:
        rows = session.scalars(select(UnmappedValueRow).order_by(UnmappedValueRow.last_seen.desc()))
        return [UnmappedValue.model_validate(r, from_attributes=True) for r in rows]


class InboxEntry(BaseModel):
    """A stored inbound webhook and what applying it did (or why it failed)."""

    id: int
    connector_id: str
    received_at: datetime
    state: str
    attempts: int
    error: str | None
    processed_at: datetime | None


@router.get("/api/v1/inbox", response_model=list[InboxEntry])
def inbox(
    request: Request,
    _: Reader,
    state: Annotated[str | None, Query(pattern="^(pending|applied|failed)$")] = None,
    connector_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InboxEntry]:
    """Stored webhooks, newest first. `failed` ones gave up after repeated errors: fix the cause (the
    error says it), then replay them."""
    query = select(InboxRow).order_by(InboxRow.id.desc()).limit(limit)
    if state is not None:
        query = query.where(InboxRow.state == state)
    if connector_id is not None:
        query = query.where(InboxRow.connector_id == connector_id)
    with _hub(request).db.read() as session:
        return [InboxEntry.model_validate(r, from_attributes=True) for r in session.scalars(query)]


@router.post("/api/v1/inbox/{inbox_id}/replay", response_model=InboxEntry)
def replay_inbox(inbox_id: RowId, request: Request, who: Admin) -> InboxEntry:
    """Apply a failed webhook again (it keeps its place: it is applied like any pending one)."""
    hub = _hub(request)
    with hub.db.write() as session:
        row = session.get(InboxRow, inbox_id)
        if row is None:
            raise NotFound(f"no inbox entry {inbox_id}")
        if row.state != "failed":
            raise Conflict(f"inbox entry {inbox_id} is {row.state}; only failed entries are replayed")
        row.state, row.attempts, row.lease_until, row.error = "pending", 0, None, None
        entry = InboxEntry.model_validate(row, from_attributes=True)
    detail = {"connector_id": entry.connector_id}
    hub.audit.record(actor_name(who.name, who.key_id), "inbox.replay", f"inbox/{inbox_id}", detail)
    hub.inbox_received()
    return entry
