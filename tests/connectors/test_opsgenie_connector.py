"""Opsgenie both ways, through the real `opsgenie-sdk` against the Opsgenie sandbox over HTTPS.

The SDK speaks urllib3, which respx cannot see: its HTTP exchanges are tested against the sandbox over
loopback (failures injected with the sandbox's knobs), never against mocks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import (
    ChangeKind,
    ConnectorConfig,
    ExternalChange,
    OutboundNote,
    Secret,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.connectors.opsgenie import OpsgenieConnector
from incident_hub.hub import Hub
from incident_hub.mapping.document import default_for
from incident_hub.mapping.translate import to_canonical, to_vendor
from incident_hub.model import ExternalRef, Incident, Severity, Status
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.opsgenie import OpsgenieState, opsgenie_sandbox
from incident_hub.serving import ServerThread
from incident_hub.sync.retry import PermanentDeliveryError, RetryableDeliveryError
from tests.conftest import key_for, test_settings
from tests.support import VENDOR, settle, wait_until

EXAMPLES = VENDOR / "opsgenie" / "webhook-examples"
KEY, SECRET = "og-genie-key", "og-webhook-secret"
HEADER = "X-Incident-Hub-Secret"
MIA, SAM = "mia@example.com", "sam@example.com"
CONTROL = "/_sandbox/opsgenie"


def connector_config(og: Sandbox, **options: Any) -> dict[str, Any]:
    return {
        "id": "opsgenie",
        "kind": "opsgenie",
        "base_url": og.url,
        "credentials": {"env": "OG_KEY"},
        "webhook_secret": {"env": "OG_WEBHOOK_SECRET"},
        "ca_bundle": str(og.ca_bundle),
        "timeout_seconds": 2,
        "options": {"request_timeout_seconds": 3, **options},
    }


def example_incident(**changes: Any) -> Incident:
    example = Incident.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    return Incident.model_validate(example).model_copy(update={"id": uuid.uuid4(), **changes})


# ---- both ways through the hub ------------------------------------------------------------------------


class OpsgenieWorld:
    def __init__(self, hub: Hub, api: httpx.Client, og: Sandbox, state: OpsgenieState) -> None:
        self.hub, self.api, self.og, self.state = hub, api, og, state
        trust = ssl.create_default_context(cafile=str(og.ca_bundle))
        self.person = httpx.Client(base_url=og.url + CONTROL, verify=trust, timeout=10)

    def writes(self) -> list[tuple[str, str]]:
        return [(e.method, e.path) for e in self.state.ledger.writes()]

    def incidents(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/incidents").json()["items"]
        return items

    def act(self, path: str, **body: Any) -> dict[str, Any]:
        """Mia, in Opsgenie's UI."""
        response = self.person.post(path, json={"actor": MIA} | body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["data"]
        return answer

    def notes(self, incident_id: str) -> list[tuple[str, str | None]]:
        timeline = self.api.get(f"/api/v1/incidents/{incident_id}/timeline").json()
        return [
            (e["message"], e["origin_connector"])
            for e in timeline
            if e["type"] == "NOTE" and not e["message"].startswith("Updated ")
        ]

    def settle(self) -> None:
        settle(self.hub, [self.state.ledger], quiet=0.15)

    def open_hub_incident(self, **fields: Any) -> tuple[dict[str, Any], str]:
        incident: dict[str, Any] = self.api.post("/api/v1/incidents", json=fields).json()
        wait_until(lambda: self.state.alerts)
        self.settle()
        (alert_id,) = self.state.alerts
        return incident, alert_id


@pytest.fixture
def world(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsgenieWorld]:
    monkeypatch.setenv("OG_KEY", KEY)
    monkeypatch.setenv("OG_WEBHOOK_SECRET", SECRET)
    with ExitStack() as stack:
        app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
        hub: Hub = app.state.hub
        server = stack.enter_context(ServerThread(app))
        og_app, state = opsgenie_sandbox(KEY, SECRET, f"{server.url}/webhooks/opsgenie")
        og = stack.enter_context(Sandbox(og_app, state))
        api = stack.enter_context(
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10)
        )
        response = api.put("/api/v1/connectors/opsgenie", json=connector_config(og))
        assert response.status_code == 200, response.text
        world = OpsgenieWorld(hub, api, og, state)
        stack.callback(lambda: asyncio.run(hub.connectors.close()))
        stack.callback(world.person.close)
        yield world


