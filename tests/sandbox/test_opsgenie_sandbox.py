"""Contract tests of the Opsgenie sandbox, driven by the connector (the real `opsgenie-sdk`) over HTTPS.

Every request the sandbox receives and every response it gives is checked against Opsgenie's own Swagger
2.0 document (`tests/vendor/opsgenie/opsgenie-oas/swagger.json`). openapi-core reads OpenAPI 3 only,
so the check is done here: the operation is found by path template and method, its parameters are checked
by their Swagger `type`/`enum`/`minimum`/`maximum`, and bodies are validated with jsonschema (draft 4, the
dialect of Swagger 2.0 schemas) against `#/definitions/...` of the same document. Places where the spec
contradicts Opsgenie's documented answers are listed in `SPEC_QUIRKS`. Webhooks are checked against the
documented and captured payloads (`webhook-examples/`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incident_hub.connectors.base import ConnectorConfig, OutboundNote
from incident_hub.connectors.opsgenie import OpsgenieConnector
from incident_hub.model import ExternalRef, Incident, Severity, Status
from incident_hub.sandbox.common import CONTROL_PREFIX, Sandbox
from incident_hub.sandbox.opsgenie import OpsgenieState, opsgenie_sandbox
from incident_hub.sync.retry import DeliveryError, PermanentDeliveryError
from tests.support import VENDOR, Received, Receiver

OPSGENIE = VENDOR / "opsgenie"
SPEC = OPSGENIE / "opsgenie-oas" / "swagger.json"
EXAMPLES = OPSGENIE / "webhook-examples"
KEY, SECRET = "eb243592-faa2-4ba2-a551q-1afdf565c889", "hub-webhook-secret"
MIA, SAM = "mia@example.com", "sam@example.com"


# ---- the vendor's document ----------------------------------------------------------------------------


@functools.cache
def swagger() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC.read_text())
    return document


@functools.cache
def registry() -> Registry:
    return Registry().with_resource("swagger.json", Resource.from_contents(swagger(), DRAFT4))


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A `#/parameters/...` or `#/responses/...` reference, followed."""
    while "$ref" in node:
        target: Any = swagger()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@dataclass(frozen=True)
class Quirk:
    """A place where the spec contradicts Opsgenie's documented behaviour, matched on a schema error."""

    where: str
    matches: Callable[[str, str, jsonschema.ValidationError], bool]


# None of the sandbox's exchanges needs one. Differences between the spec and the docs that validation
# does not see (schemas leave additionalProperties open), kept here for the reader:
# - definitions/AlertRequestStatus has no `success`; the docs' request-status samples carry it beside
#   `isSuccess` (docs.opsgenie.com Alert API, "Get Request Status"). The sandbox sends both.
# - definitions/Responder names `discriminator: type`, which draft 4 ignores: a team responder's `name`
#   (definitions/TeamResponder) is not checked. The SDK drops it when deserialising.
# - definitions/TeamRecipient, UserRecipient, EscalationRecipient require `type` through Recipient; the
#   SDK's models of them serialise without it (test_sdk_recipient_models_break_the_spec below).
SPEC_QUIRKS: list[Quirk] = []


def _unexplained(operation: str, where: str, error: jsonschema.ValidationError) -> bool:
    return not any(quirk.matches(operation, where, error) for quirk in SPEC_QUIRKS)


def validate(schema: dict[str, Any], instance: Any, operation: str, where: str) -> list[str]:
    validator = jsonschema.Draft4Validator({"$ref": "swagger.json#", **_rebased(schema)}, registry=registry())
    return [
        f"{operation} {where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
        if _unexplained(operation, where, e)
    ]


