"""The REST API v2 subset a connector uses: incidents, notes, log entries, and the account's reference data.

Requests and responses follow `vendor/pagerduty/rest-api-v2.openapiv3.json`. Authentication is
`Authorization: Token token=<key>`; writes name the acting user by email in the `From` header, and that
user is the `agent` of the webhooks they cause. Collections use classic pagination (`limit`, `offset`,
`more`, `total`; developer-docs `docs/REST-API/09-Pagination.md`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from incident_hub.sandbox.pagerduty.account import ABILITIES, Links
from incident_hub.sandbox.pagerduty.model import (
    Actor,
    Incident,
    Occurrence,
    PagerDutyError,
    invalid,
    not_found,
)
from incident_hub.sandbox.pagerduty.render import event_body, incident_json, log_entry_json, note_json
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.pagerduty.webhooks import Deliveries

MAX_LIMIT = 100
DEFAULT_LIMIT = 25
# "the sum of the offset and limit parameters cannot exceed 10000" (docs/REST-API/09-Pagination.md).
MAX_POSITION = 10_000
STATUSES = ("triggered", "acknowledged", "resolved")
URGENCIES = ("high", "low")


def links_for(state: PagerDutyState, request: Request) -> Links:
    return Links(api=str(request.base_url).rstrip("/"), web=f"https://{state.subdomain}.pagerduty.com")


def respond(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise invalid("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    return body


def requester(state: PagerDutyState, request: Request) -> Actor:
    """The user named by the `From` header, which PagerDuty requires on incident writes."""
    email = request.headers.get("from")
    if not email:
        raise invalid('You must specify a user\'s email address in the "From" header to perform this action')
    user = state.account.user_by_email(email)
    if user is None:
        raise PagerDutyError(400, "Requester User Not Found", 1008)
    return Actor("user", user.id)


def page(
    request: Request,
    items: Sequence[Any],
    wrapper: str,
    render: Callable[[Any], dict[str, Any]] | None = None,
) -> JSONResponse:
    """One page of a collection: `{wrapper: [...], "limit", "offset", "more", "total"}`; `render` (when
    given) turns the items of the page, and only those, into JSON."""
    limit = min(_int_param(request, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    offset = _int_param(request, "offset", 0)
    if limit < 1 or offset < 0 or offset + limit > MAX_POSITION:
        raise invalid(f"Offset plus limit must be between 1 and {MAX_POSITION}")
    chunk = items[offset : offset + limit]
    # `total` is null unless asked for with total=true (Pagination doc).
    total = len(items) if request.query_params.get("total", "").lower() == "true" else None
    return respond(
        {
            wrapper: [render(item) for item in chunk] if render else list(chunk),
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(items),
            "total": total,
        }
    )


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        raise PagerDutyError(400, "Invalid time values in 'since' and/or 'until' parameters", 2004) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(request: Request) -> tuple[datetime | None, datetime | None]:
    """GET /incidents' created_at window: `date_range=all` ignores it, else it defaults to one month."""
    if request.query_params.get("date_range") == "all":
        return None, None
    until = _time_param(request, "until") or datetime.now(UTC)
    since = _time_param(request, "since") or until - timedelta(days=30)
    if since > until:
        raise PagerDutyError(400, "Invalid Query Date Range", 2005)
    return since, until


def _sorted(incidents: list[Incident], sort_by: str | None) -> list[Incident]:
    keys: dict[str, Callable[[Incident], Any]] = {
        "incident_number": lambda i: i.number,
        "created_at": lambda i: i.created_at,
        "resolved_at": lambda i: i.resolved_at or datetime.max.replace(tzinfo=UTC),
        "urgency": lambda i: URGENCIES.index(i.urgency),
    }
    ordered = sorted(incidents, key=keys["created_at"])
    # Up to two "field[:asc|desc]" separated by commas; apply the last first so the first one wins.
    for part in reversed([p for p in (sort_by or "").split(",") if p][:2]):
        name, _, direction = part.partition(":")
        if name not in keys:
            raise invalid(f"sort_by field {name} is not supported")
        ordered.sort(key=keys[name], reverse=direction == "desc")
    return ordered


