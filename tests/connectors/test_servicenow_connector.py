"""ServiceNow: one HTTP exchange at a time through the real `pysnc` client (respx), webhooks parsed from
the hub's documented contract, the default mapping, and the connector against the sandbox over loopback
HTTPS with every request and answer checked against the Table API reference's examples
(`tests/vendor/servicenow/table-api-examples/`, `incident-choice-values.json`: there is no OpenAPI
document for the Table API, so those documents are the contract)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import (
    ChangeKind,
    ConnectorConfig,
    OutboundNote,
    Secret,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.connectors.servicenow import ServiceNowConnector
from incident_hub.mapping.document import read_severity
from incident_hub.mapping.translate import to_canonical, to_vendor
from incident_hub.model import ExternalRef, Severity, Status
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.servicenow import group_id, servicenow_sandbox
from incident_hub.serving import ServerThread
from incident_hub.store.tables import InboxRow
from incident_hub.sync.retry import PermanentDeliveryError, RetryableDeliveryError
from tests.conftest import key_for, test_settings
from tests.support import VENDOR, wait_until
from tests.test_mapping import incident

SERVICENOW = VENDOR / "servicenow"
EXAMPLES = SERVICENOW / "table-api-examples"
CHOICES = json.loads((SERVICENOW / "incident-choice-values.json").read_text())
BASE = "https://dev00000.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
USER, PASSWORD, SECRET = "incident.hub", "sn-password", "business-rule-secret"
SYS_ID = "ef43c6d40a0a0b5700c77f9bf387afe3"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SN_PASSWORD", PASSWORD)
    monkeypatch.setenv("SN_WEBHOOK_SECRET", SECRET)


def connector(base_url: str = BASE, ca_bundle: Path | None = None, **options: Any) -> ServiceNowConnector:
    return ServiceNowConnector(
        ConnectorConfig(
            id="servicenow",
            kind="servicenow",
            base_url=base_url,
            credentials=Secret(env="SN_PASSWORD"),
            webhook_secret=Secret(env="SN_WEBHOOK_SECRET"),
            ca_bundle=ca_bundle,
            timeout_seconds=2,
            options={"username": USER, **options},
        )
    )


def record(**values: str) -> dict[str, Any]:
    """A Table API record as pysnc asks for it (sysparm_display_value=all, no reference links)."""
    base = {
        "sys_id": SYS_ID,
        "number": "INC0010002",
        "state": "2",
        "impact": "2",
        "urgency": "2",
        "priority": "3",
        "short_description": "Queue lag",
        "description": "",
        "close_code": "",
        "close_notes": "",
        "correlation_id": "",
        "sys_mod_count": "3",
        "sys_updated_on": "2026-11-24 14:05:00",
        "sys_updated_by": "beth.anglin",
        "comments": "",
        "work_notes": "",
        "hold_reason": "",
    }
    return {k: {"display_value": v, "value": v} for k, v in (base | values).items()}


def listing(*records: dict[str, Any], total: int | None = None) -> httpx.Response:
    count = len(records) if total is None else total
    return httpx.Response(200, json={"result": list(records)}, headers={"X-Total-Count": str(count)})


def query_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


# ---- outbound, one exchange at a time ---------------------------------------------------------------------


@respx.mock
def test_create_looks_up_the_correlation_id_before_posting_and_sends_impact_and_urgency_not_priority() -> (
    None
):
    hub = incident(Status.OPEN, Severity.SEV2_HIGH)
    looked = respx.get(TABLE).mock(return_value=listing())
    created = respx.post(TABLE).mock(
        return_value=httpx.Response(201, json={"result": record(correlation_id=str(hub.id))})
    )
    sn = connector(caller_id="46c6f9efa9fe198101ddf5eed9adf6e7", category="software")
    result = asyncio.run(sn.create(hub, to_vendor(sn.mapping(), hub)))
    assert (result.external_id, result.external_key) == (SYS_ID, "INC0010002")
    assert result.url == f"{BASE}/incident.do?sys_id={SYS_ID}"
    assert query_of(looked.calls[0].request)["sysparm_query"] == f"correlation_id={hub.id}^ORDERBYsys_id"
    body = json.loads(created.calls[0].request.content)
    assert body == {
        "short_description": "t",
        "state": "1",
        "impact": "1",
        "urgency": "2",
        "correlation_id": str(hub.id),
        "correlation_display": "incident-hub",
        "caller_id": "46c6f9efa9fe198101ddf5eed9adf6e7",
        "category": "software",
    }
    auth = created.calls[0].request.headers["authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"{USER}:{PASSWORD}"


@respx.mock
def test_a_create_that_timed_out_but_succeeded_is_not_made_twice() -> None:
    hub = incident()
    made: list[dict[str, Any]] = []

    def post(request: httpx.Request) -> httpx.Response:
        made.append(json.loads(request.content))
        raise httpx.ReadTimeout("the answer was lost", request=request)

    respx.get(TABLE).mock(
        side_effect=lambda request: listing(*([record(correlation_id=str(hub.id))] if made else []))
    )
    respx.post(TABLE).mock(side_effect=post)
    respx.get(f"{TABLE}/{SYS_ID}").mock(
        return_value=httpx.Response(200, json={"result": record(correlation_id=str(hub.id))})
    )
    patched = respx.patch(f"{TABLE}/{SYS_ID}").mock(
        return_value=httpx.Response(200, json={"result": record(state="1")})
    )
    sn = connector()
    wanted = to_vendor(sn.mapping(), hub)
    with pytest.raises(RetryableDeliveryError, match="outcome unknown: ReadTimeout"):
        asyncio.run(sn.create(hub, wanted))
    # The retry finds the record the lost answer was about, and brings it to the wanted state.
    result = asyncio.run(sn.create(hub, wanted))
    assert result.external_id == SYS_ID
    assert len(made) == 1
    assert json.loads(patched.calls[0].request.content) == {"state": "1", "short_description": "t"}


@respx.mock
def test_resolve_fills_resolution_code_and_notes_only_where_the_record_has_none() -> None:
    respx.get(f"{TABLE}/{SYS_ID}").mock(
        side_effect=[
            httpx.Response(200, json={"result": record()}),
            httpx.Response(200, json={"result": record(close_notes="Rolled back the deploy")}),
        ]
    )
    patched = respx.patch(f"{TABLE}/{SYS_ID}").mock(
        return_value=httpx.Response(200, json={"result": record(state="6")})
    )
    sn = connector(close_code="Workaround provided")
    ref = ExternalRef(connector_id="servicenow", external_id=SYS_ID)
    asyncio.run(sn.update(ref, {"state": "6", "close_notes": None}))
    asyncio.run(sn.update(ref, {"state": "6"}))
    first, second = (json.loads(c.request.content) for c in patched.calls)
    assert first == {
        "state": "6",
        "close_code": "Workaround provided",
        "close_notes": "Resolved in incident-hub.",
    }
    assert second == {"state": "6", "close_code": "Workaround provided"}


@respx.mock
def test_update_writes_only_what_differs_and_team_by_its_group_sys_id() -> None:
    respx.get(f"{TABLE}/{SYS_ID}").mock(return_value=httpx.Response(200, json={"result": record()}))
    patched = respx.patch(f"{TABLE}/{SYS_ID}").mock(
        return_value=httpx.Response(200, json={"result": record()})
    )
    sn = connector(assignment_groups={"network": "287ebd7da9fe198100f92cc8d1d2154e"}, hold_reason="4")
    ref = ExternalRef(connector_id="servicenow", external_id=SYS_ID)
    fields = {
        "state": "3",
        "impact": "2",
        "priority": "1",
        "assignment_group": "network",
        "description": None,
    }
    asyncio.run(sn.update(ref, fields))
    assert json.loads(patched.calls[0].request.content) == {
        "state": "3",
        "hold_reason": "4",
        "assignment_group": "287ebd7da9fe198100f92cc8d1d2154e",
    }
    asyncio.run(sn.update(ref, {"state": "2", "impact": "2"}))
    assert len(patched.calls) == 1  # nothing differed: nothing written


@respx.mock
@pytest.mark.parametrize(("public", "element"), [(True, "comments"), (False, "work_notes")])
def test_notes_append_to_comments_or_work_notes(public: bool, element: str) -> None:
    respx.get(f"{TABLE}/{SYS_ID}").mock(return_value=httpx.Response(200, json={"result": record()}))
    patched = respx.patch(f"{TABLE}/{SYS_ID}").mock(
        return_value=httpx.Response(200, json={"result": record(sys_mod_count="4")})
    )
    note = OutboundNote(body="[jira] alice: Scaling consumers", is_public=public, origin="jira")
    ref = ExternalRef(connector_id="servicenow", external_id=SYS_ID)
    assert asyncio.run(connector().add_note(ref, note)) == f"{SYS_ID}:4"
    assert json.loads(patched.calls[0].request.content) == {element: "[jira] alice: Scaling consumers"}


@respx.mock
def test_list_changed_queries_sys_updated_on_and_pages_by_offset() -> None:
    records = [record(sys_id=f"{n:032x}", number=f"INC00100{n:02d}") for n in range(5)]

    def page(request: httpx.Request) -> httpx.Response:
        params = query_of(request)
        offset, limit = int(params["sysparm_offset"]), int(params["sysparm_limit"])
        return listing(*records[offset : offset + limit], total=len(records))

    route = respx.get(TABLE).mock(side_effect=page)
    sn = connector(page_size=2)
    since = datetime(2026, 11, 24, 15, 5, 7, 900_000, tzinfo=UTC) + timedelta(hours=1) - timedelta(hours=1)

    async def changed() -> list[Any]:
        return [c async for c in sn.list_changed(since.astimezone())]

    found = asyncio.run(changed())
    assert [c.external_key for c in found] == [f"INC00100{n:02d}" for n in range(5)]
    assert all(c.kind is ChangeKind.SNAPSHOT for c in found)
    pages = [query_of(c.request) for c in route.calls]
    assert [(p["sysparm_offset"], p["sysparm_limit"]) for p in pages] == [("0", "2"), ("2", "2"), ("4", "2")]
    assert pages[0]["sysparm_query"] == "sys_updated_on>=2026-11-24 15:05:07^ORDERBYsys_id"


@respx.mock
@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (401, {}, PermanentDeliveryError, None),
        (400, {}, PermanentDeliveryError, None),
        (403, {}, PermanentDeliveryError, None),
        (429, {"Retry-After": "7"}, RetryableDeliveryError, 7.0),
        (500, {}, RetryableDeliveryError, None),
        (503, {"Retry-After": "2"}, RetryableDeliveryError, 2.0),
    ],
)
def test_vendor_errors_reach_the_retry_policy_typed(
    status: int, headers: dict[str, str], error: type[Exception], retry_after: float | None
) -> None:
    body = {"error": {"message": "Operation Failed", "detail": "Data Policy Exception"}, "status": "failure"}
    respx.get(f"{TABLE}/{SYS_ID}").mock(return_value=httpx.Response(status, json=body, headers=headers))
    with pytest.raises(error) as raised:
        asyncio.run(connector().fetch(ExternalRef(connector_id="servicenow", external_id=SYS_ID)))
    assert getattr(raised.value, "status_code", None) == status
    assert getattr(raised.value, "retry_after", None) == retry_after
    assert "Operation Failed" in str(raised.value)


@respx.mock
def test_an_unreachable_instance_is_retryable_and_an_http_url_is_refused() -> None:
    respx.get(TABLE).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(RetryableDeliveryError):
        asyncio.run(connector().find(incident()))
    with pytest.raises(PermanentDeliveryError, match="https"):
        asyncio.run(connector("http://dev00000.service-now.com").find(incident()))


# ---- inbound: the business rule's REST message ------------------------------------------------------------


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "table": "incident",
        "operation": "update",
        "sys_id": SYS_ID,
        "number": "INC0010002",
        "sys_mod_count": "5",
        "sys_updated_on": "2026-11-24 14:05:00",
        "sys_updated_by": "beth.anglin",
        "correlation_id": "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f",
        "changed": ["urgency", "state"],
        "fields": {
            "short_description": "Queue lag",
            "description": "",
            "state": "2",
            "impact": "1",
            "urgency": "1",
            "priority": "1",
            "assignment_group": {"value": group_id("Network"), "display_value": "Network"},
            "close_code": "",
            "close_notes": "",
            "correlation_id": "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f",
        },
        "journal": [
            {
                "sys_id": "a" * 32,
                "element": "comments",
                "value": "Customer informed",
                "sys_created_by": "beth.anglin",
                "sys_created_on": "2026-11-24 14:05:00",
            },
            {
                "sys_id": "b" * 32,
                "element": "work_notes",
                "value": "Restarted consumers",
                "sys_created_by": "beth.anglin",
                "sys_created_on": "2026-11-24 14:05:00",
            },
        ],
    }
    return body | overrides


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_shared_secret_header_is_checked_in_constant_time_and_missing_or_forged_is_401() -> None:
    sn, body = connector(), raw(message())
    sn.verify_webhook({"x-incident-hub-secret": SECRET}, body)
    for headers in [{}, {"x-incident-hub-secret": "guess"}, {"x-incident-hub-secret": "sécret"}]:
        with pytest.raises(WebhookRejected) as refused:
            sn.verify_webhook(headers, body)
        assert refused.value.status == 401


def test_basic_auth_webhooks_need_the_configured_user_and_secret() -> None:
    sn, body = connector(webhook_auth="basic", webhook_username="hub-hook"), raw(message())

    def basic(credentials: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    sn.verify_webhook(basic(f"hub-hook:{SECRET}"), body)
    for headers in [{}, basic(f"other:{SECRET}"), basic("hub-hook:wrong"), {"authorization": "Basic %%%"}]:
        with pytest.raises(WebhookRejected):
            sn.verify_webhook(headers, body)
    unconfigured = ServiceNowConnector(
        ConnectorConfig(id="sn", kind="servicenow", base_url=BASE, options={"username": USER})
    )
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        unconfigured.verify_webhook({"x-incident-hub-secret": SECRET}, body)


def test_update_parses_into_the_changed_fields_and_journal_notes() -> None:
    sn = connector(assignment_groups={"network": group_id("Network")})
    fields, comment, work_note = sn.parse_webhook({}, raw(message()))
    assert fields.kind is ChangeKind.UPDATED
    # urgency changed: the whole severity reading (priority, impact, urgency) travels with it.
    assert fields.fields == {"state": "2", "urgency": "1", "impact": "1", "priority": "1"}
    assert (fields.actor, fields.actor_is_self, fields.event_id) == ("beth.anglin", False, f"{SYS_ID}:5")
    assert fields.vendor_timestamp == datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
    assert fields.hub_incident_id == "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f"
    assert comment.note is not None and work_note.note is not None
    assert (comment.note.external_comment_id, comment.note.is_public) == ("a" * 32, True)
    assert (work_note.note.body, work_note.note.is_public) == ("Restarted consumers", False)
    assert sn.webhook_event_id({}, raw(message())) == f"{SYS_ID}:5"


def test_insert_parses_into_a_created_change_with_every_synced_field() -> None:
    sn = connector(assignment_groups={"network": group_id("Network")})
    (created, *_) = sn.parse_webhook({}, raw(message(operation="insert", changed=None)))
    assert created.kind is ChangeKind.CREATED
    assert created.fields["assignment_group"] == "network"
    assert created.fields["short_description"] == "Queue lag" and created.fields["description"] is None
    patch = to_canonical(sn.mapping(), None, created.fields)
    assert (patch.severity, patch.status) == (Severity.SEV1_CRITICAL, Status.INVESTIGATING)
    assert patch.fields["assigned_team"] == "network"


def test_the_integration_users_changes_are_echoes() -> None:
    body = message(sys_updated_by="Incident.Hub")
    body["journal"][0]["sys_created_by"] = "incident.hub"
    changes = connector().parse_webhook({}, raw(body))
    assert [c.actor_is_self for c in changes] == [True, True, False]


def test_values_are_recognised_by_field_id_not_by_value() -> None:
    body = message(changed=["u_story_points"])
    body["fields"]["u_story_points"] = "1"
    assert connector().parse_webhook({}, raw(body))[0].kind is ChangeKind.NOTE


def test_other_tables_and_malformed_bodies() -> None:
    assert connector().parse_webhook({}, raw(message(table="problem"))) == []
    for body in [b"", b"[]", b"\xff", raw(message(operation="delete")), raw(message(sys_updated_on="today"))]:
        with pytest.raises(WebhookParseError):
            connector().parse_webhook({}, body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_payloads_raise_only_the_typed_parse_error(data: st.DataObject) -> None:
    payload = message()
    places: list[tuple[dict[str, Any], str]] = [(payload, k) for k in payload]
    places += [(payload["fields"], k) for k in payload["fields"]]
    places += [(entry, k) for entry in payload["journal"] for k in entry]
    target, key = data.draw(st.sampled_from(places))
    junk = data.draw(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
    )
    if data.draw(st.booleans()):
        target[key] = junk
    else:
        target.pop(key, None)
    body = json.dumps(payload).encode()
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    sn = connector(assignment_groups={"network": group_id("Network")})
    with contextlib.suppress(WebhookParseError):
        sn.parse_webhook({}, body)
    sn.webhook_event_id({}, body)  # never raises


# ---- the default mapping ----------------------------------------------------------------------------------


@given(status=st.sampled_from(list(Status)), severity=st.sampled_from(list(Severity)))
def test_default_mapping_round_trips(status: Status, severity: Severity) -> None:
    mapping = connector().mapping()
    written = to_vendor(mapping, incident(status, severity))
    assert to_canonical(mapping, incident(status, severity), written).is_empty()
    fresh = to_canonical(mapping, None, written)
    assert fresh.status is not None and fresh.severity is not None
    assert to_vendor(mapping, incident(fresh.status, fresh.severity)) == written


def test_default_mapping_writes_documented_choices_and_the_documented_priority() -> None:
    mapping = connector().mapping()
    lookup = {(r["impact"], r["urgency"]): r["priority"] for r in CHOICES["priority_lookup_default"]}
    states = {c["value"] for c in CHOICES["state"]}
    assert set(mapping.status.to_vendor.values()) <= states and set(mapping.status.from_vendor) == states
    for written in mapping.severity.to_vendor.values():
        assert lookup[written["impact"], written["urgency"]] == written["priority"]
    # Every priority and impact a person can choose reads as some severity.
    for row in CHOICES["priority_lookup_default"]:
        assert read_severity(mapping.severity, {"priority": row["priority"]}) is not None
        assert read_severity(mapping.severity, {"impact": row["impact"]}) is not None
    # On Hold is a working status, Canceled reads as resolved.
    assert mapping.status.from_vendor["3"] is Status.INVESTIGATING
    assert mapping.status.from_vendor["8"] is Status.RESOLVED


# ---- contract: the connector against the sandbox, checked against the documented examples -----------------


@pytest.fixture
def instance() -> Iterator[tuple[Sandbox, Any]]:
    app, state = servicenow_sandbox(USER, PASSWORD)
    with Sandbox(app, state) as sandbox:
        yield sandbox, state


def _documented_fields() -> set[str]:
    documented: dict[str, Any] = json.loads((EXAMPLES / "GET_incident_by_sys_id.response.json").read_text())
    return set(documented["result"]) | {"hold_reason"}


def test_connector_requests_and_answers_match_the_table_api_examples(instance: tuple[Sandbox, Any]) -> None:
    sandbox, state = instance
    sn = connector(sandbox.url, sandbox.ca_bundle, assignment_groups={"network": group_id("Network")})
    hub = incident(Status.OPEN, Severity.SEV1_CRITICAL).model_copy(update={"assigned_team": "network"})
    ref = ExternalRef(connector_id="servicenow", external_id="")

    async def story() -> None:
        assert (await sn.health()).ok
        made = await sn.create(hub, to_vendor(sn.mapping(), hub))
        assert await sn.find(hub) == made
        ref.external_id = made.external_id
        resolved = hub.model_copy(update={"status": Status.RESOLVED, "resolution_notes": "Fixed"})
        await sn.update(ref, to_vendor(sn.mapping(), resolved))
        await sn.add_note(ref, OutboundNote(body="[incident-hub] bob: done", is_public=True))
        snapshot = await sn.fetch(ref)
        assert snapshot.fields["state"] == "6" and snapshot.fields["close_notes"] == "Fixed"
        assert snapshot.fields["priority"] == "1" and snapshot.fields["assignment_group"] == "network"
        assert [c.external_id async for c in sn.list_changed(datetime.now(UTC) - timedelta(minutes=1))] == [
            made.external_id
        ]
        await sn.close()

    asyncio.run(story())
    documented, states = _documented_fields(), {c["value"] for c in CHOICES["state"]}
    levels = {c["value"] for c in CHOICES["impact"]}
    for entry in state.ledger.entries(direction="in"):
        assert entry.status is not None and entry.status < 400, entry
        assert entry.headers["accept"] == "application/json"
        assert re.match(r"^/api/now/table/(incident|sys_user)(/[0-9a-f]{32})?$", entry.path)
        params = parse_qs(entry.query)
        assert params["sysparm_display_value"] == ["all"]
        assert set(params.get("sysparm_fields", [""])[0].split(",")) - {""} <= documented | {"user_name"}
        if entry.method in ("POST", "PATCH"):
            assert entry.headers["content-type"] == "application/json"
            body = entry.body
            assert isinstance(body, dict) and set(body) <= documented, body
            assert all(isinstance(v, str) for v in body.values())
            assert body.get("state", "1") in states and "priority" not in body
            assert body.get("impact", "1") in levels and body.get("urgency", "1") in levels
    methods = [e.method for e in state.ledger.entries(direction="in")]
    assert methods.count("POST") == 1
    (record_now,) = state.incidents()
    assert record_now["correlation_id"] == str(hub.id) and record_now["assignment_group"] == group_id(
        "Network"
    )
    assert record_now["close_code"] == "Solution provided"
    assert [e["element"] for e in state.journal(record_now["sys_id"])] == ["comments"]


def test_ca_bundle_is_what_tls_trusts(instance: tuple[Sandbox, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = instance
    # The environment's bundle names the sandbox CA: a client that read it would trust the sandbox.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sandbox.ca_bundle))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(sandbox.ca_bundle))
    assert asyncio.run(connector(sandbox.url, sandbox.ca_bundle).health()).ok
    untrusting = asyncio.run(connector(sandbox.url).health())
    assert untrusting.ok is False and "CERTIFICATE_VERIFY_FAILED" in untrusting.detail


def test_data_policy_refusal_is_permanent_with_servicenows_words(instance: tuple[Sandbox, Any]) -> None:
    sandbox, state = instance
    sn = connector(sandbox.url, sandbox.ca_bundle)
    hub = incident()

    async def story() -> None:
        made = await sn.create(hub, to_vendor(sn.mapping(), hub))
        ref = ExternalRef(connector_id="servicenow", external_id=made.external_id)
        # Writing the state with explicit empties is what a careless mapping would do: refused.
        sn.options.close_code = ""
        sn.options.close_notes = ""
        with pytest.raises(PermanentDeliveryError, match="Data Policy Exception") as refused:
            await sn.update(ref, {"state": "6"})
        assert refused.value.status_code == 403
        await sn.close()

    asyncio.run(story())
    assert uuid.UUID(state.incidents()[0]["correlation_id"]) == hub.id


# ---- both ways, through the hub ---------------------------------------------------------------------------


class HubWorld:
    def __init__(self, hub: Any, api: httpx.Client, sandbox: Sandbox, state: Any) -> None:
        self.hub, self.api, self.sandbox, self.state = hub, api, sandbox, state
        trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
        self.control = httpx.Client(base_url=sandbox.url + "/_sandbox/servicenow", verify=trust, timeout=10)

    def writes(self) -> list[tuple[str, str]]:
        return [(e.method, e.path) for e in self.state.ledger.writes()]

    def settle(self) -> None:
        def drained() -> bool:
            pending = self.api.get("/api/v1/deliveries", params={"state": "pending"}).json()
            with self.hub.db.read() as session:
                inbox = session.query(InboxRow).filter(InboxRow.state == "pending").count()
            sent = len(self.state.ledger.entries(direction="out")) >= len(self.state.ledger.writes())
            return not pending and inbox == 0 and sent

        for _ in range(2):
            wait_until(drained)
            time.sleep(0.25)
        wait_until(drained)


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[HubWorld]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub = app.state.hub
    server = ServerThread(app)
    sn_app, state = servicenow_sandbox(USER, PASSWORD, f"{server.url}/webhooks/servicenow", SECRET)
    with (
        server,
        Sandbox(sn_app, state) as sandbox,
        httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10) as api,
    ):
        config = {
            "id": "servicenow",
            "kind": "servicenow",
            "base_url": sandbox.url,
            "credentials": {"env": "SN_PASSWORD"},
            "webhook_secret": {"env": "SN_WEBHOOK_SECRET"},
            "ca_bundle": str(sandbox.ca_bundle),
            "timeout_seconds": 2,
            "options": {"username": USER, "assignment_groups": {"network": group_id("Network")}},
        }
        response = api.put("/api/v1/connectors/servicenow", json=config)
        assert response.status_code == 200, response.text
        world = HubWorld(hub, api, sandbox, state)
        yield world
        world.control.close()


def test_hub_incident_opens_one_servicenow_incident_and_its_echo_is_dropped(world: HubWorld) -> None:
    incident_ = world.api.post(
        "/api/v1/incidents",
        json={"title": "Checkout down", "severity": "SEV1_CRITICAL", "assigned_team": "network"},
    ).json()
    wait_until(world.state.incidents)
    world.settle()
    (record_,) = world.state.incidents()
    assert (record_["correlation_id"], record_["priority"]) == (incident_["id"], "1")
    assert record_["assignment_group"] == group_id("Network")
    hub_path = f"/api/v1/incidents/{incident_['id']}"
    world.api.put(f"{hub_path}/status", json={"status": "RESOLVED", "author": "alice"}).raise_for_status()
    world.settle()
    (record_,) = world.state.incidents()
    assert (record_["state"], record_["close_code"]) == ("6", "Solution provided")
    # The business rule's webhooks for the hub's own writes made nothing new in the hub.
    assert [i["id"] for i in world.api.get("/api/v1/incidents").json()["items"]] == [incident_["id"]]
    assert world.api.get(hub_path).json()["status"] == "RESOLVED"
    assert [m for m, _ in world.writes()] == ["POST", "PATCH"]


def test_changes_made_in_servicenow_reach_the_hub_and_nothing_goes_back(world: HubWorld) -> None:
    opened = world.control.post(
        "/incidents", json={"short_description": "Disk full on db-2", "impact": "1", "urgency": "2"}
    ).json()["result"]
    hub_incident = wait_until(lambda: world.api.get("/api/v1/incidents").json()["items"])[0]
    assert (hub_incident["title"], hub_incident["severity"]) == ("Disk full on db-2", "SEV2_HIGH")
    sys_id, hub_path = opened["sys_id"], f"/api/v1/incidents/{hub_incident['id']}"
    world.control.post(f"/incidents/{sys_id}/state", json={"state": "2"})
    world.control.post(f"/incidents/{sys_id}/work_notes", json={"text": "Rotating logs"})
    world.control.post(f"/incidents/{sys_id}/priority", json={"impact": "1", "urgency": "1"})
    wait_until(lambda: world.api.get(hub_path).json()["severity"] == "SEV1_CRITICAL")
    world.settle()
    hub_now = world.api.get(hub_path).json()
    assert hub_now["status"] == "INVESTIGATING"
    notes = [
        (e["message"], e["is_public"], e["origin_connector"])
        for e in world.api.get(f"{hub_path}/timeline").json()
        if e["type"] == "NOTE" and e["message"] == "Rotating logs"
    ]
    assert notes == [("Rotating logs", False, "servicenow")]
    assert world.writes() == []