def _rebased(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema from the document with its local `#/...` refs pointing into the registered document."""
    text = json.dumps(schema).replace('"$ref": "#/', '"$ref": "swagger.json#/')
    rebased: dict[str, Any] = json.loads(text)
    return rebased


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """The spec operation for a request, preferring literal segments (`requests`) over `{identifier}`."""
    segments = path.strip("/").split("/")
    best: tuple[int, str, dict[str, Any], dict[str, str]] | None = None
    for template, item in swagger()["paths"].items():
        parts = template.strip("/").split("/")
        if len(parts) != len(segments) or method.lower() not in item:
            continue
        values: dict[str, str] = {}
        literal = 0
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                values[part.strip("{}")] = segment
            elif part == segment:
                literal += 1
            else:
                break
        else:
            if best is None or literal > best[0]:
                best = (literal, template, item[method.lower()], values)
    return None if best is None else (best[1], best[2], best[3])


def _parameter_problems(spec: dict[str, Any], value: str, name: str) -> list[str]:
    problems = []
    kind = spec.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return [f"{name}={value!r} is not an integer"]
        number = int(value)
        if "minimum" in spec and number < spec["minimum"]:
            problems.append(f"{name}={number} < minimum {spec['minimum']}")
        if "maximum" in spec and number > spec["maximum"]:
            problems.append(f"{name}={number} > maximum {spec['maximum']}")
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{name}={value!r} not in {spec['enum']}")
    return problems


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    request_body: bytes
    status: int = 0
    response_body: bytes = b""


@dataclass
class Recorder:
    """An ASGI wrapper around the sandbox app keeping every vendor API exchange, bodies included."""

    app: ASGIApp
    exchanges: list[Exchange] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], scope["path"], scope.get("query_string", b"").decode(), b"")
        self.exchanges.append(exchange)

        async def recording_receive() -> Message:
            message = await receive()
            exchange.request_body += message.get("body", b"")
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif message["type"] == "http.response.body":
                exchange.response_body += message.get("body", b"")
            await send(message)

        await self.app(scope, recording_receive, recording_send)

    def violations(self) -> list[str]:
        found: list[str] = []
        for exchange in self.exchanges:
            label = f"{exchange.method} {exchange.path} -> {exchange.status}"
            matched = operation_for(exchange.method, exchange.path)
            if matched is None:
                found.append(f"{label}: no such operation in the spec")
                continue
            _, operation, _ = matched
            query = dict(parse_qsl(exchange.query, keep_blank_values=True))
            body_schema: dict[str, Any] | None = None
            for parameter in map(resolve, operation.get("parameters", [])):
                if parameter["in"] == "query":
                    if parameter["name"] in query:
                        found += [
                            f"{label}: {p}"
                            for p in _parameter_problems(
                                parameter, query.pop(parameter["name"]), parameter["name"]
                            )
                        ]
                    elif parameter.get("required"):
                        found.append(f"{label}: query parameter {parameter['name']} is required")
                elif parameter["in"] == "body":
                    body_schema = parameter["schema"]
            found += [f"{label}: query parameter {name} is not in the spec" for name in query]
            if body_schema is not None and exchange.method in ("POST", "PUT", "PATCH"):
                found += validate(body_schema, json.loads(exchange.request_body or b"{}"), label, "request")
            responses = operation["responses"]
            answer = resolve(responses.get(str(exchange.status)) or responses.get("default") or {})
            if not answer:
                found.append(f"{label}: status {exchange.status} is not documented")
            elif "schema" in answer:
                found += validate(answer["schema"], json.loads(exchange.response_body), label, "response")
        return found


# ---- fixtures -----------------------------------------------------------------------------------------


@dataclass
class Opsgenie:
    sandbox: Sandbox
    state: OpsgenieState
    recorder: Recorder
    connector: OpsgenieConnector
    person: httpx.Client

    def act(self, path: str, actor: str = MIA, **body: Any) -> dict[str, Any]:
        """A person in Opsgenie's UI."""
        response = self.person.post(path, json={"actor": actor} | body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["data"]
        return answer


@pytest.fixture
def start(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Opsgenie]]:
    monkeypatch.setenv("OG_KEY", KEY)
    with ExitStack() as stack:

        def start_(**sandbox_options: Any) -> Opsgenie:
            app, state = opsgenie_sandbox(KEY, SECRET, receiver.url, **sandbox_options)
            recorder = Recorder(app)
            # The recorder sits outside the sandbox's own middleware: injected failures are recorded too.
            app.add_middleware(_Outermost, recorder=recorder)
            running = stack.enter_context(Sandbox(app, state))
            connector = OpsgenieConnector(
                ConnectorConfig(
                    id="opsgenie",
                    kind="opsgenie",
                    base_url=running.url,
                    credentials={"env": "OG_KEY"},  # type: ignore[arg-type]
                    ca_bundle=running.ca_bundle,
                    timeout_seconds=2,
                    options={"request_timeout_seconds": 2},
                )
            )
            stack.callback(lambda: asyncio.run(connector.close()))
            trust = ssl.create_default_context(cafile=str(running.ca_bundle))
            person = stack.enter_context(
                httpx.Client(base_url=f"{running.url}/_sandbox/opsgenie", verify=trust, timeout=10)
            )
            return Opsgenie(running, state, recorder, connector, person)

        yield start_


class _Outermost:
    """Hands every request to the recorder, which calls the rest of the stack."""

    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        recorder.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.recorder(scope, receive, send)


@pytest.fixture
def og(start: Callable[..., Opsgenie]) -> Opsgenie:
    return start()


def incident(**changes: Any) -> Incident:
    example = Incident.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    values = {"id": uuid.uuid4(), "status": Status.OPEN, "assigned_team": None, **changes}
    return Incident.model_validate(example).model_copy(update=values)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def webhooks(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.wait_for(count)]


def example(*path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXAMPLES.joinpath(*path).read_text())
    return loaded


# ---- the Alert API, through the connector and the SDK --------------------------------------------------


def test_every_call_of_an_alerts_life_conforms_to_the_spec(og: Opsgenie, receiver: Receiver) -> None:
    connector = og.connector
    made = incident(severity=Severity.SEV2_HIGH, description="p99 4s")
    created = run(connector.create(made, {"priority": "P2", "team": "payments", "message": made.title}))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)
    for fields in (
        {"status": "acknowledged"},
        {"status": "open", "priority": "P1", "message": "Checkout API 502s (EU)", "description": "EU only"},
        {"team": "platform"},
    ):
        run(connector.update(ref, fields))
    run(connector.add_note(ref, OutboundNote(body="[jira] alice: rolling back")))
    escalating = OpsgenieConnector(
        connector.config.model_copy(update={"options": {"escalations": {"payments": "payments_escalation"}}})
    )
    run(escalating.update(ref, {"team": "payments"}))
    run(escalating.close())
    assigning = OpsgenieConnector(connector.config.model_copy(update={"options": {"users": {"mia": MIA}}}))
    run(assigning.update(ref, {"owner": "mia"}))
    run(assigning.close())
    run(connector.update(ref, {"status": "closed"}))
    reopened = run(connector.update(ref, {"status": "open"}))
    assert run(connector.find(made)) is not None
    run(connector.fetch(ExternalRef(connector_id="opsgenie", external_id=reopened.external_id)))

    async def changed() -> int:
        return len([c async for c in connector.list_changed(datetime(2020, 1, 1, tzinfo=UTC))])

    assert run(changed()) == 2
    assert run(connector.health()).ok

    alert = og.state.alerts[created.external_id]
    assert (alert.status, alert.priority, alert.message, alert.description, alert.owner) == (
        "closed",
        "P1",
        "Checkout API 502s (EU)",
        "EU only",
        MIA,
    )
    assert [og.state.team_name(t) for t in alert.team_ids] == ["payments", "platform"]
    operations = {operation_for(e.method, e.path)[0] for e in og.recorder.exchanges}  # type: ignore[index]
    assert operations >= {
        "/v2/alerts",
        "/v2/alerts/requests/{requestId}",
        "/v2/alerts/{identifier}",
        "/v2/alerts/{identifier}/acknowledge",
        "/v2/alerts/{identifier}/unacknowledge",
        "/v2/alerts/{identifier}/close",
        "/v2/alerts/{identifier}/notes",
        "/v2/alerts/{identifier}/priority",
        "/v2/alerts/{identifier}/message",
        "/v2/alerts/{identifier}/description",
        "/v2/alerts/{identifier}/teams",
        "/v2/alerts/{identifier}/escalate",
        "/v2/alerts/{identifier}/assign",
    }
    assert og.recorder.violations() == []


