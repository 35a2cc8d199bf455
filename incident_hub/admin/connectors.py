"""The connectors page: each connector's configuration, health, lag and circuit-breaker pause."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from incident_hub.admin.audit import record_action
from incident_hub.admin.render import hub_errors, render, see_other
from incident_hub.admin.session import Admin, AdminPost
from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import ConnectorError, Health
from incident_hub.connectors.registry import ConnectorState
from incident_hub.events import CONNECTOR
from incident_hub.hub import Hub
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow
from incident_hub.sync.dispatcher import DEAD, PENDING

router = APIRouter()


@dataclass(frozen=True)
class Backlog:
    """What waits to go to one connector: the lag is the age of the oldest pending delivery."""

    pending: int = 0
    dead: int = 0
    oldest_pending: datetime | None = None

    @property
    def lag_seconds(self) -> float | None:
        if self.oldest_pending is None:
            return None
        return (utcnow() - as_utc(self.oldest_pending)).total_seconds()


@dataclass(frozen=True)
class ConnectorOverview:
    state: ConnectorState
    backlog: Backlog
    paused: bool


def backlogs(db: Database) -> dict[str, Backlog]:
    """Pending and dead deliveries per connector, in one query."""
    query = (
        select(DeliveryRow.target_id, DeliveryRow.state, func.count(), func.min(DeliveryRow.created_at))
        .where(DeliveryRow.target_kind == CONNECTOR, DeliveryRow.state.in_([PENDING, DEAD]))
        .group_by(DeliveryRow.target_id, DeliveryRow.state)
    )
    found: dict[str, Backlog] = {}
    with db.read() as session:
        for target_id, state, count, oldest in session.execute(query).all():
            known = found.get(target_id, Backlog())
            if state == PENDING:
                found[target_id] = Backlog(count, known.dead, oldest)
            else:
                found[target_id] = Backlog(known.pending, count, known.oldest_pending)
    return found


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@router.get("/connectors")
def connectors_page(request: Request, session: Admin) -> HTMLResponse:
    hub = _hub(request)
    waiting = backlogs(hub.db)
    now = utcnow()
    overviews = [
        ConnectorOverview(state, waiting.get(state.config.id, Backlog()), state.paused(now))
        for state in hub.connectors.states()
    ]
    return render(request, "connectors.html", session, {"connectors": overviews})


@router.get("/connectors/{connector_id}/health")
async def connector_health(connector_id: str, request: Request, session: Admin) -> HTMLResponse:
    """A fragment, loaded after the page: the vendor is called with the configured credentials."""
    hub = _hub(request)
    try:
        with hub_errors():
            connector = await asyncio.to_thread(hub.connectors.get, connector_id)
        # A vendor that does not answer must not hold the panel forever.
        health = await asyncio.wait_for(connector.health(), timeout=connector.config.timeout_seconds + 1)
    except ConnectorError as error:
        health = Health(ok=False, detail=str(error))
    except TimeoutError:
        health = Health(ok=False, detail="no answer in time")
    return render(request, "_health.html", session, {"health": health})


@router.post("/connectors/{connector_id}/resume")
def resume_connector(connector_id: str, request: Request, session: AdminPost) -> Response:
    hub = _hub(request)
    with hub_errors():
        hub.connectors.resume(connector_id)
    hub.dispatcher.wake()
    record_action(hub, session, "connector.resume", f"connector:{connector_id}", {})
    session.flash(f"Connector {connector_id} resumed; held deliveries go out in order.")
    return see_other("/admin/connectors")
