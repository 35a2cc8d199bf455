"""`/_sandbox/pagerduty/...`: a person acting in PagerDuty's web UI, or a monitor triggering an incident.

Each action changes the incident as PagerDuty would and sends its V3 webhooks with that person (`actor`,
a user id) as the `agent`. Only what PagerDuty's UI offers: acknowledge, resolve, reopen, reassign,
escalate, reassign to another escalation policy (delegate), change priority, add a note, add a responder.
Unacknowledge stands for the acknowledgement timing out (the only way PagerDuty un-acknowledges).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from incident_hub.sandbox.common import CONTROL_PREFIX, WebhookTarget
from incident_hub.sandbox.pagerduty.account import SERVICE_ID
from incident_hub.sandbox.pagerduty.model import Actor, Occurrence, PagerDutyError
from incident_hub.sandbox.pagerduty.render import event_body, incident_json
from incident_hub.sandbox.pagerduty.rest import links_for
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.pagerduty.webhooks import Deliveries


class Act(BaseModel):
    actor: str = Field(description="Id of the user acting in PagerDuty's web UI.", examples=["PRESP01"])


class Resolve(Act):
    resolution: str | None = None


class Reassign(Act):
    assignees: list[str] = Field(min_length=1, description="User ids.")


class Escalate(Act):
    level: int = Field(ge=1)


class Delegate(Act):
    escalation_policy: str = Field(description="Escalation policy id.", examples=["PEPOL02"])


class ChangePriority(Act):
    priority: str | None = Field(description="Priority name (P1..P5) or id; null removes it.")


class AddNote(Act):
    content: str = Field(min_length=1)


class AddResponder(Act):
    user: str = Field(description="Id of the user asked to help.")
    message: str = "Please help with this incident"


class Trigger(BaseModel):
    title: str = Field(min_length=1)
    incident_key: str | None = None
    urgency: Literal["high", "low"] | None = None
    priority: str | None = Field(default=None, description="Priority name (P1..P5) or id.")
    service: str = SERVICE_ID
    actor: str | None = Field(
        default=None,
        description="A user creating it in the UI; null for the service's monitoring integration.",
    )


class SigningTarget(BaseModel):
    url: str
    secrets: list[str] = Field(default_factory=list, description="Signs with each; several while rotating.")


def control_router(state: PagerDutyState, deliveries: Deliveries) -> APIRouter:
    router = APIRouter(prefix=f"{CONTROL_PREFIX}/pagerduty", tags=["sandbox control: PagerDuty UI"])

    def person(user_id: str) -> Actor:
        if user_id not in state.account.users:
            raise HTTPException(422, f"no user {user_id}")
        return Actor("user", user_id)

    def priority_id(given: str | None) -> str | None:
        if given is None:
            return None
        found = state.account.priority_named(given)
        if found is None and given not in state.account.priorities:
            raise HTTPException(422, f"no priority {given}")
        return found.id if found else given

    def answer(request: Request, incident_id: str, happened: list[Occurrence]) -> dict[str, Any]:
        links = links_for(state, request)
        with state.lock:
            bodies = [event_body(state, occurrence, links) for occurrence in happened]
            rendered = incident_json(state, state.incident(incident_id), links)
        deliveries.send_soon(bodies)
        return {"incident": rendered}

    @router.post("/incidents", status_code=201)
    async def trigger(order: Trigger, request: Request) -> dict[str, Any]:
        actor = person(order.actor) if order.actor else Actor("service", order.service)
        with state.lock:
            incident, happened = state.create_incident(
                actor,
                "website" if order.actor else "api",
                title=order.title,
                service_id=order.service,
                incident_key=order.incident_key,
                urgency=order.urgency,
                priority_id=priority_id(order.priority),
            )
        return answer(request, incident.id, happened)

    @router.post("/incidents/{incident_id}/acknowledge")
    async def acknowledge(incident_id: str, act: Act, request: Request) -> dict[str, Any]:
        return answer(request, incident_id, state.acknowledge(incident_id, person(act.actor), "website"))

    @router.post("/incidents/{incident_id}/unacknowledge")
    async def unacknowledge(incident_id: str, act: Act, request: Request) -> dict[str, Any]:
        return answer(request, incident_id, state.unacknowledge(incident_id, person(act.actor), "timeout"))

    @router.post("/incidents/{incident_id}/resolve")
    async def resolve(incident_id: str, act: Resolve, request: Request) -> dict[str, Any]:
        happened = state.resolve(incident_id, person(act.actor), "website", act.resolution)
        return answer(request, incident_id, happened)

    @router.post("/incidents/{incident_id}/reopen")
    async def reopen(incident_id: str, act: Act, request: Request) -> dict[str, Any]:
        return answer(request, incident_id, state.reopen(incident_id, person(act.actor), "website"))

    @router.post("/incidents/{incident_id}/reassign")
    async def reassign(incident_id: str, act: Reassign, request: Request) -> dict[str, Any]:
        assignees = [person(user_id).id for user_id in act.assignees]
        return answer(
            request, incident_id, state.reassign(incident_id, person(act.actor), "website", assignees)
        )

    @router.post("/incidents/{incident_id}/escalate")
    async def escalate(incident_id: str, act: Escalate, request: Request) -> dict[str, Any]:
        return answer(
            request, incident_id, state.escalate(incident_id, person(act.actor), "website", act.level)
        )

    @router.post("/incidents/{incident_id}/delegate")
    async def delegate(incident_id: str, act: Delegate, request: Request) -> dict[str, Any]:
        if act.escalation_policy not in state.account.policies:
            raise HTTPException(404, f"no escalation policy {act.escalation_policy}")
        return answer(
            request,
            incident_id,
            state.delegate(incident_id, person(act.actor), "website", act.escalation_policy),
        )

    @router.post("/incidents/{incident_id}/priority")
    async def change_priority(incident_id: str, act: ChangePriority, request: Request) -> dict[str, Any]:
        happened = state.set_priority(incident_id, person(act.actor), priority_id(act.priority))
        return answer(request, incident_id, happened)

    @router.post("/incidents/{incident_id}/notes")
    async def add_note(incident_id: str, act: AddNote, request: Request) -> dict[str, Any]:
        _, happened = state.add_note(incident_id, person(act.actor), "website", act.content)
        return answer(request, incident_id, happened)

    @router.post("/incidents/{incident_id}/responders")
    async def add_responder(incident_id: str, act: AddResponder, request: Request) -> dict[str, Any]:
        happened = state.add_responder(incident_id, person(act.actor), person(act.user).id, act.message)
        return answer(request, incident_id, happened)

    @router.put("/webhooks")
    async def signing_targets(targets: list[SigningTarget]) -> list[str]:
        """Webhook targets with every secret each signs with (the first is current), for rotation tests."""
        with state.lock:
            state.webhook_targets = [
                WebhookTarget(url=t.url, secret=t.secrets[0] if t.secrets else None) for t in targets
            ]
            state.extra_signing_secrets = {t.secrets[0]: t.secrets[1:] for t in targets if len(t.secrets) > 1}
        return [t.url for t in targets]

    return router


def control_error(error: PagerDutyError) -> HTTPException:
    """A refused UI action, as the control API reports it (409: the incident is not in a state for it)."""
    status = 404 if error.status == 404 else 409
    return HTTPException(status, {"message": error.message, "code": error.code, "errors": error.errors})