@pytest.mark.slow
def test_hub_incident_opens_one_alert_aliased_by_the_hub_id_and_its_echo_is_dropped(
    world: OpsgenieWorld,
) -> None:
    incident, alert_id = world.open_hub_incident(
        title="Checkout down", severity="SEV2_HIGH", description="5xx everywhere"
    )

    alert = world.state.alerts[alert_id]
    assert (alert.alias, alert.message, alert.priority, alert.description) == (
        incident["id"],
        "Checkout down",
        "P2",
        "5xx everywhere",
    )
    assert alert.details == {"incident-hub-id": incident["id"], "incident-hub-number": incident["number"]}
    assert world.writes() == [("POST", "/v2/alerts")]
    # Opsgenie's Create webhook (username: the hub's `user`) was delivered and made no second incident.
    assert [e.status for e in world.state.ledger.entries(direction="out")] == [202]
    assert [i["id"] for i in world.incidents()] == [incident["id"]]
    (ref,) = world.api.get(f"/api/v1/incidents/{incident['id']}").json()["external_refs"]
    assert (ref["external_id"], ref["external_key"]) == (alert_id, alert.tiny_id)


@pytest.mark.slow
def test_alert_raised_by_a_monitor_opens_one_hub_incident_and_nothing_is_written_back(
    world: OpsgenieWorld,
) -> None:
    world.person.post(
        "/alerts",
        json={"message": "Disk 95% on db-2", "alias": "disk/db-2", "priority": "P1", "teams": ["payments"]},
    ).raise_for_status()
    (incident,) = wait_until(world.incidents)
    world.settle()

    # (The team is not applied: sync/apply.py `_first_sight` drafts title, description and severity only.)
    assert (incident["title"], incident["severity"], incident["source"]) == (
        "Disk 95% on db-2",
        "SEV1_CRITICAL",
        "opsgenie",
    )
    assert world.writes() == []


@pytest.mark.slow
def test_status_priority_and_notes_travel_both_ways_once(world: OpsgenieWorld) -> None:
    incident, alert_id = world.open_hub_incident(title="Queue lag", severity="SEV3_MEDIUM")
    alert, hub_path = world.state.alerts[alert_id], f"/api/v1/incidents/{incident['id']}"

    def hub_change(call: Callable[[], httpx.Response]) -> list[tuple[str, str]]:
        before = len(world.writes())
        call().raise_for_status()
        world.settle()
        return world.writes()[before:]

    acked = hub_change(
        lambda: world.api.put(f"{hub_path}/status", json={"status": "ACKNOWLEDGED", "author": "alice"})
    )
    assert acked == [("POST", f"/v2/alerts/{alert_id}/acknowledge")]
    assert alert.acknowledged is True
    # INVESTIGATING writes "acknowledged" too: nothing to send.
    assert hub_change(lambda: world.api.put(f"{hub_path}/status", json={"status": "INVESTIGATING"})) == []
    raised = hub_change(lambda: world.api.patch(hub_path, json={"severity": "SEV1_CRITICAL"}))
    assert raised == [("PUT", f"/v2/alerts/{alert_id}/priority")]
    said = hub_change(
        lambda: world.api.post(
            f"{hub_path}/timeline", json={"message": "Scaling consumers", "author": "alice"}
        )
    )
    assert said == [("POST", f"/v2/alerts/{alert_id}/notes")]
    assert [n.note for n in alert.notes] == ["[incident-hub] alice: Scaling consumers"]
    hub_incident = world.api.get(hub_path).json()
    assert (hub_incident["status"], hub_incident["severity"]) == ("INVESTIGATING", "SEV1_CRITICAL")
    assert world.notes(incident["id"]) == [("Scaling consumers", None)]

    before = len(world.writes())
    world.act(f"/alerts/{alert_id}/priority", priority="P4")
    wait_until(lambda: world.api.get(hub_path).json()["severity"] == "SEV4_LOW")
    world.act(f"/alerts/{alert_id}/notes", note="Found the bad deploy")
    wait_until(lambda: len(world.notes(incident["id"])) == 2)
    world.act(f"/alerts/{alert_id}/close")
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "RESOLVED")
    world.settle()

    assert world.notes(incident["id"]) == [("Scaling consumers", None), ("Found the bad deploy", "opsgenie")]
    assert world.writes()[before:] == []
    assert len(alert.notes) == 2