def rest_router(state: PagerDutyState, deliveries: Deliveries) -> APIRouter:
    def authenticate(request: Request) -> None:
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Token token={state.api_token}".encode()):
            raise PagerDutyError(401, "Authentication failed", 2006)

    router = APIRouter(dependencies=[Depends(authenticate)], tags=["PagerDuty REST API v2"])

    def send(request: Request, happened: list[Occurrence]) -> None:
        links = links_for(state, request)
        with state.lock:
            bodies = [event_body(state, occurrence, links) for occurrence in happened]
        deliveries.send_soon(bodies)

    @router.get("/abilities")
    async def abilities() -> JSONResponse:
        return respond({"abilities": ABILITIES})

    @router.get("/priorities")
    async def priorities(request: Request) -> JSONResponse:
        links = links_for(state, request)
        return page(request, [p.render(links) for p in state.account.priorities.values()], "priorities")

    @router.get("/services/{service_id}")
    async def service(service_id: str, request: Request) -> JSONResponse:
        if service_id not in state.account.services:
            raise not_found("Service")
        found = state.account.services[service_id]
        return respond({"service": found.render(links_for(state, request), state.account)})

    @router.get("/escalation_policies/{policy_id}")
    async def escalation_policy(policy_id: str, request: Request) -> JSONResponse:
        if policy_id not in state.account.policies:
            raise not_found("Escalation Policy")
        found = state.account.policies[policy_id]
        return respond({"escalation_policy": found.render(links_for(state, request), state.account)})

    @router.get("/users/{user_id}")
    async def user(user_id: str, request: Request) -> JSONResponse:
        if user_id not in state.account.users:
            raise not_found("User")
        return respond({"user": state.account.users[user_id].render(links_for(state, request))})

    @router.post("/incidents")
    async def create_incident(request: Request) -> JSONResponse:
        actor = requester(state, request)
        fields = (await json_body(request)).get("incident")
        if not isinstance(fields, dict) or fields.get("type") != "incident" or not fields.get("title"):
            raise invalid('incident must have type "incident", a title and a service')
        if fields.get("assignments") and fields.get("escalation_policy"):
            # "Cannot be specified if an escalation policy is given" (POST /incidents, assignments).
            raise invalid("Specify assignments or an escalation policy, not both")
        urgency = fields.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise invalid("urgency must be high or low")
        details = (fields.get("body") or {}).get("details")
        with state.lock:
            incident, happened = state.create_incident(
                actor,
                "api",
                title=str(fields["title"]),
                service_id=_ref_id(fields.get("service")),
                incident_key=fields.get("incident_key"),
                urgency=urgency,
                priority_id=_priority(state, fields["priority"]) if fields.get("priority") else None,
                details=details if isinstance(details, str) else json.dumps(details) if details else None,
                policy_id=_policy(state, fields["escalation_policy"])
                if fields.get("escalation_policy")
                else None,
                assignee_ids=_assignees(state, fields.get("assignments") or []),
            )
            rendered = incident_json(state, incident, links_for(state, request))
        send(request, happened)
        return respond({"incident": rendered}, 201)

    @router.get("/incidents")
    async def list_incidents(request: Request) -> JSONResponse:
        query = request.query_params
        since, until = _window(request)
        statuses, services = query.getlist("statuses[]"), query.getlist("service_ids[]")
        urgencies, users = query.getlist("urgencies[]"), query.getlist("user_ids[]")
        key = query.get("incident_key")
        links = links_for(state, request)
        with state.lock:
            found = [
                i
                for i in state.incidents.values()
                if (since is None or i.created_at >= since)
                and (until is None or i.created_at <= until)
                and (not statuses or i.status in statuses)
                and (not services or i.service_id in services)
                and (not urgencies or i.urgency in urgencies)
                and (not users or any(u in users for u, _ in i.assignments))
                and (key is None or i.incident_key == key)
            ]
            ordered = _sorted(found, query.get("sort_by"))
            return page(request, ordered, "incidents", lambda i: incident_json(state, i, links))

    @router.get("/incidents/{incident_id}")
    async def get_incident(incident_id: str, request: Request) -> JSONResponse:
        with state.lock:
            incident = state.incident(incident_id)
            rendered = incident_json(state, incident, links_for(state, request))
            # "The additional incident body details. Only returned if the include[]=body query parameter
            # is provided" (Incident.body).
            if "body" in request.query_params.getlist("include[]"):
                rendered["body"] = {"type": "incident_body", "details": incident.details or ""}
        return respond({"incident": rendered})

    @router.put("/incidents/{incident_id}")
    async def update_incident(incident_id: str, request: Request) -> JSONResponse:
        actor = requester(state, request)
        fields = (await json_body(request)).get("incident")
        if not isinstance(fields, dict) or fields.get("type") not in ("incident", "incident_reference"):
            raise invalid('incident must have type "incident" or "incident_reference"')
        with state.lock:
            happened = _apply_update(state, state.incident(incident_id), actor, fields)
            rendered = incident_json(state, state.incident(incident_id), links_for(state, request))
        send(request, happened)
        return respond({"incident": rendered})

    @router.get("/incidents/{incident_id}/notes")
    async def list_notes(incident_id: str, request: Request) -> JSONResponse:
        links = links_for(state, request)
        with state.lock:
            return respond({"notes": [note_json(state, n, links) for n in state.incident(incident_id).notes]})

    @router.post("/incidents/{incident_id}/notes")
    async def add_note(incident_id: str, request: Request) -> JSONResponse:
        actor = requester(state, request)
        note = (await json_body(request)).get("note")
        if not isinstance(note, dict) or not isinstance(note.get("content"), str) or not note["content"]:
            raise invalid("note.content is required")
        with state.lock:
            created, happened = state.add_note(incident_id, actor, "api", note["content"])
            rendered = note_json(state, created, links_for(state, request))
        send(request, happened)
        # createIncidentNote documents 200 (not 201) for "The new note."
        return respond({"note": rendered})

    @router.get("/log_entries")
    async def log_entries(request: Request) -> JSONResponse:
        return _log_page(state, request, None)

    @router.get("/incidents/{incident_id}/log_entries")
    async def incident_log_entries(incident_id: str, request: Request) -> JSONResponse:
        state.incident(incident_id)
        return _log_page(state, request, incident_id)

    return router


