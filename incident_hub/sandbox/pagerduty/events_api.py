"""Events API v2 (`POST /v2/enqueue`): a monitoring integration triggers, acknowledges and resolves by key.

Shapes follow `vendor/pagerduty/events-api-v2.openapiv3.json`. Real PagerDuty serves it from
`https://events.pagerduty.com`; the sandbox serves it next to the REST API. Events carry their
`routing_key` (the service's integration key) instead of an `Authorization` header, and the service is
the `agent` of the webhooks they cause.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from incident_hub.sandbox.pagerduty.model import Actor, Occurrence
from incident_hub.sandbox.pagerduty.render import event_body
from incident_hub.sandbox.pagerduty.rest import links_for
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.pagerduty.webhooks import Deliveries

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "warning", "error", "info")


def _problems(event: dict[str, Any]) -> list[str]:
    problems = []
    if event.get("event_action") not in ACTIONS:
        problems.append("'event_action' must be one of trigger, acknowledge or resolve")
    if event.get("event_action") == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            problems.append("'payload' is missing or blank")
        else:
            problems += [
                f"'payload.{name}' is missing or blank"
                for name in ("summary", "source")
                if not payload.get(name)
            ]
            if payload.get("severity") not in SEVERITIES:
                problems.append("'payload.severity' must be one of critical, warning, error or info")
    elif not isinstance(event.get("dedup_key"), str) or not event.get("dedup_key"):
        problems.append("'dedup_key' is required unless the event_action is trigger")
    return problems


def _rejected(status: str, message: str, errors: list[str]) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, "errors": errors}, status_code=400)


def events_router(state: PagerDutyState, deliveries: Deliveries) -> APIRouter:
    router = APIRouter(tags=["PagerDuty Events API v2"])

    @router.post("/v2/enqueue")
    async def enqueue(request: Request) -> JSONResponse:
        try:
            event = json.loads(await request.body())
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return _rejected(
                "Unrecognized object", "Event object format is unrecognized", ["JSON parse error"]
            )
        problems = _problems(event)
        service = state.account.service_by_routing_key(str(event.get("routing_key", "")))
        if service is None:
            problems.insert(0, "Invalid routing key")
        if problems or service is None:
            return _rejected("invalid event", "Event object is invalid", problems)
        agent = Actor("service", service.id)
        action, dedup_key = event["event_action"], event.get("dedup_key")
        happened: list[Occurrence] = []
        with state.lock:
            open_incident = state.open_incident_with_key(service.id, dedup_key) if dedup_key else None
            if action == "trigger" and open_incident is None:
                incident, happened = state.create_incident(
                    agent,
                    "api",
                    title=str(event["payload"]["summary"]),
                    service_id=service.id,
                    incident_key=dedup_key,
                    details=json.dumps(event["payload"].get("custom_details") or {}),
                )
                dedup_key = incident.incident_key
            # A trigger for an open incident only adds an alert to it; acknowledge and resolve for no open
            # incident are accepted and dropped.
            elif (
                action == "acknowledge" and open_incident is not None and open_incident.status == "triggered"
            ):
                happened = state.acknowledge(open_incident.id, agent, "api")
            elif action == "resolve" and open_incident is not None:
                happened = state.resolve(open_incident.id, agent, "api")
            links = links_for(state, request)
            bodies = [event_body(state, occurrence, links) for occurrence in happened]
        deliveries.send_soon(bodies)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status_code=202
        )

    return router