@pytest.mark.slow
def test_hub_reopen_refires_the_alias_and_the_ref_moves_to_the_new_alert(world: OpsgenieWorld) -> None:
    incident, first = world.open_hub_incident(title="Cert expiry", severity="SEV2_HIGH")
    hub_path = f"/api/v1/incidents/{incident['id']}"
    world.api.put(f"{hub_path}/status", json={"status": "RESOLVED"}).raise_for_status()
    world.settle()
    assert world.state.alerts[first].status == "closed"

    world.api.put(f"{hub_path}/status", json={"status": "INVESTIGATING"}).raise_for_status()
    second = wait_until(lambda: next((a for a in world.state.alerts if a != first), None))
    wait_until(lambda: world.state.alerts[second].acknowledged)
    world.settle()

    alert = world.state.alerts[second]
    assert (alert.alias, alert.status, alert.priority) == (incident["id"], "open", "P2")
    (ref,) = world.api.get(hub_path).json()["external_refs"]
    assert ref["external_id"] == second
    # The new alert's Create webhook (the hub's own) opened nothing and moved nothing back.
    assert [i["id"] for i in world.incidents()] == [incident["id"]]
    assert world.api.get(hub_path).json()["status"] == "INVESTIGATING"


@pytest.mark.slow
def test_alert_firing_again_with_the_hub_alias_reopens_the_resolved_incident(world: OpsgenieWorld) -> None:
    incident, first = world.open_hub_incident(title="Disk full on db-2", severity="SEV3_MEDIUM")
    hub_path = f"/api/v1/incidents/{incident['id']}"
    world.act(f"/alerts/{first}/close")
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "RESOLVED")
    world.settle()

    # The monitor fires again with the same alias: Opsgenie opens a new alert (the old one is closed).
    second = world.person.post(
        "/alerts", json={"message": "Disk full on db-2", "alias": incident["id"], "priority": "P2"}
    ).json()["data"]["id"]
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "OPEN")
    world.settle()

    assert second != first
    assert [i["id"] for i in world.incidents()] == [incident["id"]]
    (ref,) = world.api.get(hub_path).json()["external_refs"]
    assert ref["external_id"] == second
    assert world.api.get(hub_path).json()["severity"] == "SEV2_HIGH"


@pytest.mark.slow
def test_server_errors_and_rate_limits_are_retried_and_the_alert_is_made_once(world: OpsgenieWorld) -> None:
    # The 500 meets the create: its outcome unknown, the hub looks for the alert through a short window.
    config = connector_config(world.og) | {"in_doubt_schedule_seconds": [0.3, 0.3]}
    world.api.put("/api/v1/connectors/opsgenie", json=config).raise_for_status()
    world.state.knobs.fail_next, world.state.knobs.retry_after_seconds = [500, 429], 1
    world.api.post("/api/v1/incidents", json={"title": "Flaky Opsgenie"}).raise_for_status()
    wait_until(lambda: world.state.alerts, timeout=15)
    world.settle()

    injected = [(e.method, e.status) for e in world.state.ledger.entries() if e.note == "injected"]
    assert sorted(status or 0 for _, status in injected) == [429, 500]
    assert [w for w in world.writes() if w == ("POST", "/v2/alerts")] == [("POST", "/v2/alerts")]
    assert len(world.state.alerts) == 1


@pytest.mark.slow
def test_request_that_ends_failed_is_a_dead_delivery_with_opsgenies_status(world: OpsgenieWorld) -> None:
    incident, alert_id = world.open_hub_incident(title="Cache cold")
    world.state.request_knobs.fail_next = ["Alert does not exist"]

    world.api.put(
        f"/api/v1/incidents/{incident['id']}/status", json={"status": "RESOLVED"}
    ).raise_for_status()

    (dead,) = wait_until(lambda: world.api.get("/api/v1/deliveries", params={"state": "dead"}).json())
    assert "request" in dead["last_error"] and "failed: Alert does not exist" in dead["last_error"]
    assert world.state.alerts[alert_id].status == "open"
    world.api.post(f"/api/v1/deliveries/{dead['id']}/replay").raise_for_status()
    wait_until(lambda: world.state.alerts[alert_id].status == "closed")


