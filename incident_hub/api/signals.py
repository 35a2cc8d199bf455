"""`POST /api/v1/signals`: component health from monitoring opens, raises and resolves incidents."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, status

from incident_hub.api.auth import Writer
from incident_hub.hub import Hub
from incident_hub.signals import Signal, SignalAction, SignalOutcome, Signals

router = APIRouter(tags=["signals"])


@router.post(
    "/api/v1/signals",
    response_model=SignalOutcome,
    responses={201: {"description": "An incident was opened."}, 200: {"description": "Anything else."}},
)
async def post_signal(signal: Signal, request: Request, response: Response, _: Writer) -> SignalOutcome:
    """`stuck`/`stopped` opens an incident for the component (stopped SEV1, stuck SEV2; at most one open
    per host, device, capture folder and component) or raises the open one; `active` resolves it with a
    resolution note. The seed's fields (`host_name`, `device_id`, `device_name`, `capture_folder`,
    `video_device`, `incident_type`) become the incident's tags; an unknown field is refused (422)."""
    hub: Hub = request.app.state.hub
    outcome = await asyncio.to_thread(Signals(hub.incidents).process, signal)
    if outcome.action is SignalAction.OPENED:
        response.status_code = status.HTTP_201_CREATED
    return outcome