def test_error_answers_conform_to_the_spec(og: Opsgenie) -> None:
    ref = ExternalRef(connector_id="opsgenie", external_id="no-such-alert")
    with pytest.raises(DeliveryError) as missing:
        run(og.connector.fetch(ref))
    og.state.knobs.fail_next = [500]
    og.state.knobs.rate_limit_next = 1
    for _ in range(2):
        with pytest.raises(DeliveryError):
            run(og.connector.fetch(ref))
    with pytest.raises(PermanentDeliveryError) as refused:
        run(og.connector.update(ref, {"priority": "P9"}))  # the SDK refuses P9 before sending
    trust = ssl.create_default_context(cafile=str(og.sandbox.ca_bundle))
    with httpx.Client(base_url=og.sandbox.url, verify=trust) as raw:
        unprocessable = raw.post(
            "/v2/alerts", json={"message": ""}, headers={"Authorization": f"GenieKey {KEY}"}
        )
        unauthenticated = raw.get("/v2/alerts", headers={"Authorization": "GenieKey wrong"})

    assert missing.value.status_code == 404 and "Alert does not exist" in str(missing.value)
    assert "P9" in str(refused.value) or refused.value.status_code == 422
    assert unprocessable.status_code == 422
    assert unprocessable.json()["errors"] == {"message": "Message can not be empty."}
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["message"] == "Could not authenticate"
    assert {"took", "requestId"} <= unauthenticated.json().keys()
    assert [e.status for e in og.recorder.exchanges] == [404, 500, 429, 422, 401]
    assert og.recorder.violations() == []