@pytest.mark.slow
def test_webhooks_without_the_secret_are_refused(world: OpsgenieWorld) -> None:
    body = (EXAMPLES / "zulip-fixtures" / "acknowledge.json").read_bytes()
    post = world.api.post
    assert post("/webhooks/opsgenie", content=body).status_code == 401
    assert post("/webhooks/opsgenie", content=body, headers={HEADER: "guess"}).status_code == 401
    reasons = [r["reason"] for r in world.api.get("/api/v1/webhook-rejections").json()]
    assert reasons == [f"{HEADER} does not match", f"missing {HEADER}"]
    assert world.incidents() == []


# ---- the connector against the sandbox alone ----------------------------------------------------------


@pytest.fixture
def open_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., tuple[OpsgenieConnector, Sandbox]]]:
    """A connector on its own sandbox (no hub, no webhooks)."""
    monkeypatch.setenv("OG_KEY", KEY)
    monkeypatch.setenv("OG_WEBHOOK_SECRET", SECRET)
    with ExitStack() as stack:

        def open_(**config: Any) -> tuple[OpsgenieConnector, Sandbox]:
            app, state = opsgenie_sandbox(KEY)
            og = stack.enter_context(Sandbox(app, state))
            options = config.pop("options", {})
            values = connector_config(og, **options) | config
            connector = OpsgenieConnector(ConnectorConfig.model_validate(values))
            stack.callback(lambda: asyncio.run(connector.close()))
            return connector, og

        yield open_


def state_of(og: Sandbox) -> OpsgenieState:
    assert isinstance(og.state, OpsgenieState)
    return og.state


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_create_carries_the_hub_id_and_is_idempotent_by_alias(open_connector: Callable[..., Any]) -> None:
    connector, og = open_connector()
    incident = example_incident(assigned_team="payments")  # ACKNOWLEDGED, SEV2_HIGH
    wanted = to_vendor(connector.mapping(), incident)

    created = run(connector.create(incident, wanted))
    again = run(connector.create(incident, wanted))  # a retry after a lost answer

    alert = state_of(og).alerts[created.external_id]
    assert again.external_id == created.external_id and len(state_of(og).alerts) == 1
    assert (alert.alias, alert.priority, alert.acknowledged, alert.count) == (str(incident.id), "P2", True, 2)
    assert [state_of(og).team_name(t) for t in alert.team_ids] == ["payments"]
    assert alert.tags == ["incident-hub"]
    assert (created.external_key, created.vendor_timestamp is not None) == (alert.tiny_id, True)
    found = run(connector.find(incident))
    assert found is not None and found.external_id == created.external_id
    assert run(connector.find(example_incident())) is None


def test_every_write_polls_its_request_until_processed(open_connector: Callable[..., Any]) -> None:
    connector, og = open_connector()
    state_of(og).request_knobs.delay_seconds = 0.3
    started = time.monotonic()

    created = run(connector.create(example_incident(status=Status.OPEN), {"priority": "P3"}))

    assert time.monotonic() - started >= 0.3
    polls = [e.status for e in state_of(og).ledger.entries(path_prefix="/v2/alerts/requests/")]
    assert polls[0] == 404 and polls[-1] == 200
    assert created.external_id in state_of(og).alerts


def test_request_that_ends_failed_raises_a_permanent_error_with_opsgenies_status(
    open_connector: Callable[..., Any],
) -> None:
    connector, og = open_connector()
    created = run(connector.create(example_incident(status=Status.OPEN), {}))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)
    state_of(og).request_knobs.fail_next = ["Alert does not exist"]

    with pytest.raises(PermanentDeliveryError, match=r"Acknowledge request .* failed: Alert does not exist"):
        run(connector.update(ref, {"status": "acknowledged"}))
    assert state_of(og).alerts[created.external_id].acknowledged is False


