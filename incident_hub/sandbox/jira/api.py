"""The Jira Cloud platform REST API v3 subset the hub's connector uses, behind Basic auth (email and API
token). Every change made here is attributed to the signed-in account and sent out as a webhook."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response

from incident_hub.sandbox.common import WebhookSender
from incident_hub.sandbox.jira import issues
from incident_hub.sandbox.jira.issues import Event
from incident_hub.sandbox.jira.model import JiraError, JiraState, User, jira_time
from incident_hub.sandbox.jira.render import (
    View,
    comment_json,
    fields_json,
    issue_json,
    priority_json,
    project_details_json,
    transition_json,
    user_json,
)
from incident_hub.sandbox.jira.webhooks import delivery_headers, webhook_body

# Observed Jira Cloud answer to a wrong e-mail/API token pair.
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
PROPERTY_MAX_CHARACTERS = 32768


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def publisher(state: JiraState, sender: WebhookSender) -> Callable[[list[Event], str], None]:
    """Renders events at once (call it holding `state.lock`) and sends them after the response."""

    def publish(events: list[Event], base: str) -> None:
        for body in [webhook_body(event, state, base) for event in events]:
            sender.send_soon(body, delivery_headers())

    return publish


def basic_auth(state: JiraState, *, required: bool = True) -> Callable[[Request], Awaitable[User | None]]:
    async def caller(request: Request) -> User | None:
        header = request.headers.get("authorization", "")
        if not header and not required:
            return None
        scheme, _, encoded = header.partition(" ")
        try:
            email, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            email, token = "", ""
        with state.lock:
            user = state.authenticate(email, token) if scheme.lower() == "basic" else None
        if user is None:
            raise JiraError(
                401, [NOT_AUTHENTICATED], headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"}
            )
        return user

    return caller


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as error:
        raise JiraError(400, [f"Unexpected character in the request body: {error}"]) from error


def field_names(values: list[str] | None) -> list[str]:
    """Jira takes field lists repeated, comma-separated, or both."""
    return [name for value in values or [] for name in value.split(",") if name]


def api_router(state: JiraState, sender: WebhookSender) -> APIRouter:
    router = APIRouter(prefix="/rest/api/3", tags=["Jira REST v3"])
    caller = basic_auth(state)
    anyone = basic_auth(state, required=False)
    signed_in = Depends(caller)
    publish = publisher(state, sender)

    def view(request: Request, user: User) -> View:
        return View(base_url(request), "3", user.zone)

    @router.get("/serverInfo")
    async def server_info(request: Request, user: User | None = Depends(anyone)) -> dict[str, Any]:
        base = base_url(request)
        return {
            "baseUrl": base,
            "displayUrl": base,
            "version": "1001.0.0-SNAPSHOT",
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100296,
            "buildDate": "2026-11-01T00:00:00.000+0000",
            "serverTime": jira_time(state.now(), user.zone if user else ZoneInfo("UTC")),
            "scmInfo": "57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71",
            "serverTitle": "Jira",
            "serverTimeZone": "Etc/UTC",
        }

    @router.get("/myself")
    async def myself(request: Request, user: User = signed_in) -> dict[str, Any]:
        return user_json(user, view(request, user)) | {
            "locale": "en_US",
            "groups": {"size": 1, "items": []},
            "applicationRoles": {"size": 1, "items": []},
            "expand": "groups,applicationRoles",
        }

    @router.get("/priority")
    async def priorities(request: Request, user: User = signed_in) -> list[dict[str, Any]]:
        return [priority_json(p, view(request, user), full=True) for p in state.priorities.values()]

    @router.get("/field")
    async def field_list(user: User = signed_in) -> list[dict[str, Any]]:
        with state.lock:
            return fields_json(state)

    @router.get("/project/{project_id_or_key}")
    async def project(request: Request, project_id_or_key: str, user: User = signed_in) -> dict[str, Any]:
        with state.lock:
            found = state.find_project(project_id_or_key.upper()) or state.find_project(project_id_or_key)
            if found is None:
                raise JiraError(404, [f"No project could be found with key '{project_id_or_key}'."])
            return project_details_json(found, state, view(request, user))

    @router.post("/issue", status_code=201)
    async def create_issue(request: Request, user: User = signed_in) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise JiraError(400, ["Issue fields are missing."])
        properties = _properties(body.get("properties"))
        with state.lock:
            issue, events = issues.create_issue(state, body["fields"], user, body.get("update"))
            issue.properties |= properties
            publish(events, base_url(request))
            return {"id": issue.id, "key": issue.key, "self": view(request, user).rest(f"issue/{issue.id}")}

    @router.get("/issue/{issue_id_or_key}")
    async def get_issue(
        request: Request,
        issue_id_or_key: str,
        fields: Annotated[list[str] | None, Query()] = None,
        expand: str = "",
        properties: Annotated[list[str] | None, Query()] = None,
        user: User = signed_in,
    ) -> dict[str, Any]:
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            return issue_json(
                issue,
                state,
                view(request, user),
                fields=field_names(fields),
                expand=expand,
                properties=properties,
            )

    @router.put("/issue/{issue_id_or_key}", response_model=None)
    async def edit_issue(
        request: Request,
        issue_id_or_key: str,
        returnIssue: bool = False,
        expand: str = "",
        user: User = signed_in,
    ) -> dict[str, Any] | Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise JiraError(400, ["Can not deserialize the request body."])
        properties = _properties(body.get("properties"))
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            events = issues.edit_issue(state, issue, body.get("fields") or {}, body.get("update") or {}, user)
            issue.properties |= properties
            publish(events, base_url(request))
            if returnIssue:
                return issue_json(issue, state, view(request, user), expand=expand)
        return Response(status_code=204)

    @router.get("/issue/{issue_id_or_key}/transitions")
    async def transitions(
        request: Request, issue_id_or_key: str, transitionId: str | None = None, user: User = signed_in
    ) -> dict[str, Any]:
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            found = [
                transition_json(t, state, view(request, user))
                for t in issues.available_transitions(state, issue)
                if transitionId is None or t.id == transitionId
            ]
        return {"expand": "transitions", "transitions": found}

    @router.post("/issue/{issue_id_or_key}/transitions", status_code=204)
    async def do_transition(request: Request, issue_id_or_key: str, user: User = signed_in) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise JiraError(400, ["Can not deserialize the request body."])
        wanted = body.get("transition")
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            events = issues.transition_issue(
                state,
                issue,
                wanted.get("id") if isinstance(wanted, dict) else None,
                body.get("fields") or {},
                body.get("update") or {},
                user,
            )
            publish(events, base_url(request))
        return Response(status_code=204)

    @router.get("/issue/{issue_id_or_key}/comment")
    async def comments(
        request: Request,
        issue_id_or_key: str,
        startAt: int = 0,
        maxResults: int = 100,
        orderBy: str = "created",
        user: User = signed_in,
    ) -> dict[str, Any]:
        if orderBy not in ("created", "-created", "+created"):
            raise JiraError(400, [f"Ordering by '{orderBy}' is not supported."])
        with state.lock:
            found = list(state.find_issue(issue_id_or_key).comments)
            ordered = sorted(found, key=lambda c: (c.created, int(c.id)), reverse=orderBy == "-created")
            page = ordered[startAt : startAt + maxResults]
            return {
                "startAt": startAt,
                "maxResults": maxResults,
                "total": len(found),
                "comments": [comment_json(c, view(request, user)) for c in page],
            }

    @router.post("/issue/{issue_id_or_key}/comment", status_code=201)
    async def add_comment(request: Request, issue_id_or_key: str, user: User = signed_in) -> dict[str, Any]:
        body = await json_body(request)
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            comment, events = issues.add_comment(
                state, issue, body.get("body") if isinstance(body, dict) else None, user
            )
            publish(events, base_url(request))
            return comment_json(comment, view(request, user))

    @router.get("/issue/{issue_id_or_key}/comment/{comment_id}")
    async def comment(
        request: Request, issue_id_or_key: str, comment_id: str, user: User = signed_in
    ) -> dict[str, Any]:
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            found = next((c for c in issue.comments if c.id == comment_id), None)
            if found is None:
                raise JiraError(404, [f"Can not find a comment for the id: {comment_id}."])
            return comment_json(found, view(request, user))

    @router.put("/issue/{issue_id_or_key}/comment/{comment_id}")
    async def edit_comment(
        request: Request, issue_id_or_key: str, comment_id: str, user: User = signed_in
    ) -> dict[str, Any]:
        body = await json_body(request)
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            text = body.get("body") if isinstance(body, dict) else None
            found, events = issues.edit_comment(state, issue, comment_id, text, user)
            publish(events, base_url(request))
            return comment_json(found, view(request, user))

    @router.get("/issue/{issue_id_or_key}/properties")
    async def property_keys(request: Request, issue_id_or_key: str, user: User = signed_in) -> dict[str, Any]:
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            rest = view(request, user).rest
            return {
                "keys": [
                    {"self": rest(f"issue/{issue.id}/properties/{k}"), "key": k} for k in issue.properties
                ]
            }

    @router.get("/issue/{issue_id_or_key}/properties/{property_key}")
    async def get_property(issue_id_or_key: str, property_key: str, user: User = signed_in) -> dict[str, Any]:
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            if property_key not in issue.properties:
                raise JiraError(404, [f"The property with key '{property_key}' does not exist."])
            return {"key": property_key, "value": issue.properties[property_key]}

    @router.put("/issue/{issue_id_or_key}/properties/{property_key}")
    async def set_property(
        request: Request, issue_id_or_key: str, property_key: str, user: User = signed_in
    ) -> Response:
        raw = await request.body()
        if len(raw.decode(errors="replace")) > PROPERTY_MAX_CHARACTERS:
            raise JiraError(400, [f"The property value exceeds {PROPERTY_MAX_CHARACTERS} characters."])
        if len(property_key) > 255:
            raise JiraError(400, ["The property key exceeds 255 characters."])
        value = await json_body(request)
        with state.lock:
            issue = state.find_issue(issue_id_or_key)
            created = property_key not in issue.properties
            issue.properties[property_key] = value
        # Setting an entity property is not an issue edit: no changelog, no issue_updated webhook.
        return Response(status_code=201 if created else 200)

    return router


def _properties(given: Any) -> dict[str, Any]:
    """`properties` of a create or edit: `[{"key": ..., "value": ...}]`, set with the change."""
    if given is None:
        return {}
    if not isinstance(given, list) or not all(isinstance(p, dict) and "key" in p for p in given):
        raise JiraError(400, ["Issue properties must be a list of {key, value}."])
    return {str(p["key"]): p.get("value") for p in given}
