"""`/_sandbox/jira/...`: a person acting in Jira's UI (create, edit, assign, change priority, set a custom
field, transition, comment). Same rules and webhooks as the API, attributed to `actor`; no auth, no knobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from incident_hub.sandbox.common import CONTROL_PREFIX, WebhookSender
from incident_hub.sandbox.jira import issues
from incident_hub.sandbox.jira.api import base_url, publisher
from incident_hub.sandbox.jira.model import JiraError, JiraState, User
from incident_hub.sandbox.jira.render import View, adf_document, comment_json, issue_json


class Act(BaseModel):
    actor: str = Field(description="Account id of the person acting in Jira's UI.")


class UiFields(Act):
    """Values as a person picks them: names, account ids, plain text; custom select fields by option value."""

    summary: str | None = None
    description: str | None = None
    priority: str | None = None
    labels: list[str] | None = None
    assignee: str | None = Field(default=None, description="Account id; null unassigns (when given).")
    fields: dict[str, Any] = Field(
        default_factory=dict, description="Custom field id -> option value or text."
    )

    def rest_fields(self, state: JiraState) -> dict[str, Any]:
        """The same change in REST v3 terms."""
        given = (self.model_fields_set & set(UiFields.model_fields)) - {"actor", "fields"}
        found: dict[str, Any] = {}
        for name in given:
            value = getattr(self, name)
            if name == "description":
                found[name] = adf_document(value) if value else None
            elif name == "priority":
                found[name] = {"name": value}
            elif name == "assignee":
                found[name] = {"accountId": value} if value else None
            else:
                found[name] = value
        for field_id, value in self.fields.items():
            custom = state.custom_fields.get(field_id)
            found[field_id] = {"value": value} if custom and custom.options and value is not None else value
        return found


class UiCreate(UiFields):
    project: str = "OPS"
    issuetype: str = "Incident"
    summary: str


class UiTransition(Act):
    to: str = Field(description="A transition name or the name of its target status.")


class UiComment(Act):
    body: str


class UiPriority(Act):
    priority: str


class UiAssignee(Act):
    assignee: str | None


def control_router(state: JiraState, sender: WebhookSender) -> APIRouter:
    router = APIRouter(prefix=f"{CONTROL_PREFIX}/jira", tags=["sandbox control: Jira UI"])
    publish = publisher(state, sender)

    def person(account_id: str) -> User:
        if account_id not in state.users:
            raise JiraError(400, [f"No user with account id '{account_id}'."])
        return state.users[account_id]

    def shown(request: Request, user: User, key: str) -> dict[str, Any]:
        return issue_json(state.find_issue(key), state, View(base_url(request), "3", user.zone))

    @router.post("/issues", status_code=201)
    async def create(request: Request, action: UiCreate) -> dict[str, Any]:
        with state.lock:
            user = person(action.actor)
            fields = action.rest_fields(state)
            fields |= {"project": {"key": action.project}, "issuetype": {"name": action.issuetype}}
            issue, events = issues.create_issue(state, fields, user)
            publish(events, base_url(request))
            return shown(request, user, issue.key)

    @router.get("/issues/{key}")
    async def get(request: Request, key: str) -> dict[str, Any]:
        with state.lock:
            return shown(request, state.users[state.service_account], key)

    @router.patch("/issues/{key}")
    async def edit(request: Request, key: str, action: UiFields) -> dict[str, Any]:
        with state.lock:
            user = person(action.actor)
            issue = state.find_issue(key)
            publish(issues.edit_issue(state, issue, action.rest_fields(state), {}, user), base_url(request))
            return shown(request, user, key)

    @router.post("/issues/{key}/priority")
    async def change_priority(request: Request, key: str, action: UiPriority) -> dict[str, Any]:
        return await edit(request, key, UiFields(actor=action.actor, priority=action.priority))

    @router.post("/issues/{key}/assignee")
    async def assign(request: Request, key: str, action: UiAssignee) -> dict[str, Any]:
        return await edit(request, key, UiFields(actor=action.actor, assignee=action.assignee))

    @router.post("/issues/{key}/transitions")
    async def transition(request: Request, key: str, action: UiTransition) -> dict[str, Any]:
        with state.lock:
            user = person(action.actor)
            issue = state.find_issue(key)
            wanted = action.to.lower()
            chosen = next(
                (
                    t
                    for t in issues.available_transitions(state, issue)
                    if wanted in (t.name.lower(), state.statuses[t.to].name.lower())
                ),
                None,
            )
            if chosen is None:
                raise JiraError(400, [f"No transition to '{action.to}' from '{issue.status.name}'."])
            publish(issues.transition_issue(state, issue, chosen.id, {}, {}, user), base_url(request))
            return shown(request, user, key)

    @router.post("/issues/{key}/comments", status_code=201)
    async def add_comment(request: Request, key: str, action: UiComment) -> dict[str, Any]:
        with state.lock:
            user = person(action.actor)
            found, events = issues.add_comment(state, state.find_issue(key), adf_document(action.body), user)
            publish(events, base_url(request))
            return comment_json(found, View(base_url(request), "3", user.zone))

    @router.put("/issues/{key}/comments/{comment_id}")
    async def edit_comment(request: Request, key: str, comment_id: str, action: UiComment) -> dict[str, Any]:
        with state.lock:
            user = person(action.actor)
            issue = state.find_issue(key)
            found, events = issues.edit_comment(state, issue, comment_id, adf_document(action.body), user)
            publish(events, base_url(request))
            return comment_json(found, View(base_url(request), "3", user.zone))

    return router