def test_request_never_processed_is_retryable(open_connector: Callable[..., Any]) -> None:
    connector, og = open_connector(options={"request_timeout_seconds": 0.3})
    state_of(og).request_knobs.delay_seconds = 30

    with pytest.raises(RetryableDeliveryError, match=r"not processed after 0\.3 s"):
        run(connector.create(example_incident(), {}))


@pytest.mark.parametrize(
    ("knobs", "error", "status"),
    [
        ({"fail_next": [500]}, RetryableDeliveryError, 500),
        ({"fail_next": [503]}, RetryableDeliveryError, 503),
        ({"fail_next": [400]}, PermanentDeliveryError, 400),
        ({"fail_next": [403]}, PermanentDeliveryError, 403),
        ({"rate_limit_next": 1, "retry_after_seconds": 7}, RetryableDeliveryError, 429),
    ],
)
def test_failures_are_typed_for_the_retry_policy(
    open_connector: Callable[..., Any], knobs: dict[str, Any], error: type[Exception], status: int
) -> None:
    connector, og = open_connector()
    for name, value in knobs.items():
        setattr(state_of(og).knobs, name, value)
    ref = ExternalRef(connector_id="opsgenie", external_id="nope")

    with pytest.raises(error) as raised:
        run(connector.fetch(ref))

    assert getattr(raised.value, "status_code", None) == status
    if status == 429:
        assert raised.value.retry_after == 7  # type: ignore[attr-defined]
    # One attempt: the SDK's own retry loop is off.
    assert len(state_of(og).ledger.entries(direction="in")) == 1


def test_a_call_that_times_out_is_retryable(open_connector: Callable[..., Any]) -> None:
    connector, og = open_connector(timeout_seconds=1)
    state_of(og).knobs.timeout_next, state_of(og).knobs.timeout_seconds = 1, 3

    with pytest.raises(RetryableDeliveryError, match="Timeout"):
        run(connector.fetch(ExternalRef(connector_id="opsgenie", external_id="nope")))


def test_wrong_key_is_a_permanent_error_and_unhealthy(open_connector: Callable[..., Any]) -> None:
    connector, _ = open_connector()
    assert run(connector.health()).ok is True
    stranger, og = open_connector(credentials={"env": "OG_WEBHOOK_SECRET"})

    health = run(stranger.health())

    assert health.ok is False and "HTTP 401" in health.detail and "Could not authenticate" in health.detail
    assert "authorization" not in state_of(og).ledger.entries()[0].headers


def test_tls_trusts_the_configured_bundle_only(
    open_connector: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # REQUESTS_CA_BUNDLE (the system store here) must not replace the configured bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile or "")
    connector, _ = open_connector()
    assert run(connector.health()).ok is True

    untrusting, other = open_connector(ca_bundle=None)
    health = run(untrusting.health())
    assert health.ok is False and "CERTIFICATE_VERIFY_FAILED" in health.detail
    assert state_of(other).ledger.entries() == []


def test_status_moves_write_acknowledge_unacknowledge_close_and_a_reopen_refires_the_alias(
    open_connector: Callable[..., Any],
) -> None:
    connector, og = open_connector()
    incident = example_incident(status=Status.OPEN, severity=Severity.SEV3_MEDIUM)
    created = run(connector.create(incident, to_vendor(connector.mapping(), incident)))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)
    alert = state_of(og).alerts[created.external_id]

    run(connector.update(ref, {"status": "acknowledged"}))
    assert alert.acknowledged is True
    run(connector.update(ref, {"status": "open"}))
    assert alert.acknowledged is False
    run(connector.update(ref, {"status": "closed", "priority": "P1"}))
    assert (alert.status, alert.priority) == ("closed", "P1")

    reopened = run(connector.update(ref, {"status": "acknowledged"}))

    assert reopened.external_id != created.external_id
    refired = state_of(og).alerts[reopened.external_id]
    assert (refired.alias, refired.status, refired.acknowledged, refired.priority) == (
        str(incident.id),
        "open",
        True,
        "P1",
    )
    assert refired.details["incident-hub-id"] == str(incident.id)


