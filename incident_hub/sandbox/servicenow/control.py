"""`/_sandbox/servicenow/...`: a person acting in ServiceNow's incident form (never the integration user).

Each action writes the incident as the form would, with the same rules as the Table API (priority from
impact and urgency, the resolve data policy), journals notes, and fires the business rule with that
person as `sys_updated_by`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from incident_hub.sandbox.common import CONTROL_PREFIX
from incident_hub.sandbox.servicenow.state import Change, ServiceNowError, ServiceNowState
from incident_hub.sandbox.servicenow.webhooks import BusinessRule

Choice = Literal["1", "2", "3"]


class Act(BaseModel):
    actor: str = Field(default="beth.anglin", description="user_name of the person using the form.")


class Open(Act):
    short_description: str = Field(min_length=1)
    description: str = ""
    impact: Choice = "3"
    urgency: Choice = "3"
    assignment_group: str | None = Field(default=None, description="Group name or sys_id.")
    correlation_id: str = ""


class SetState(Act):
    state: Literal["1", "2", "3", "6", "7", "8"]
    close_code: str | None = None
    close_notes: str | None = None
    hold_reason: str | None = None


class SetPriority(Act):
    impact: Choice
    urgency: Choice


class Assign(Act):
    assignment_group: str | None = Field(default=None, description="Group name or sys_id; empty clears.")
    assigned_to: str | None = Field(default=None, description="user_name or sys_id; empty clears.")


class Note(Act):
    text: str = Field(min_length=1)


def control_router(state: ServiceNowState, business_rule: BusinessRule) -> APIRouter:
    router = APIRouter(prefix=f"{CONTROL_PREFIX}/servicenow", tags=["sandbox control: ServiceNow UI"])

    def person(user_name: str) -> str:
        if state.user_named(user_name) is None:
            raise HTTPException(422, f"no user {user_name}")
        if user_name == state.username:
            raise HTTPException(422, "the UI control acts as a person, not the integration user")
        return user_name

    def reference(table: str, given: str, key: str) -> str:
        with state.lock:
            rows = state.tables[table]
            if given in rows or given == "":
                return given
            found = next((sys_id for sys_id, row in rows.items() if row.get(key) == given), None)
        if found is None:
            raise HTTPException(422, f"no {table} {given!r}")
        return found

    def write(actor: str, sys_id: str | None, values: dict[str, Any]) -> dict[str, Any]:
        try:
            if sys_id is None:
                change: Change = state.insert_incident(person(actor), values)
            else:
                change = state.update_incident(person(actor), sys_id, values)
        except ServiceNowError as error:
            raise HTTPException(
                404 if error.status == 404 else 409, {"message": error.message, "detail": error.detail}
            ) from None
        business_rule.fire(change)
        return {"result": change.after}

    @router.post("/incidents", status_code=201)
    async def open_incident(order: Open) -> dict[str, Any]:
        values = order.model_dump(exclude={"actor"}, exclude_none=True)
        if order.assignment_group is not None:
            values["assignment_group"] = reference("sys_user_group", order.assignment_group, "name")
        return write(order.actor, None, values)

    @router.post("/incidents/{sys_id}/state")
    async def set_state(sys_id: str, act: SetState) -> dict[str, Any]:
        return write(act.actor, sys_id, act.model_dump(exclude={"actor"}, exclude_none=True))

    @router.post("/incidents/{sys_id}/priority")
    async def set_priority(sys_id: str, act: SetPriority) -> dict[str, Any]:
        return write(act.actor, sys_id, {"impact": act.impact, "urgency": act.urgency})

    @router.post("/incidents/{sys_id}/assignment")
    async def assign(sys_id: str, act: Assign) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if act.assignment_group is not None:
            values["assignment_group"] = reference("sys_user_group", act.assignment_group, "name")
        if act.assigned_to is not None:
            values["assigned_to"] = reference("sys_user", act.assigned_to, "user_name")
        return write(act.actor, sys_id, values)

    @router.post("/incidents/{sys_id}/work_notes")
    async def add_work_note(sys_id: str, note: Note) -> dict[str, Any]:
        return write(note.actor, sys_id, {"work_notes": note.text})

    @router.post("/incidents/{sys_id}/comments")
    async def add_comment(sys_id: str, note: Note) -> dict[str, Any]:
        return write(note.actor, sys_id, {"comments": note.text})

    return router
