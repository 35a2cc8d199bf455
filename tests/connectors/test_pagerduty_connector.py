"""PagerDuty both ways, through the real `pagerduty` client against the PagerDuty sandbox over HTTPS."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import ChangeKind, ConnectorConfig, Secret, WebhookParseError
from incident_hub.connectors.pagerduty import PagerDutyConnector
from incident_hub.hub import Hub
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.pagerduty import (
    ESCALATION_POLICY_ID,
    HUB_EMAIL,
    HUB_USER_ID,
    RESPONDER_ID,
    ROUTING_KEY,
    SECOND_POLICY_ID,
    SECONDARY_ID,
    SERVICE_ID,
    PagerDutyState,
    pagerduty_sandbox,
)
from incident_hub.serving import ServerThread
from incident_hub.signing import sign_sha256
from tests.conftest import key_for, test_settings
from tests.support import VENDOR, settle, wait_until

WEBHOOKS = VENDOR / "pagerduty" / "webhooks-v3"
TOKEN, SECRET = "pd-token-123", "pd-webhook-secret"
CONTROL = "/_sandbox/pagerduty"


class PagerDutyWorld:
    def __init__(self, hub: Hub, api: httpx.Client, pd: Sandbox, state: PagerDutyState) -> None:
        self.hub, self.api, self.pd, self.state = hub, api, pd, state
        trust = ssl.create_default_context(cafile=str(pd.ca_bundle))
        self.control = httpx.Client(base_url=pd.url + CONTROL, verify=trust, timeout=10)

    def writes(self) -> list[tuple[str, str]]:
        return [(e.method, e.path) for e in self.state.ledger.writes()]

    def incidents(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/incidents").json()["items"]
        return items

    def settle(self) -> None:
        settle(self.hub, [self.state.ledger])


def connector_config(pd: Sandbox, **overrides: Any) -> dict[str, Any]:
    return {
        "id": "pagerduty",
        "kind": "pagerduty",
        "base_url": pd.url,
        "credentials": {"env": "PD_TOKEN"},
        "webhook_secret": {"env": "PD_WEBHOOK_SECRET"},
        "ca_bundle": str(pd.ca_bundle),
        "timeout_seconds": 2,
        "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
        **overrides,
    }


@pytest.fixture
def world(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PagerDutyWorld]:
    monkeypatch.setenv("PD_TOKEN", TOKEN)
    monkeypatch.setenv("PD_WEBHOOK_SECRET", SECRET)
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub: Hub = app.state.hub
    server = ServerThread(app)
    pd_app, state = pagerduty_sandbox(TOKEN, SECRET, f"{server.url}/webhooks/pagerduty")
    with (
        server,
        Sandbox(pd_app, state) as pd,
        httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10) as api,
    ):
        response = api.put("/api/v1/connectors/pagerduty", json=connector_config(pd))
        assert response.status_code == 200, response.text
        world = PagerDutyWorld(hub, api, pd, state)
        yield world
        world.control.close()


def test_health_calls_pagerduty_with_the_configured_token(world: PagerDutyWorld) -> None:
    health = world.api.get("/api/v1/connectors/pagerduty/health").json()
    assert health["ok"] is True
    assert world.state.ledger.entries(path_prefix="/abilities")[-1].headers["from"] == HUB_EMAIL


def test_hub_incident_opens_one_pagerduty_incident_and_its_echo_is_dropped(world: PagerDutyWorld) -> None:
    incident = world.api.post(
        "/api/v1/incidents",
        json={"title": "Checkout down", "severity": "SEV1_CRITICAL", "description": "5xx everywhere"},
    ).json()
    wait_until(lambda: world.state.incidents)
    world.settle()
    (pd_incident,) = world.state.incidents.values()
    assert pd_incident.incident_key == f"incident-hub/{incident['id']}"
    assert pd_incident.urgency == "high"
    assert world.writes() == [("POST", "/incidents")]
    # PagerDuty's incident.triggered webhook (agent: the hub's user) made no second incident.
    assert [i["id"] for i in world.incidents()] == [incident["id"]]
    refs = world.api.get(f"/api/v1/incidents/{incident['id']}").json()["external_refs"]
    assert refs[0]["external_id"] == pd_incident.id


def test_pagerduty_incident_creates_one_hub_incident_and_nothing_goes_back(world: PagerDutyWorld) -> None:
    world.control.post(
        "/incidents",
        json={"title": "Disk 95% on db-2", "urgency": "high", "priority": "P2", "incident_key": "disk/db-2"},
    ).raise_for_status()
    incident = wait_until(world.incidents)[0]
    world.settle()
    assert (incident["title"], incident["severity"], incident["source"]) == (
        "Disk 95% on db-2",
        "SEV2_HIGH",
        "pagerduty",
    )
    # The ledger holds vendor API calls only (the person's action came through the control API): none.
    assert world.writes() == []


def test_status_priority_and_notes_travel_both_ways_once(world: PagerDutyWorld) -> None:
    incident = world.api.post(
        "/api/v1/incidents", json={"title": "Queue lag", "severity": "SEV3_MEDIUM"}
    ).json()
    wait_until(lambda: world.state.incidents)
    world.settle()
    (pd_id,) = world.state.incidents
    hub_path = f"/api/v1/incidents/{incident['id']}"

    world.api.put(f"{hub_path}/status", json={"status": "ACKNOWLEDGED", "author": "alice"}).raise_for_status()
    world.settle()
    assert world.state.incidents[pd_id].status == "acknowledged"
    world.api.post(
        f"{hub_path}/timeline", json={"message": "Scaling consumers", "author": "alice"}
    ).raise_for_status()
    world.settle()
    assert [n.content for n in world.state.incidents[pd_id].notes] == [
        "[incident-hub] alice: Scaling consumers"
    ]
    writes_before = len(world.writes())

    world.control.post(f"/incidents/{pd_id}/priority", json={"actor": RESPONDER_ID, "priority": "P1"})
    wait_until(lambda: world.api.get(hub_path).json()["severity"] == "SEV1_CRITICAL")
    world.control.post(
        f"/incidents/{pd_id}/notes", json={"actor": RESPONDER_ID, "content": "Found the bad deploy"}
    )
    world.control.post(f"/incidents/{pd_id}/resolve", json={"actor": RESPONDER_ID})
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "RESOLVED")
    world.settle()
    notes = [
        (e["message"], e["origin_connector"])
        for e in world.api.get(f"{hub_path}/timeline").json()
        if e["type"] == "NOTE" and not e["message"].startswith("Updated")
    ]
    assert notes == [("Scaling consumers", None), ("Found the bad deploy", "pagerduty")]
    # Nothing the responder did in PagerDuty was written back to PagerDuty by the hub.
    assert world.writes()[writes_before:] == []
    assert len(world.state.incidents[pd_id].notes) == 2


def _reconfigure(world: PagerDutyWorld, **options: Any) -> None:
    config = connector_config(world.pd)
    config["options"] |= options
    response = world.api.put("/api/v1/connectors/pagerduty", json=config)
    assert response.status_code == 200, response.text


def test_team_reassignment_and_escalation_travel_both_ways(world: PagerDutyWorld) -> None:
    _reconfigure(world, escalation_policies={"checkout": ESCALATION_POLICY_ID, "payments": SECOND_POLICY_ID})
    incident = world.api.post(
        "/api/v1/incidents", json={"title": "Card auth failing", "assigned_team": "checkout"}
    ).json()
    wait_until(lambda: world.state.incidents)
    world.settle()
    (pd_id,) = world.state.incidents
    assert world.state.incidents[pd_id].policy_id == ESCALATION_POLICY_ID
    hub_path = f"/api/v1/incidents/{incident['id']}"

    # Reassigned in the hub: PagerDuty's incident moves to the team's escalation policy, in one write.
    before = len(world.writes())
    world.api.patch(hub_path, json={"assigned_team": "payments", "author": "alice"}).raise_for_status()
    wait_until(lambda: world.state.incidents[pd_id].policy_id == SECOND_POLICY_ID)
    world.settle()
    assert world.writes()[before:] == [("PUT", f"/incidents/{pd_id}")]
    put = world.state.ledger.entries(direction="in", path_prefix=f"/incidents/{pd_id}")[-1]
    assert put.body["incident"]["escalation_policy"]["id"] == SECOND_POLICY_ID

    # Reassigned and escalated by a person in PagerDuty: the team follows; who is paged reaches the
    # timeline as an internal note; nothing is written back to PagerDuty.
    before = len(world.writes())
    world.control.post(
        f"/incidents/{pd_id}/delegate",
        json={"actor": RESPONDER_ID, "escalation_policy": ESCALATION_POLICY_ID},
    ).raise_for_status()
    wait_until(lambda: world.api.get(hub_path).json()["assigned_team"] == "checkout")
    world.control.post(
        f"/incidents/{pd_id}/escalate", json={"actor": RESPONDER_ID, "level": 2}
    ).raise_for_status()
    world.settle()
    notes = [e for e in world.api.get(f"{hub_path}/timeline").json() if e["origin_connector"] == "pagerduty"]
    said = [(e["message"], e["is_public"]) for e in notes if e["type"] == "NOTE"]
    assert said == [
        ("Reassigned to another escalation policy in PagerDuty; paging Riley Responder", False),
        ("Escalated in PagerDuty; paging Sam Secondary", False),
    ]
    assert world.writes()[before:] == []
    assert world.state.incidents[pd_id].assignments[0][0] == SECONDARY_ID


def test_events_api_mode_triggers_acknowledges_and_resolves_by_dedup_key(
    world: PagerDutyWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    _reconfigure(world, mode="events", routing_key={"env": "PD_ROUTING_KEY"}, events_url=world.pd.url)
    incident = world.api.post(
        "/api/v1/incidents", json={"title": "Replication lag", "severity": "SEV3_MEDIUM"}
    ).json()
    wait_until(lambda: world.state.incidents)
    world.settle()
    (pd_id,) = world.state.incidents
    key = f"incident-hub/{incident['id']}"
    assert world.state.incidents[pd_id].incident_key == key
    assert world.writes() == [("POST", "/v2/enqueue")]
    (trigger,) = world.state.ledger.entries(direction="in", path_prefix="/v2/enqueue")
    assert (trigger.body["event_action"], trigger.body["dedup_key"]) == ("trigger", key)
    assert trigger.body["payload"]["severity"] == "warning"
    assert trigger.body["payload"]["custom_details"]["hub_incident_id"] == incident["id"]
    hub_path = f"/api/v1/incidents/{incident['id']}"
    refs = world.api.get(hub_path).json()["external_refs"]
    assert refs[0]["external_id"] == key
    # PagerDuty's triggered webhook (agent: the service) was no news; the service's urgency stayed its own.
    assert world.api.get(hub_path).json()["severity"] == "SEV3_MEDIUM"

    world.api.put(f"{hub_path}/status", json={"status": "ACKNOWLEDGED", "author": "alice"}).raise_for_status()
    wait_until(lambda: world.state.incidents[pd_id].status == "acknowledged")
    world.settle()
    actions = [e.body["event_action"] for e in world.state.ledger.entries(direction="in", path_prefix="/v2/")]
    assert actions == ["trigger", "acknowledge"]
    # A note goes through the REST API (a token is configured too), to the incident found by its key.
    world.api.post(
        f"{hub_path}/timeline", json={"message": "Failing over", "author": "alice"}
    ).raise_for_status()
    wait_until(lambda: world.state.incidents[pd_id].notes)
    world.control.post(f"/incidents/{pd_id}/resolve", json={"actor": RESPONDER_ID}).raise_for_status()
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "RESOLVED")
    world.settle()
    assert [w for w in world.writes() if w[1] == "/v2/enqueue"] == [("POST", "/v2/enqueue")] * 2


def test_server_errors_rate_limits_and_timeouts_are_retried(world: PagerDutyWorld) -> None:
    world.state.knobs.fail_next = [500, 429]
    world.state.knobs.retry_after_seconds = 1
    world.api.post("/api/v1/incidents", json={"title": "Flaky PagerDuty"}).raise_for_status()
    wait_until(lambda: world.state.incidents, timeout=15)
    world.settle()
    assert len(world.state.incidents) == 1
    calls = [
        (e.method, e.status) for e in world.state.ledger.entries(direction="in", path_prefix="/incidents")
    ]
    # The create's first call (the priority look-up) met the 500; the retry, which first looks for an
    # incident the failed try may have opened, met the 429; the policy waited it out, found none, and the
    # create went through once.
    first = world.state.ledger.entries(direction="in")[0]
    assert (first.method, first.path, first.status) == ("GET", "/priorities", 500)
    assert calls[:3] == [("GET", 429), ("GET", 200), ("POST", 201)]


def test_refused_create_is_dead_and_replays_once_after_the_fix(world: PagerDutyWorld) -> None:
    world.api.put(
        "/api/v1/connectors/pagerduty",
        json=connector_config(
            world.pd, options={"from_email": HUB_EMAIL, "service_id": "PNOSUCH", "hub_user_id": HUB_USER_ID}
        ),
    )
    world.api.post("/api/v1/incidents", json={"title": "Wrong service"}).raise_for_status()
    dead = wait_until(lambda: world.api.get("/api/v1/deliveries", params={"state": "dead"}).json())
    assert dead[0]["last_status_code"] in (400, 404)
    world.api.put("/api/v1/connectors/pagerduty", json=connector_config(world.pd)).raise_for_status()
    world.api.post(f"/api/v1/deliveries/{dead[0]['id']}/replay").raise_for_status()
    wait_until(lambda: world.state.incidents)
    world.settle()
    assert len(world.state.incidents) == 1


def test_forged_and_unsigned_webhooks_are_refused(world: PagerDutyWorld) -> None:
    body = (WEBHOOKS / "zulip-fixtures" / "triggered_v3.json").read_bytes()
    post = world.api.post
    assert post("/webhooks/pagerduty", content=body).status_code == 401
    forged = {"X-PagerDuty-Signature": "v1=" + sign_sha256("not-the-secret", body)}
    assert post("/webhooks/pagerduty", content=body, headers=forged).status_code == 401
    reasons = [r["reason"] for r in world.api.get("/api/v1/webhook-rejections").json()]
    assert reasons == ["X-PagerDuty-Signature does not match the body", "missing X-PagerDuty-Signature"]


# ---- parsing the vendor's own examples (no network) ------------------------------------------------


def _connector() -> PagerDutyConnector:
    return PagerDutyConnector(
        ConnectorConfig(
            id="pagerduty",
            kind="pagerduty",
            base_url="https://api.pagerduty.com",
            webhook_secret=Secret(env="PD_WEBHOOK_SECRET"),
            options={"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": "PHUBSVC"},
        )
    )


@pytest.mark.parametrize(
    ("fixture", "kind", "status"),
    [
        ("triggered_v3.json", ChangeKind.CREATED, "triggered"),
        ("acknowledged_v3.json", ChangeKind.UPDATED, "acknowledged"),
        ("unacknowledged_v3.json", ChangeKind.UPDATED, "triggered"),
        ("resolved_v3.json", ChangeKind.UPDATED, "resolved"),
        ("reopened_v3.json", ChangeKind.UPDATED, "triggered"),
        ("escalate_v3.json", ChangeKind.UPDATED, None),
        ("reassigned_v3.json", ChangeKind.UPDATED, None),
    ],
)
def test_vendor_examples_parse_into_changes(fixture: str, kind: ChangeKind, status: str | None) -> None:
    body = (WEBHOOKS / "zulip-fixtures" / fixture).read_bytes()
    change, *notes = _connector().parse_webhook({}, body)
    data = json.loads(body)["event"]["data"]
    assert (change.kind, change.external_id) == (kind, data["id"])
    # Escalations and reassignments also tell the timeline who is paged now.
    assert [n.kind for n in notes] == (
        [ChangeKind.NOTE] if fixture in ("escalate_v3.json", "reassigned_v3.json") else []
    )
    assert all(n.note is not None and not n.note.is_public and "paging" in n.note.body for n in notes)
    if status is not None:
        assert change.fields["status"] == status
    assert change.event_id == json.loads(body)["event"]["id"]
    assert change.actor_is_self is False


def test_vendor_priority_and_note_examples_parse() -> None:
    body = (WEBHOOKS / "pagerduty-developer-docs" / "incident.priority_updated.json").read_bytes()
    (change,) = _connector().parse_webhook({}, body)
    assert change.fields["priority"] == json.loads(body)["event"]["data"]["priority"]["summary"]
    (note,) = _connector().parse_webhook({}, (WEBHOOKS / "zulip-fixtures" / "annotated_v3.json").read_bytes())
    assert note.kind is ChangeKind.NOTE and note.note is not None
    assert note.note.body.startswith("Running KILL")


def test_signature_test_vector_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_hub.connectors.base import WebhookRejected

    vector = json.loads((WEBHOOKS / "signature" / "go-pagerduty-test-vector.json").read_text())
    body = (WEBHOOKS / "signature" / vector["body_file"]).read_bytes()
    monkeypatch.setenv("PD_WEBHOOK_SECRET", vector["secret"])
    for case in vector["cases"]:
        headers = {"x-pagerduty-signature": case["header_value"]}
        if case["expect"] == "valid":
            _connector().verify_webhook(headers, body)
        else:
            with pytest.raises(WebhookRejected):
                _connector().verify_webhook(headers, body)


_FIXTURES = sorted((WEBHOOKS / "zulip-fixtures").glob("*.json"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FIXTURES), st.data())
def test_mutated_payloads_raise_only_the_typed_parse_error(path: Path, data: st.DataObject) -> None:
    payload = json.loads(path.read_text())
    event = payload["event"]
    key = data.draw(st.sampled_from([*event, *(event.get("data") or {})]))
    junk = data.draw(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
    )
    target = event if key in event else event["data"]
    if data.draw(st.booleans()):
        target[key] = junk
    else:
        target.pop(key, None)
    body = json.dumps(payload).encode()
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    with contextlib.suppress(WebhookParseError):
        _connector().parse_webhook({}, body)


def test_list_changed_finds_an_older_incident_changed_since(world: PagerDutyWorld) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    created = world.control.post("/incidents", json={"title": "Old but busy", "urgency": "low"}).json()
    pd_id = created["incident"]["id"]
    since = datetime.now(UTC) + timedelta(milliseconds=5)
    time.sleep(0.05)
    world.control.post(f"/incidents/{pd_id}/acknowledge", json={"actor": RESPONDER_ID}).raise_for_status()
    connector = world.hub.connectors.get("pagerduty")

    async def changed() -> list[tuple[str, str]]:
        return [(c.external_id, c.fields["status"]) async for c in connector.list_changed(since)]

    # Created before `since` (so `GET /incidents?since=` would not list it), acknowledged after it.
    assert asyncio.run(changed()) == [(pd_id, "acknowledged")]