def test_team_is_added_or_escalated_and_owner_assigned_by_the_configured_maps(
    open_connector: Callable[..., Any],
) -> None:
    connector, og = open_connector(
        options={"escalations": {"platform": "platform_escalation"}, "users": {"mia": MIA}}
    )
    created = run(connector.create(example_incident(status=Status.OPEN), {}))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)

    run(connector.update(ref, {"team": "payments", "owner": "mia"}))
    run(connector.update(ref, {"team": "platform"}))

    alert = state_of(og).alerts[created.external_id]
    assert [state_of(og).team_name(t) for t in alert.team_ids] == ["payments"]
    assert alert.owner == MIA
    writes = [e.path.rsplit("/", 1)[-1] for e in state_of(og).ledger.writes()]
    assert writes[1:] == ["teams", "assign", "escalate"]
    assert connector.mapping().fields["assignee"] == "owner"


def test_notes_carry_the_origin_and_fetch_reads_status_and_the_hub_id(
    open_connector: Callable[..., Any],
) -> None:
    connector, og = open_connector()
    incident = example_incident(status=Status.OPEN)
    created = run(connector.create(incident, {"priority": "P5"}))
    ref = ExternalRef(connector_id="opsgenie", external_id=created.external_id)
    note = OutboundNote(body="[jira] alice: Rolled back", author="alice", origin="jira")

    run(connector.add_note(ref, note))
    run(connector.update(ref, {"status": "acknowledged"}))
    snapshot = run(connector.fetch(ref))

    assert [n.note for n in state_of(og).alerts[created.external_id].notes] == ["[jira] alice: Rolled back"]
    assert snapshot.kind is ChangeKind.SNAPSHOT and snapshot.hub_incident_id == str(incident.id)
    assert snapshot.fields["status"] == "acknowledged" and snapshot.fields["priority"] == "P5"
    patch = to_canonical(connector.mapping(), None, snapshot.fields)
    assert (patch.status, patch.severity) == (Status.ACKNOWLEDGED, Severity.SEV4_LOW)


def test_changes_since_a_moment_are_read_in_pages_oldest_change_first(
    open_connector: Callable[..., Any],
) -> None:
    connector, og = open_connector(options={"page_size": 2})
    before = run(connector.create(example_incident(title="before"), {}))
    time.sleep(0.01)
    moment = datetime.now(UTC)
    made = [run(connector.create(example_incident(title=f"after {n}"), {})) for n in range(3)]
    ref = ExternalRef(connector_id="opsgenie", external_id=made[0].external_id)
    run(connector.update(ref, {"priority": "P1"}))  # now the latest change

    async def changed() -> list[ExternalChange]:
        return [c async for c in connector.list_changed(moment)]

    found = run(changed())
    assert [c.external_id for c in found] == [made[1].external_id, made[2].external_id, made[0].external_id]
    assert before.external_id not in {c.external_id for c in found}
    lists = [e.query for e in state_of(og).ledger.entries(path_prefix="/v2/alerts") if e.path == "/v2/alerts"]
    lists = [q for q in lists if "query=" in q]
    assert len(lists) == 2 and "offset=2" in lists[1] and "sort=updatedAt" in lists[0]


# ---- webhooks: verification and the vendor's own examples (no network) ---------------------------------


def _connector(**options: Any) -> OpsgenieConnector:
    return OpsgenieConnector(
        ConnectorConfig(
            id="opsgenie",
            kind="opsgenie",
            base_url="https://api.opsgenie.com",
            webhook_secret=Secret(env="OG_WEBHOOK_SECRET"),
            options=options,
        )
    )


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OG_WEBHOOK_SECRET", SECRET)


def _example(name: str) -> bytes:
    folder = "opsgenie-docs" if name == "docs-create.json" else "zulip-fixtures"
    return (EXAMPLES / folder / name.removeprefix("docs-")).read_bytes()


def test_header_secret_is_checked_in_constant_time_and_case_insensitively() -> None:
    connector = _connector()
    connector.verify_webhook({"x-incident-hub-secret": SECRET}, b"{}")
    for refused in ({}, {"x-incident-hub-secret": SECRET + "x"}, {"x-incident-hub-secret": "ünïcode"}):
        with pytest.raises(WebhookRejected) as rejected:
            connector.verify_webhook(refused, b"{}")
        assert rejected.value.status == 401