def test_sdk_recipient_models_break_the_spec_so_the_connector_writes_dicts() -> None:
    import opsgenie_sdk

    client = opsgenie_sdk.ApiClient()
    by_model = client.sanitize_for_serialization(
        opsgenie_sdk.AddTeamToAlertPayload(team=opsgenie_sdk.TeamRecipient(name="payments"))
    )
    schema = {"$ref": "#/definitions/AddTeamToAlertPayload"}
    assert by_model == {"team": {"name": "payments"}}
    assert validate(schema, by_model, "addTeam", "request") == [
        "addTeam request: team: 'type' is a required property"
    ]
    assert validate(schema, {"team": {"type": "team", "name": "payments"}}, "addTeam", "request") == []


def test_open_alias_deduplicates_and_a_closed_one_makes_a_new_alert(og: Opsgenie) -> None:
    made = incident()
    first = run(og.connector.create(made, {}))
    again = run(og.connector.create(made, {}))
    run(
        og.connector.update(
            ExternalRef(connector_id="opsgenie", external_id=first.external_id), {"status": "closed"}
        )
    )
    # An alias names only an open alert; the look before a create finds the closed one by its details.
    assert og.state.find(str(made.id), "alias") is None
    found = run(og.connector.find(made))
    assert found is not None and found.external_id == first.external_id
    fresh = run(og.connector.create(made, {}))

    assert again.external_id == first.external_id
    assert og.state.alerts[first.external_id].count == 2
    assert fresh.external_id != first.external_id
    assert {a.alias for a in og.state.alerts.values()} == {str(made.id)}
    assert og.recorder.violations() == []