def _log_page(state: PagerDutyState, request: Request, incident_id: str | None) -> JSONResponse:
    """Log entries, newest first, optionally within `since` <= created_at < `until`."""
    since, until = _time_param(request, "since"), _time_param(request, "until")
    links = links_for(state, request)
    with state.lock:
        entries = [
            log_entry_json(state, e, links)
            for e in reversed(state.log)
            if (incident_id is None or e.incident_id == incident_id)
            and (since is None or e.created_at >= since)
            and (until is None or e.created_at < until)
        ]
    return page(request, entries, "log_entries")


def _apply_update(
    state: PagerDutyState, incident: Incident, actor: Actor, fields: dict[str, Any]
) -> list[Occurrence]:
    """PUT /incidents/{id}: check every field first, then change; a resolved incident reopens first."""
    status = fields.get("status")
    if status is not None and status not in STATUSES:
        raise invalid("status must be triggered, acknowledged or resolved")
    if status == "triggered" and incident.status == "acknowledged":
        # The API reopens resolved incidents to "triggered" (PUT /incidents/{id}, status) but offers no
        # way to unacknowledge one; that happens only when the acknowledgement times out.
        raise invalid("An acknowledged incident cannot be set back to triggered")
    urgency = fields.get("urgency")
    if urgency is not None and urgency not in URGENCIES:
        raise invalid("urgency must be high or low")
    priority_id = _priority(state, fields["priority"]) if fields.get("priority") is not None else None
    policy_id = _policy(state, fields["escalation_policy"]) if fields.get("escalation_policy") else None
    assignees = _assignees(state, fields.get("assignments") or [])
    level = fields.get("escalation_level")
    levels = len(state.account.policies[policy_id or incident.policy_id].levels)
    if level is not None and (
        not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= levels
    ):
        raise PagerDutyError(400, "Cannot Escalate", 1006, [f"escalation_level must be 1 to {levels}"])
    title = fields.get("title")
    if title is not None and (not isinstance(title, str) or not title):
        raise invalid("title must be a non-empty string")

    happened: list[Occurrence] = []
    if incident.status == "resolved" and status in ("triggered", "acknowledged"):
        happened += state.reopen(incident.id, actor, "api", status)
    if title is not None:
        happened += state.set_title(incident.id, title)
    if urgency is not None:
        happened += state.set_urgency(incident.id, actor, "api", urgency)
    if "priority" in fields:
        happened += state.set_priority(incident.id, actor, priority_id)
    if policy_id is not None:
        happened += state.delegate(incident.id, actor, "api", policy_id)
    if assignees:
        happened += state.reassign(incident.id, actor, "api", assignees)
    if level is not None:
        happened += state.escalate(incident.id, actor, "api", level)
    if status == "acknowledged" and incident.status != "acknowledged":
        happened += state.acknowledge(incident.id, actor, "api")
    if status == "resolved":
        resolution = fields.get("resolution")
        happened += state.resolve(
            incident.id, actor, "api", resolution if isinstance(resolution, str) else None
        )
    return happened


def _ref_id(reference: Any) -> str:
    if not isinstance(reference, dict) or not isinstance(reference.get("id"), str):
        raise invalid("A reference must be an object with an id")
    return str(reference["id"])


def _priority(state: PagerDutyState, given: Any) -> str:
    # "a priority object or a string matching a priority name" (PUT /incidents/{id}, priority).
    found = state.account.priority_named(given) if isinstance(given, str) else None
    priority_id = found.id if found else _ref_id(given) if isinstance(given, dict) else ""
    if priority_id not in state.account.priorities:
        raise PagerDutyError(400, "Invalid Priority", 1020)
    return priority_id


def _policy(state: PagerDutyState, given: Any) -> str:
    policy_id = _ref_id(given)
    if policy_id not in state.account.policies:
        raise PagerDutyError(400, "Escalation Policy Not Found", 1014)
    return policy_id


def _assignees(state: PagerDutyState, assignments: Any) -> list[str]:
    if not isinstance(assignments, list):
        raise invalid("assignments must be an array")
    ids = [_ref_id(a.get("assignee") if isinstance(a, dict) else None) for a in assignments]
    if any(user_id not in state.account.users for user_id in ids):
        raise PagerDutyError(400, "Assigned To User Not Found", 1007)
    return ids