def test_basic_auth_is_checked_when_configured() -> None:
    connector = _connector(webhook_auth="basic", webhook_username="opsgenie")

    def basic(user: str, password: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    connector.verify_webhook(basic("opsgenie", SECRET), b"{}")
    for refused in (
        {},
        basic("opsgenie", "guess"),
        basic("intruder", SECRET),
        {"authorization": "Basic !!!"},
        {"authorization": f"Bearer {SECRET}"},
    ):
        with pytest.raises(WebhookRejected):
            connector.verify_webhook(refused, b"{}")


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    connector = OpsgenieConnector(
        ConnectorConfig(id="opsgenie", kind="opsgenie", base_url="https://api.opsgenie.com")
    )
    with pytest.raises(WebhookRejected, match="carry no signature"):
        connector.verify_webhook({"x-incident-hub-secret": SECRET}, b"{}")


@pytest.mark.parametrize(
    ("example", "kind", "fields"),
    [
        (
            "docs-create.json",
            ChangeKind.CREATED,
            {"status": "open", "message": " test alert", "team": "team1"},
        ),
        ("create.json", ChangeKind.CREATED, {"status": "open", "message": "another alert", "priority": "P3"}),
        ("acknowledge.json", ChangeKind.UPDATED, {"status": "acknowledged"}),
        ("unacknowledge.json", ChangeKind.UPDATED, {"status": "open"}),
        ("close.json", ChangeKind.UPDATED, {"status": "closed"}),
        ("addteam.json", ChangeKind.UPDATED, {"team": "team2"}),
        ("assignownership.json", ChangeKind.UPDATED, {"owner": "user2@ifountain.com"}),
        ("takeownership.json", ChangeKind.UPDATED, {"owner": "test@test.com"}),
        ("addtags.json", ChangeKind.UPDATED, {}),
        ("removetags.json", ChangeKind.UPDATED, {}),
        ("addrecipient.json", ChangeKind.UPDATED, {}),
        ("customaction.json", ChangeKind.UPDATED, {}),
        ("delete.json", ChangeKind.DELETED, {}),
    ],
)
def test_vendor_examples_parse_into_changes(example: str, kind: ChangeKind, fields: dict[str, Any]) -> None:
    body = _example(example)
    payload = json.loads(body)
    (change,) = _connector().parse_webhook({}, body)

    assert (change.kind, change.external_id, change.fields) == (kind, payload["alert"]["alertId"], fields)
    assert change.external_key == payload["alert"]["tinyId"]
    stamp = payload["alert"]["updatedAt"]
    assert change.vendor_timestamp == datetime.fromtimestamp(stamp // 10**9, UTC) + timedelta(
        microseconds=stamp % 10**9 // 1000
    )
    assert change.event_id == f"{payload['alert']['alertId']}:{payload['action']}:{stamp}"
    assert change.event_id == _connector().webhook_event_id({}, body)
    assert (change.actor, change.actor_is_self) == (payload["alert"]["username"], False)
    assert change.hub_incident_id is None  # "aliastest", or an alias equal to the alert id
    assert change.raw == payload


def test_vendor_note_example_parses_into_a_note() -> None:
    (change,) = _connector().parse_webhook({}, _example("addnote.json"))
    assert change.kind is ChangeKind.NOTE and change.note is not None
    assert (change.note.body, change.note.author) == ("note to test alert", "fili@ifountain.com")
    assert change.note.external_comment_id == "052652ac-5d1c-464a-812a-7dd18bbfba8c@1420452275002000962"


def test_escalation_notice_changes_nothing() -> None:
    assert _connector().parse_webhook({}, _example("escalate.json")) == []
    assert _connector().webhook_event_id({}, _example("escalate.json")) is not None


def test_nanosecond_update_time_is_read_exactly() -> None:
    (change,) = _connector().parse_webhook({}, _example("unacknowledge.json"))
    # 1420452224764002246 ns: a double would round the microseconds away.
    assert change.vendor_timestamp == datetime(2015, 1, 5, 10, 3, 44, 764002, tzinfo=UTC)


def test_changes_by_the_hubs_own_user_or_api_source_are_marked_as_echoes() -> None:
    payload = json.loads(_example("acknowledge.json"))
    payload["alert"]["username"] = "incident-hub"
    (by_user,) = _connector().parse_webhook({}, json.dumps(payload).encode())
    payload["alert"]["username"] = "System"
    payload["source"] = {"name": "incident-hub", "type": "API"}
    (by_source,) = _connector().parse_webhook({}, json.dumps(payload).encode())
    payload["source"] = {"name": "incident-hub", "type": "web"}
    (by_person,) = _connector().parse_webhook({}, json.dumps(payload).encode())
    assert (by_user.actor_is_self, by_source.actor_is_self, by_person.actor_is_self) == (True, True, False)


def test_create_with_a_hub_alias_names_the_incident_for_the_reopen_rule() -> None:
    hub_id = str(uuid.uuid4())
    payload = json.loads(_example("create.json"))
    payload["alert"] |= {"alias": hub_id, "alertId": "new-alert-id"}
    (change,) = _connector(reopen_window_seconds=3600).parse_webhook({}, json.dumps(payload).encode())
    assert (change.kind, change.external_id, change.hub_incident_id, change.reopen_window_seconds) == (
        ChangeKind.CREATED,
        "new-alert-id",
        hub_id,
        3600.0,
    )
    payload["alert"] |= {"alias": "disk/db-2", "details": {"incident-hub-id": hub_id}}
    (by_detail,) = _connector().parse_webhook({}, json.dumps(payload).encode())
    assert by_detail.hub_incident_id == hub_id


def test_teams_and_owners_read_back_in_canonical_names() -> None:
    connector = _connector(teams={"payments": "Payments Team"}, users={"mia": MIA})
    payload = json.loads(_example("addteam.json"))
    payload["alert"]["team"] = "Payments Team"
    (team,) = connector.parse_webhook({}, json.dumps(payload).encode())
    payload = json.loads(_example("assignownership.json"))
    payload["alert"]["owner"] = "MIA@example.com"
    (owner,) = connector.parse_webhook({}, json.dumps(payload).encode())
    assert (team.fields, owner.fields) == ({"team": "payments"}, {"owner": "mia"})


def test_default_mapping_is_total_stable_and_reads_p5_as_sev4() -> None:
    mapping = default_for("opsgenie")
    for status in Status:
        for severity in Severity:
            incident = example_incident(status=status, severity=severity)
            written = to_vendor(mapping, incident)
            assert to_canonical(mapping, incident, written).is_empty()
    assert to_canonical(mapping, None, {"priority": "P5"}).severity is Severity.SEV4_LOW
    working = example_incident(status=Status.MONITORING)
    assert to_canonical(mapping, working, {"status": "acknowledged"}).status is None
    assert to_canonical(mapping, working, {"status": "closed"}).status is Status.RESOLVED


_EXAMPLES = [
    *sorted((EXAMPLES / "zulip-fixtures").glob("*.json")),
    EXAMPLES / "opsgenie-docs" / "create.json",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(_EXAMPLES), st.data())
def test_mutated_payloads_raise_only_the_typed_parse_error(path: Path, data: st.DataObject) -> None:
    payload = json.loads(path.read_text())
    containers: list[dict[str, Any]] = [payload]
    for key in ("alert", "source", "escalationNotify"):
        if isinstance(payload.get(key), dict):
            containers.append(payload[key])
    target = data.draw(st.sampled_from([c for c in containers if c]))
    key = data.draw(st.sampled_from(sorted(target)))
    junk = data.draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
    )
    if data.draw(st.booleans()):
        target[key] = junk
    else:
        target.pop(key)
    body = json.dumps(payload).encode()
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    connector = _connector()
    connector.webhook_event_id({}, body)  # never raises
    with contextlib.suppress(WebhookParseError):
        connector.parse_webhook({}, body)


def test_escalate_notice_is_kept_without_the_integration_headers_it_repeats() -> None:
    body = (EXAMPLES / "zulip-fixtures" / "escalate.json").read_bytes()
    assert "headers" in json.loads(body)
    kept = json.loads(_connector().stored_body(body))
    assert "headers" not in kept and kept["alert"] == json.loads(body)["alert"]