def test_request_status_is_404_until_processed_then_reports_success_or_the_failure(og: Opsgenie) -> None:
    trust = ssl.create_default_context(cafile=str(og.sandbox.ca_bundle))
    auth = {"Authorization": f"GenieKey {KEY}"}
    with httpx.Client(base_url=og.sandbox.url, verify=trust, headers=auth) as raw:
        og.person.put("/requests", json={"delay_seconds": 0.3, "fail_next": []}).raise_for_status()
        accepted = raw.post("/v2/alerts", json={"message": "Disk full", "alias": "disk"})
        request_id = accepted.json()["requestId"]
        early = raw.get(f"/v2/alerts/requests/{request_id}")
        time.sleep(0.35)
        done = raw.get(f"/v2/alerts/requests/{request_id}").json()["data"]
        og.person.put("/requests", json={"fail_next": ["Alert does not exist"]}).raise_for_status()
        failing = raw.post("/v2/alerts/disk/close", params={"identifierType": "alias"}, json={})
        time.sleep(0.35)
        failed = raw.get(f"/v2/alerts/requests/{failing.json()['requestId']}").json()["data"]
        unknown = raw.post("/v2/alerts/nope/acknowledge", json={})
        time.sleep(0.35)
        missing = raw.get(f"/v2/alerts/requests/{unknown.json()['requestId']}").json()["data"]

    assert (accepted.status_code, accepted.json()["result"]) == (202, "Request will be processed")
    assert early.status_code == 404
    assert (done["isSuccess"], done["action"], done["status"], done["alias"]) == (
        True,
        "Create",
        "Created alert",
        "disk",
    )
    assert (failed["isSuccess"], failed["status"], failed["alertId"]) == (False, "Alert does not exist", "")
    assert (missing["isSuccess"], missing["status"]) == (False, "Alert does not exist")
    assert og.state.alerts[done["alertId"]].status == "open"  # the failed close changed nothing
    assert og.recorder.violations() == []


def test_listing_counts_sorts_and_pages_with_offset_and_limit(og: Opsgenie) -> None:
    for n in range(5):
        og.person.post(
            "/alerts", json={"message": f"Alert {n}", "priority": f"P{n % 5 + 1}"}
        ).raise_for_status()
    first = next(iter(og.state.alerts.values()))
    moment_ms = first.updated_ns // 1_000_000 + 1
    trust = ssl.create_default_context(cafile=str(og.sandbox.ca_bundle))
    with httpx.Client(
        base_url=og.sandbox.url, verify=trust, headers={"Authorization": f"GenieKey {KEY}"}
    ) as raw:
        newest_first = raw.get("/v2/alerts").json()
        paged = raw.get(
            "/v2/alerts", params={"sort": "tinyId", "order": "asc", "offset": 2, "limit": 2}
        ).json()
        changed = raw.get("/v2/alerts", params={"query": f"updatedAt>={moment_ms}", "order": "asc"}).json()
        p1 = raw.get("/v2/alerts", params={"query": "priority:P1 AND status:open"}).json()
        too_many = raw.get("/v2/alerts", params={"limit": 101})

    assert [a["message"] for a in newest_first["data"]] == [f"Alert {n}" for n in (4, 3, 2, 1, 0)]
    assert [a["tinyId"] for a in paged["data"]] == ["3", "4"]
    assert "offset=4" in paged["paging"]["next"] and "offset=0" in paged["paging"]["prev"]
    assert [a["message"] for a in changed["data"]] == [f"Alert {n}" for n in (1, 2, 3, 4)]
    assert [a["message"] for a in p1["data"]] == ["Alert 0"]
    assert too_many.status_code == 422
    # The one request sent against the spec on purpose is the one found.
    assert og.recorder.violations() == ["GET /v2/alerts -> 422: limit=101 > maximum 100"]


def test_knobs_answer_429_with_retry_after_and_hang_then_504(og: Opsgenie) -> None:
    og.state.knobs.rate_limit_next, og.state.knobs.retry_after_seconds = 1, 4
    og.state.knobs.timeout_next, og.state.knobs.timeout_seconds = 1, 0.2
    trust = ssl.create_default_context(cafile=str(og.sandbox.ca_bundle))
    with httpx.Client(
        base_url=og.sandbox.url, verify=trust, headers={"Authorization": f"GenieKey {KEY}"}
    ) as raw:
        hung = raw.get("/v2/alerts")  # the timeout knob goes first
        limited = raw.get("/v2/alerts")
        fine = raw.get("/v2/alerts")

    assert hung.status_code == 504
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "4")
    assert limited.json()["message"].startswith("You are making too many requests")
    assert fine.status_code == 200
    assert [(e.status, e.note) for e in og.state.ledger.entries()] == [
        (504, "injected"),
        (429, "injected"),
        (200, None),
    ]
    assert og.recorder.violations() == []


