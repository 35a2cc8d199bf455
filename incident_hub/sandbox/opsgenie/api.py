"""The Alert API v2 subset a connector uses, as `vendor/opsgenie/opsgenie-oas/swagger.json` describes it.

- Authentication: `Authorization: GenieKey <key>` (securityDefinitions `GenieKey`).
- Writes are asynchronous: `202 {result, took, requestId}` (responses `Accepted`); the outcome is read at
  `GET /v2/alerts/requests/{requestId}` (`GetRequestStatusResponse`), which answers 404 until the request
  is processed (the knob `RequestKnobs.delay_seconds`).
- Alerts are named by `identifier` with `identifierType=id|alias|tiny` (parameter `AlertIdentifierType`).
- `GET /v2/alerts` takes `query` (alert search syntax: `field:value`, `field>=value`, joined by AND),
  `offset`, `limit` (1..100, default 20), `sort` (default createdAt) and `order` (default desc).
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from incident_hub.sandbox.opsgenie.model import (
    ALIAS_MAX,
    DESCRIPTION_MAX,
    MESSAGE_MAX,
    NOTE_MAX,
    PRIORITIES,
    TAGS_MAX,
    Actor,
    Alert,
    Occurrence,
    OpsgenieError,
    unprocessable,
)
from incident_hub.sandbox.opsgenie.state import DOES_NOT_EXIST, OpsgenieState
from incident_hub.sandbox.opsgenie.webhooks import Deliveries

PREFIX = "/v2/alerts"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
IDENTIFIER_TYPES = ("id", "alias", "tiny")
SORTS: dict[str, Callable[[Alert], Any]] = {
    "createdAt": lambda a: a.created_at,
    "updatedAt": lambda a: a.updated_ns,
    "tinyId": lambda a: int(a.tiny_id),
    "alias": lambda a: a.alias,
    "message": lambda a: a.message,
    "status": lambda a: a.status,
    "acknowledged": lambda a: a.acknowledged,
    "count": lambda a: a.count,
    "lastOccurredAt": lambda a: a.last_occurred_at,
    "source": lambda a: a.source,
    "owner": lambda a: a.owner,
}
_TERM = re.compile(r"^(?P<field>[A-Za-z.]+)\s*(?P<op>>=|<=|>|<|:|=)\s*(?P<value>\S+)$")


def answer(body: dict[str, Any], status: int = 200, request_id: str | None = None) -> JSONResponse:
    """Every Opsgenie answer carries `took` (seconds) and `requestId` (BaseResponse)."""
    payload = {**body, "took": 0.004, "requestId": request_id or str(uuid.uuid4())}
    return JSONResponse(payload, status_code=status, headers={"X-Request-ID": payload["requestId"]})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_json(state: OpsgenieState, alert: Alert, *, full: bool) -> dict[str, Any]:
    """`BaseAlert` (in lists) or `Alert` (GET one: with description, details, entity, actions)."""
    report: dict[str, Any] = {}
    if alert.ack_time_ms is not None:
        report |= {"ackTime": alert.ack_time_ms, "acknowledgedBy": alert.acknowledged_by}
    if alert.close_time_ms is not None:
        report |= {"closeTime": alert.close_time_ms, "closedBy": alert.closed_by}
    body: dict[str, Any] = {
        "id": alert.id,
        "tinyId": alert.tiny_id,
        "alias": alert.alias,
        "message": alert.message,
        "status": alert.status,
        "acknowledged": alert.acknowledged,
        "isSeen": False,
        "tags": list(alert.tags),
        "snoozed": False,
        "count": alert.count,
        "lastOccurredAt": iso(alert.last_occurred_at),
        "createdAt": iso(alert.created_at),
        "updatedAt": iso(datetime.fromtimestamp(alert.updated_ns / 1e9, UTC)),
        "source": alert.source,
        "owner": alert.owner,
        "priority": alert.priority,
        "responders": [
            {"type": "team", "id": team_id, "name": state.team_name(team_id)} for team_id in alert.team_ids
        ],
        "integration": dict(alert.integration),
        "report": report,
    }
    if full:
        body |= {
            "actions": [],
            "entity": alert.entity,
            "description": alert.description,
            "details": dict(alert.details),
        }
    return body


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise OpsgenieError(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise OpsgenieError(400, "Invalid JSON body")
    return body


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise unprocessable(name, f"{name.capitalize()} can not be empty.")
        return ""
    if not isinstance(value, str):
        raise unprocessable(name, f"{name.capitalize()} must be a string.")
    return value[:limit]


def _priority(body: dict[str, Any], default: str | None = "P3") -> str:
    value = body.get("priority", default)
    if value not in PRIORITIES:
        raise unprocessable("priority", "Priority should be one of [P1, P2, P3, P4, P5].")
    return str(value)


def _identifier_type(request: Request) -> str:
    kind = request.query_params.get("identifierType", "id")
    if kind not in IDENTIFIER_TYPES:
        raise unprocessable("identifierType", "Identifier type should be one of [id, alias, tiny].")
    return kind


def _recipient_name(value: Any, kind: str, key: str = "name") -> str:
    if not isinstance(value, dict) or not isinstance(value.get(key) or value.get("id"), str):
        raise unprocessable(kind, f"{kind.capitalize()} should have an id or a {key}.")
    return str(value.get(key) or value.get("id"))


def api_router(state: OpsgenieState, deliveries: Deliveries) -> APIRouter:
    def authenticate(request: Request) -> None:
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"GenieKey {state.api_key}".encode()):
            raise OpsgenieError(401, "Could not authenticate")

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(authenticate)], tags=["Opsgenie Alert API"])

    def accepted(
        action: str, apply: Callable[[], tuple[Alert | None, str, list[Occurrence]]]
    ) -> JSONResponse:
        """202 now; the request's outcome (success, or failed with a status text) goes to its record."""
        failure = state.take_request_failure()
        if failure is not None:
            record = state.record_request(action, ok=False, status=failure)
        else:
            alert, status, happened = apply()
            ok = status != DOES_NOT_EXIST
            record = state.record_request(action, ok=ok, status=status, alert=alert)
            deliveries.send_soon(happened)
        return answer({"result": "Request will be processed"}, 202, request_id=record.id)

    def on_alert(
        identifier: str,
        request: Request,
        change: Callable[[Alert, Actor], list[Occurrence]],
        done: str,
        body: dict[str, Any],
    ) -> Callable[[], tuple[Alert | None, str, list[Occurrence]]]:
        kind = _identifier_type(request)
        actor = state.api_actor(body.get("user"), body.get("source"))

        def apply() -> tuple[Alert | None, str, list[Occurrence]]:
            with state.lock:
                alert = state.find(identifier, kind)
                if alert is None:
                    return None, DOES_NOT_EXIST, []
                return alert, done, change(alert, actor)

        return apply

    @router.post("")
    async def create_alert(request: Request) -> JSONResponse:
        body = await json_body(request)
        message = _text(body, "message", MESSAGE_MAX, required=True)
        alias = _text(body, "alias", ALIAS_MAX) or None
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise unprocessable("tags", "Tags must be a list of strings.")
        details = body.get("details") or {}
        if not isinstance(details, dict):
            raise unprocessable("details", "Details must be a map of strings.")
        responders = body.get("responders") or []
        if not isinstance(responders, list):
            raise unprocessable("responders", "Responders must be a list.")
        teams = [
            state.team_named(_recipient_name(r, "team"))
            for r in responders
            if isinstance(r, dict) and r.get("type") == "team"
        ]
        actor = state.api_actor(body.get("user"), body.get("source"))
        with state.lock:
            for name in teams:
                if name not in state.teams:
                    raise unprocessable("responders", f"Team {name} does not exist.")
        description = _text(body, "description", DESCRIPTION_MAX)
        priority = _priority(body)
        entity = _text(body, "entity", ALIAS_MAX)
        source = _text(body, "source", ALIAS_MAX)

        def apply() -> tuple[Alert | None, str, list[Occurrence]]:
            alert, status, happened = state.create_alert(
                actor,
                message=message,
                alias=alias,
                description=description,
                priority=priority,
                tags=tags[:TAGS_MAX],
                details={str(k): str(v) for k, v in details.items()},
                entity=entity,
                team_names=teams,
                source=source,
            )
            return alert, status, happened

        return accepted("Create", apply)

    @router.get("/requests/{request_id}")
    async def request_status(request_id: str) -> JSONResponse:
        with state.lock:
            record = state.requests.get(request_id)
        if record is None or datetime.now(UTC) < record.visible_at:
            raise OpsgenieError(404, "Request not found. It might not be processed, yet.")
        return answer(
            {
                "data": {
                    "success": record.is_success,
                    "action": record.action,
                    "processedAt": iso(record.processed_at),
                    "integrationId": record.integration_id,
                    "isSuccess": record.is_success,
                    "status": record.status,
                    "alertId": record.alert_id,
                    "alias": record.alias,
                }
            }
        )

    @router.get("")
    async def list_alerts(request: Request) -> JSONResponse:
        query = request.query_params
        offset = _int(query.get("offset"), 0, "offset")
        limit = _int(query.get("limit"), DEFAULT_LIMIT, "limit")
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise unprocessable("limit", f"Limit should be between 1 and {MAX_LIMIT}, offset at least 0.")
        sort, order = query.get("sort", "createdAt"), query.get("order", "desc")
        if sort not in SORTS or order not in ("asc", "desc"):
            raise unprocessable("sort", "Sort field or order is not supported.")
        matches = _matcher(query.get("query", ""))
        with state.lock:
            found = sorted(
                (a for a in state.alerts.values() if matches(a)), key=SORTS[sort], reverse=order == "desc"
            )
            page = [alert_json(state, a, full=False) for a in found[offset : offset + limit]]
        base = f"{str(request.base_url).rstrip('/')}{PREFIX}"

        def link(at: int) -> str:
            params = {k: v for k, v in query.items() if k not in ("offset", "limit")}
            return f"{base}?{urlencode({**params, 'offset': at, 'limit': limit})}"

        paging = {"first": link(0), "last": link(max(0, (len(found) - 1) // limit * limit))}
        if offset + limit < len(found):
            paging["next"] = link(offset + limit)
        if offset > 0:
            paging["prev"] = link(max(0, offset - limit))
        return answer({"data": page, "paging": paging})

    @router.get("/{identifier}")
    async def get_alert(identifier: str, request: Request) -> JSONResponse:
        kind = _identifier_type(request)
        with state.lock:
            alert = state.find(identifier, kind)
            if alert is None:
                raise OpsgenieError(404, DOES_NOT_EXIST)
            return answer({"data": alert_json(state, alert, full=True)})

    @router.delete("/{identifier}")
    async def delete_alert(identifier: str, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        return accepted("Delete", on_alert(identifier, request, state.delete, "Deleted alert", query))

    @router.post("/{identifier}/acknowledge")
    async def acknowledge(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        change = on_alert(identifier, request, state.acknowledge, "Acknowledged", body)
        return accepted("Acknowledge", change)

    @router.post("/{identifier}/unacknowledge")
    async def unacknowledge(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        change = on_alert(identifier, request, state.unacknowledge, "UnAcknowledged", body)
        return accepted("UnAcknowledge", change)

    @router.post("/{identifier}/close")
    async def close(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        return accepted("Close", on_alert(identifier, request, state.close, "Closed alert", body))

    @router.post("/{identifier}/notes")
    async def add_note(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        text = _text(body, "note", NOTE_MAX, required=True)
        change = on_alert(
            identifier, request, lambda alert, actor: state.add_note(alert, actor, text), "Added note", body
        )
        return accepted("AddNote", change)

    @router.get("/{identifier}/notes")
    async def list_notes(identifier: str, request: Request) -> JSONResponse:
        """Notes a page at a time (`limit` 1..100, default 20), `order` by time (default desc), from after
        the note whose `offset` is given (`direction=next`) or before it (`prev`)."""
        kind = _identifier_type(request)
        query = request.query_params
        limit = _int(query.get("limit"), DEFAULT_LIMIT, "limit")
        order, direction = query.get("order", "desc"), query.get("direction", "next")
        if not 1 <= limit <= MAX_LIMIT or order not in ("asc", "desc") or direction not in ("next", "prev"):
            raise unprocessable("limit", f"Limit should be between 1 and {MAX_LIMIT}.")
        with state.lock:
            alert = state.find(identifier, kind)
            if alert is None:
                raise OpsgenieError(404, DOES_NOT_EXIST)
            notes = sorted(alert.notes, key=lambda n: int(n.offset), reverse=order == "desc")
        start = query.get("offset")
        if start:
            at = next((i for i, n in enumerate(notes) if n.offset == start), None)
            if at is None:
                raise unprocessable("offset", "Offset is not valid.")
            notes = notes[at + 1 :] if direction == "next" else notes[:at][-limit:]
        page = notes[:limit]
        paging: dict[str, str] = {}
        if len(notes) > limit:
            params = {**query, "offset": page[-1].offset, "direction": "next"}
            base = f"{str(request.base_url).rstrip('/')}{PREFIX}/{identifier}/notes"
            paging["next"] = f"{base}?{urlencode(params)}"
        data = [
            {"note": n.note, "owner": n.owner, "createdAt": iso(n.created_at), "offset": n.offset}
            for n in page
        ]
        return answer({"data": data, "paging": paging})

    @router.put("/{identifier}/priority")
    async def update_priority(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        priority = _priority(body, default=None)
        change = on_alert(
            identifier,
            request,
            lambda alert, actor: state.set_priority(alert, actor, priority),
            "Updated priority",
            body,
        )
        return accepted("UpdatePriority", change)

    @router.put("/{identifier}/message")
    async def update_message(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        message = _text(body, "message", MESSAGE_MAX, required=True)
        change = on_alert(
            identifier,
            request,
            lambda alert, actor: state.set_message(alert, actor, message),
            "Updated message",
            body,
        )
        return accepted("UpdateMessage", change)

    @router.put("/{identifier}/description")
    async def update_description(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        description = _text(body, "description", DESCRIPTION_MAX, required=True)
        change = on_alert(
            identifier,
            request,
            lambda alert, actor: state.set_description(alert, actor, description),
            "Updated description",
            body,
        )
        return accepted("UpdateDescription", change)

    @router.post("/{identifier}/assign")
    async def assign(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        owner = _recipient_name(body.get("owner"), "owner", key="username")
        if owner not in state.people:
            raise unprocessable("owner", f"User {owner} does not exist.")
        change = on_alert(
            identifier, request, lambda alert, actor: state.assign(alert, actor, owner), "Assigned", body
        )
        return accepted("Assign", change)

    @router.post("/{identifier}/teams")
    async def add_team(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        team = state.team_named(_recipient_name(body.get("team"), "team"))
        if team not in state.teams:
            raise unprocessable("team", f"Team {team} does not exist.")
        change = on_alert(
            identifier, request, lambda alert, actor: state.add_team(alert, actor, team), "Added team", body
        )
        return accepted("AddTeam", change)

    @router.post("/{identifier}/escalate")
    async def escalate(identifier: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        escalation = _recipient_name(body.get("escalation"), "escalation")
        if escalation not in state.escalations:
            raise unprocessable("escalation", f"Escalation {escalation} does not exist.")
        change = on_alert(
            identifier,
            request,
            lambda alert, actor: state.escalate(alert, actor, escalation),
            "Escalated",
            body,
        )
        return accepted("EscalateToNext", change)

    return router


def _int(raw: str | None, default: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise unprocessable(name, f"{name} must be an integer.") from None


def _matcher(query: str) -> Callable[[Alert], bool]:
    """The subset of the alert search syntax the hub uses: terms joined by AND."""
    terms = [t for t in re.split(r"\s+AND\s+", query.strip(), flags=re.IGNORECASE) if t]
    checks: list[Callable[[Alert], bool]] = []
    for term in terms:
        found = _TERM.match(term.strip())
        if found is None:
            raise OpsgenieError(422, f"Invalid query: {term}")
        field, op, value = found["field"], found["op"], found["value"].strip('"')
        checks.append(_check(field, op, value))
    return lambda alert: all(check(alert) for check in checks)


def _check(field: str, op: str, value: str) -> Callable[[Alert], bool]:
    times: dict[str, Callable[[Alert], float]] = {
        # Unix time in milliseconds (alert search help: "createdAt : 1470394841148").
        "createdAt": lambda a: a.created_at.timestamp() * 1000,
        "updatedAt": lambda a: a.updated_ns / 1e6,
        "lastOccurredAt": lambda a: a.last_occurred_at.timestamp() * 1000,
    }
    if field in times:
        try:
            bound = float(value)
        except ValueError:
            raise OpsgenieError(422, f"Invalid query: {field} takes a Unix time in milliseconds") from None
        compare = {
            ">=": float.__ge__,
            ">": float.__gt__,
            "<=": float.__le__,
            "<": float.__lt__,
            ":": float.__eq__,
            "=": float.__eq__,
        }[op]
        return lambda alert: bool(compare(float(times[field](alert)), bound))
    if op not in (":", "="):
        raise OpsgenieError(422, f"Invalid query: {field} does not take {op}")
    texts: dict[str, Callable[[Alert], str]] = {
        "status": lambda a: a.status,
        "alias": lambda a: a.alias,
        "alertId": lambda a: a.id,
        "tinyId": lambda a: a.tiny_id,
        "owner": lambda a: a.owner,
        "priority": lambda a: a.priority,
        "acknowledged": lambda a: str(a.acknowledged).lower(),
    }
    if field in ("details.key", "details.value"):
        # Any of the alert's extra properties (alert search help: details.key, details.value).
        part = 0 if field == "details.key" else 1
        return lambda alert: any(pair[part] == value for pair in alert.details.items())
    if field not in texts:
        raise OpsgenieError(422, f"Invalid query: unknown field {field}")
    if field == "alias":
        # "Using alias will only retrieve an open alert with that alias" (alert search query help).
        return lambda alert: alert.alias == value and alert.status == "open"
    return lambda alert: texts[field](alert) == value
