"""The deliveries page: what waits to go out (pending) and what gave up (dead), with replay and discard."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from incident_hub.admin.audit import record_action
from incident_hub.admin.render import hub_errors, render, see_other
from incident_hub.admin.session import Admin, AdminPost
from incident_hub.api.params import Cursor, RowId
from incident_hub.hub import Hub

router = APIRouter()

STATES = ("dead", "pending", "delivered", "cancelled")
PAGE = 50


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _back(state: str, target_kind: str) -> str:
    query = {"state": state} | ({"target_kind": target_kind} if target_kind else {})
    return f"/admin/deliveries?{urlencode(query)}"


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    session: Admin,
    state: str = "dead",
    target_kind: str = "",
    after_id: Cursor = None,
) -> HTMLResponse:
    if state not in STATES:
        state = "dead"
    deliveries = _hub(request).outbox.search(
        state=state, target_kind=target_kind or None, after_id=after_id, limit=PAGE + 1
    )
    more = len(deliveries) > PAGE
    deliveries = deliveries[:PAGE]
    next_query = None
    if more:
        next_query = urlencode(
            {"state": state, "after_id": deliveries[-1].id}
            | ({"target_kind": target_kind} if target_kind else {})
        )
    context = {
        "deliveries": deliveries,
        "state": state,
        "states": STATES,
        "target_kind": target_kind,
        "next_query": next_query,
    }
    return render(request, "deliveries.html", session, context)


@router.get("/deliveries/{delivery_id}")
def delivery_page(delivery_id: RowId, request: Request, session: Admin) -> HTMLResponse:
    with hub_errors():
        delivery = _hub(request).outbox.get(delivery_id)
    return render(request, "delivery.html", session, {"delivery": delivery})


@router.post("/deliveries/{delivery_id}/replay")
def replay_delivery(
    delivery_id: RowId,
    request: Request,
    session: AdminPost,
    state: Annotated[str, Form()] = "dead",
    target_kind: Annotated[str, Form()] = "",
) -> Response:
    hub = _hub(request)
    with hub_errors():
        delivery = hub.outbox.replay(delivery_id)
    hub.dispatcher.wake()
    target = f"{delivery.target_kind}:{delivery.target_id}"
    record_action(hub, session, "delivery.replay", f"delivery:{delivery_id}", {"target": target})
    session.flash(f"Delivery {delivery_id} to {target} queued again.")
    return see_other(_back(state, target_kind))


@router.post("/deliveries/{delivery_id}/discard")
def discard_delivery(
    delivery_id: RowId,
    request: Request,
    session: AdminPost,
    state: Annotated[str, Form()] = "dead",
    target_kind: Annotated[str, Form()] = "",
) -> Response:
    hub = _hub(request)
    with hub_errors():
        delivery = hub.outbox.discard(delivery_id)
    hub.dispatcher.wake()
    target = f"{delivery.target_kind}:{delivery.target_id}"
    record_action(hub, session, "delivery.discard", f"delivery:{delivery_id}", {"target": target})
    session.flash(f"Delivery {delivery_id} to {target} discarded; later ones for it go out.")
    return see_other(_back(state, target_kind))