# ---- webhooks -----------------------------------------------------------------------------------------


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _keys(item) for key, item in value.items()}
    return None


def _shape(payload: dict[str, Any]) -> tuple[set[str], set[str]]:
    return set(payload), set(payload.get("alert") or {})


# Fields of the examples the sandbox does not send, each with why.
NOT_SENT = {
    # The docs' Create example lists recipients and teams; the capture adds insertedAt and priority; both
    # are sent. `integrationType` and `alertFlowContext` are "newer payloads" (NOTES.md); only the type is.
    "alertFlowContext",
}


@pytest.mark.parametrize(
    ("action", "example_file"),
    [
        ("Create", "create.json"),
        ("Acknowledge", "acknowledge.json"),
        ("UnAcknowledge", "unacknowledge.json"),
        ("AddNote", "addnote.json"),
        ("UpdatePriority", None),
        ("AssignOwnership", "assignownership.json"),
        ("TakeOwnership", "takeownership.json"),
        ("AddTeam", "addteam.json"),
        ("Escalate", "escalate.json"),
        ("Close", "close.json"),
    ],
)
def test_every_webhook_has_the_shape_of_opsgenies_example_for_its_action(
    og: Opsgenie, receiver: Receiver, action: str, example_file: str | None
) -> None:
    created = og.act("/alerts", message="Checkout down", alias="checkout", priority="P2", teams=["payments"])
    alert_id = created["id"]
    steps = {
        "Acknowledge": [("acknowledge", {})],
        "UnAcknowledge": [("acknowledge", {}), ("unacknowledge", {})],
        "AddNote": [("notes", {"note": "Failing over"})],
        "UpdatePriority": [("priority", {"priority": "P1"})],
        "AssignOwnership": [("assign", {"owner": SAM})],
        "TakeOwnership": [("assign", {"owner": MIA})],
        "AddTeam": [("teams", {"team": "platform"})],
        "Close": [("close", {})],
    }.get(action, [])
    for step, body in steps:
        og.act(f"/alerts/{alert_id}/{step}", **body)
    if action == "Escalate":
        escalating = OpsgenieConnector(
            og.connector.config.model_copy(
                update={"options": {"escalations": {"payments": "payments_escalation"}}}
            )
        )
        run(
            escalating.update(
                ExternalRef(connector_id="opsgenie", external_id=alert_id), {"team": "payments"}
            )
        )
        run(escalating.close())

    sent = webhooks(receiver, 1 + len(steps) + (action == "Escalate"))
    assert [b["action"] for b in sent][-1] == action
    body = sent[-1]
    if example_file is not None:
        documented = example("zulip-fixtures", example_file)
        ours, theirs = _shape(body)
        documented_top, documented_alert = _shape(documented)
        assert documented_top - ours <= NOT_SENT, action
        assert documented_alert <= theirs, action
        assert ours - documented_top <= {"integrationType"}, action
    if action != "Escalate":
        alert = body["alert"]
        assert len(str(alert["updatedAt"])) == 19 and len(str(alert["createdAt"])) == 13
        assert alert["username"] == MIA and body["source"] == {"name": "", "type": "web"}


def test_docs_create_example_has_the_same_alert_fields_as_a_sandbox_create(
    og: Opsgenie, receiver: Receiver
) -> None:
    og.act("/alerts", message="Checkout down", teams=["payments"])
    (sent,) = webhooks(receiver, 1)
    documented = example("opsgenie-docs", "create.json")
    assert set(documented["alert"]) <= set(sent["alert"])
    assert sent["alert"]["teams"] == ["payments"] and sent["alert"]["priority"] == 3


