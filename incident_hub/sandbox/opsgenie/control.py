"""`/_sandbox/opsgenie/...`: a person acting in Opsgenie's web UI, and the request-processing knob.

Each action changes the alert as Opsgenie would and sends its webhook with that person (`actor`, a
username such as `mia@example.com`) as `alert.username` and `source.type` "web". Only what the UI offers:
create (a monitoring tool or a person; with an alias, an alert that fires again), acknowledge,
unacknowledge, close, add a note, change priority, assign, take ownership, add a team, delete.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from incident_hub.sandbox.common import CONTROL_PREFIX
from incident_hub.sandbox.opsgenie.api import alert_json
from incident_hub.sandbox.opsgenie.model import Actor, Alert, Occurrence, OpsgenieError
from incident_hub.sandbox.opsgenie.state import OpsgenieState, RequestKnobs
from incident_hub.sandbox.opsgenie.webhooks import Deliveries


class Act(BaseModel):
    actor: str = Field(
        description="Username of the person acting in Opsgenie's UI.", examples=["mia@example.com"]
    )


class NewAlert(BaseModel):
    message: str = Field(min_length=1, max_length=130)
    alias: str | None = None
    description: str = ""
    priority: Literal["P1", "P2", "P3", "P4", "P5"] = "P3"
    teams: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    actor: str | None = Field(default=None, description="A person creating it in the UI; null: a monitor.")


class AddNote(Act):
    note: str = Field(min_length=1)


class ChangePriority(Act):
    priority: Literal["P1", "P2", "P3", "P4", "P5"]


class Assign(Act):
    owner: str = Field(description="Username of the new owner; the actor's own takes ownership.")


class AddTeam(Act):
    team: str


class RequestSettings(BaseModel):
    delay_seconds: float = Field(default=0.0, ge=0, description="Request status answers 404 this long.")
    fail_next: list[str] = Field(
        default_factory=list, description="Status texts the next asynchronous requests end failed with."
    )


def control_router(state: OpsgenieState, deliveries: Deliveries) -> APIRouter:
    router = APIRouter(prefix=f"{CONTROL_PREFIX}/opsgenie", tags=["sandbox control: Opsgenie UI"])

    def person(username: str) -> Actor:
        try:
            return state.person(username)
        except OpsgenieError as error:
            raise HTTPException(422, error.message) from None

    def alert(alert_id: str) -> Alert:
        found = state.find(alert_id)
        if found is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return found

    def done(alert_id: str, happened: list[Occurrence]) -> dict[str, Any]:
        deliveries.send_soon(happened)
        with state.lock:
            current = state.alerts.get(alert_id)
            return {"data": alert_json(state, current, full=True) if current else None}

    @router.post("/alerts", status_code=201)
    async def create(order: NewAlert) -> dict[str, Any]:
        actor = person(order.actor) if order.actor else Actor("api", "Prometheus", "", "prometheus")
        try:
            created, _, happened = state.create_alert(
                actor,
                message=order.message,
                alias=order.alias,
                description=order.description,
                priority=order.priority,
                tags=order.tags,
                team_names=order.teams,
                source="prometheus" if order.actor is None else "",
            )
        except OpsgenieError as error:
            raise HTTPException(422, error.message) from None
        return done(created.id, happened)

    @router.post("/alerts/{alert_id}/acknowledge")
    async def acknowledge(alert_id: str, act: Act) -> dict[str, Any]:
        return done(alert_id, state.acknowledge(alert(alert_id), person(act.actor)))

    @router.post("/alerts/{alert_id}/unacknowledge")
    async def unacknowledge(alert_id: str, act: Act) -> dict[str, Any]:
        return done(alert_id, state.unacknowledge(alert(alert_id), person(act.actor)))

    @router.post("/alerts/{alert_id}/close")
    async def close(alert_id: str, act: Act) -> dict[str, Any]:
        return done(alert_id, state.close(alert(alert_id), person(act.actor)))

    @router.post("/alerts/{alert_id}/notes")
    async def add_note(alert_id: str, act: AddNote) -> dict[str, Any]:
        return done(alert_id, state.add_note(alert(alert_id), person(act.actor), act.note))

    @router.post("/alerts/{alert_id}/priority")
    async def change_priority(alert_id: str, act: ChangePriority) -> dict[str, Any]:
        return done(alert_id, state.set_priority(alert(alert_id), person(act.actor), act.priority))

    @router.post("/alerts/{alert_id}/assign")
    async def assign(alert_id: str, act: Assign) -> dict[str, Any]:
        return done(alert_id, state.assign(alert(alert_id), person(act.actor), person(act.owner).username))

    @router.post("/alerts/{alert_id}/teams")
    async def add_team(alert_id: str, act: AddTeam) -> dict[str, Any]:
        try:
            happened = state.add_team(alert(alert_id), person(act.actor), act.team)
        except OpsgenieError as error:
            raise HTTPException(422, error.message) from None
        return done(alert_id, happened)

    @router.delete("/alerts/{alert_id}")
    async def delete(alert_id: str, act: Act) -> dict[str, Any]:
        return done(alert_id, state.delete(alert(alert_id), person(act.actor)))

    @router.put("/requests")
    async def request_settings(settings: RequestSettings) -> RequestSettings:
        """How asynchronous requests end: a delay before their status shows, and failures to come."""
        with state.lock:
            state.request_knobs = RequestKnobs(settings.delay_seconds, list(settings.fail_next))
        return settings

    return router