def test_the_api_keys_own_changes_are_sent_too_naming_its_user(og: Opsgenie, receiver: Receiver) -> None:
    made = incident()
    created = run(og.connector.create(made, {"priority": "P3"}))
    run(
        og.connector.add_note(
            ExternalRef(connector_id="opsgenie", external_id=created.external_id), OutboundNote(body="hi")
        )
    )

    create, note = webhooks(receiver, 2)
    assert (create["action"], note["action"]) == ("Create", "AddNote")
    assert create["alert"]["username"] == note["alert"]["username"] == "incident-hub"
    assert create["source"] == {"name": "incident-hub", "type": "API"}
    assert create["alert"]["alias"] == str(made.id)
    assert create["alert"]["details"]["incident-hub-id"] == str(made.id)


def test_webhooks_carry_the_secret_in_the_header_and_arrive_in_order(
    og: Opsgenie, receiver: Receiver
) -> None:
    receiver.default.delay = 0.05  # a slow receiver gives later webhooks every chance to overtake
    alert_id = og.act("/alerts", message="Queue lag")["id"]
    for step, body in (
        ("acknowledge", {}),
        ("priority", {"priority": "P1"}),
        ("notes", {"note": "x"}),
        ("close", {}),
    ):
        og.act(f"/alerts/{alert_id}/{step}", **body)

    received = receiver.wait_for(5)
    assert [r.json()["action"] for r in received] == [
        "Create",
        "Acknowledge",
        "UpdatePriority",
        "AddNote",
        "Close",
    ]
    assert {r.headers["X-Incident-Hub-Secret"] for r in received} == {SECRET}
    assert all("authorization" not in e.headers for e in og.state.ledger.entries(direction="out"))


def test_webhooks_carry_basic_auth_when_configured(
    start: Callable[..., Opsgenie], receiver: Receiver
) -> None:
    og = start(webhook_auth="basic", webhook_username="opsgenie")
    og.act("/alerts", message="Queue lag")
    (received,) = receiver.wait_for(1)
    expected = base64.b64encode(f"opsgenie:{SECRET}".encode()).decode()
    assert _header(received, "Authorization") == f"Basic {expected}"


def _header(received: Received, name: str) -> str:
    return next(v for k, v in received.headers.items() if k.lower() == name.lower())


def test_person_in_the_ui_is_not_the_integration_and_is_seen_through_the_api(
    og: Opsgenie, receiver: Receiver
) -> None:
    alert_id = og.act("/alerts", actor=SAM, message="Login errors", priority="P2")["id"]
    og.act(f"/alerts/{alert_id}/acknowledge")
    seen = run(og.connector.fetch(ExternalRef(connector_id="opsgenie", external_id=alert_id)))

    create, ack = webhooks(receiver, 2)
    assert (create["alert"]["username"], ack["alert"]["username"]) == (SAM, MIA)
    assert seen.fields["status"] == "acknowledged" and seen.fields["priority"] == "P2"
    refused = og.person.post(f"/alerts/{alert_id}/assign", json={"actor": MIA, "owner": "nobody@example.com"})
    assert refused.status_code == 422


def test_notes_are_counted_across_pages_of_the_alert_notes_listing(og: Opsgenie) -> None:
    created = run(og.connector.create(incident(), {}))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)
    alert = og.state.alerts[created.external_id]
    for n in range(130):  # more than one page of 100; the note sought on both sides of the break
        text = "[incident-hub] bob: still looking" if n in (3, 120) else f"[incident-hub] bob: step {n}"
        og.state.add_note(alert, og.state.api_actor(), text)

    sought = OutboundNote(body="[incident-hub] bob: still looking")
    assert run(og.connector.count_notes(ref, sought)) == 2
    assert run(og.connector.count_notes(ref, OutboundNote(body="never said"))) == 0
    pages = [e for e in og.recorder.exchanges if e.method == "GET" and e.path.endswith("/notes")]
    assert len(pages) == 4  # two pages for each count
    assert og.recorder.violations() == []
