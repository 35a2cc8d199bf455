"""Jira both ways, through the real `jira` client against the Jira Cloud sandbox over HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
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
    Secret,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.connectors.jira import JiraConnector
from incident_hub.hub import Hub
from incident_hub.mapping.translate import to_vendor
from incident_hub.model import ExternalRef, Incident
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.jira import (
    HUMAN_ACCOUNT_ID,
    SERVICE_ACCOUNT_ID,
    SEVERITY_FIELD,
    JiraState,
    jira_sandbox,
)
from incident_hub.sandbox.jira.render import adf_text
from incident_hub.serving import ServerThread
from incident_hub.signing import sign_sha256
from incident_hub.sync.retry import PermanentDeliveryError
from tests.conftest import key_for, test_settings
from tests.support import VENDOR, settle, wait_until

JIRA_FILES = VENDOR / "jira"
EXAMPLES = JIRA_FILES / "webhook-examples" / "mattermost-plugin-jira"
EMAIL, TOKEN, SECRET = "hub@example.com", "jira-api-token", "jira-webhook-secret"
API = "/rest/api/3"
MIA = {"actor": HUMAN_ACCOUNT_ID}


def connector_config(jira: Sandbox, *, signed: bool = True, **options: Any) -> dict[str, Any]:
    return {
        "id": "jira",
        "kind": "jira",
        "base_url": jira.url,
        "credentials": {"env": "JIRA_TOKEN"},
        "webhook_secret": {"env": "JIRA_WEBHOOK_SECRET"} if signed else None,
        "ca_bundle": str(jira.ca_bundle),
        "timeout_seconds": 1,
        "options": {"email": EMAIL, "project_key": "OPS", "hub_account_id": SERVICE_ACCOUNT_ID, **options},
    }


class JiraWorld:
    def __init__(self, hub: Hub, api: httpx.Client, jira: Sandbox, state: JiraState) -> None:
        self.hub, self.api, self.jira, self.state = hub, api, jira, state
        trust = ssl.create_default_context(cafile=str(jira.ca_bundle))
        self.person = httpx.Client(base_url=f"{jira.url}/_sandbox/jira", verify=trust, timeout=10)

    def writes(self) -> list[tuple[str, str]]:
        return [(e.method, e.path) for e in self.state.ledger.writes()]

    def incidents(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/incidents").json()["items"]
        return items

    def act(self, path: str, **body: Any) -> dict[str, Any]:
        """Mia Krystof, in Jira's UI."""
        response = self.person.post(path, json=MIA | body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def notes(self, incident_id: str) -> list[tuple[str, str | None]]:
        timeline = self.api.get(f"/api/v1/incidents/{incident_id}/timeline").json()
        # Field edits are logged as notes too ("Updated severity"): only written notes are kept.
        return [
            (e["message"], e["origin_connector"])
            for e in timeline
            if e["type"] == "NOTE" and not e["message"].startswith("Updated ")
        ]

    def settle(self) -> None:
        """Until the sandbox's webhooks are in and the hub's inbox and outbox are drained."""
        settle(self.hub, [self.state.ledger], quiet=0.15)

    def open_hub_incident(self, **fields: Any) -> tuple[dict[str, Any], str]:
        incident: dict[str, Any] = self.api.post("/api/v1/incidents", json=fields).json()
        wait_until(lambda: self.state.issues)
        self.settle()
        (issue_id,) = self.state.issues
        return incident, issue_id


@pytest.fixture
def start_world(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., JiraWorld]]:
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", SECRET)
    with ExitStack() as stack:

        def start(*, signed: bool = True) -> JiraWorld:
            app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
            hub: Hub = app.state.hub
            server = stack.enter_context(ServerThread(app))
            jira_app, state = jira_sandbox(
                EMAIL, TOKEN, SECRET if signed else None, f"{server.url}/webhooks/jira"
            )
            jira = stack.enter_context(Sandbox(jira_app, state))
            api = stack.enter_context(
                httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10)
            )
            response = api.put("/api/v1/connectors/jira", json=connector_config(jira, signed=signed))
            assert response.status_code == 200, response.text
            world = JiraWorld(hub, api, jira, state)
            # Idle keep-alive connections hold a server's shutdown up: close the clients first.
            stack.callback(lambda: asyncio.run(hub.connectors.close()))
            stack.callback(world.person.close)
            return world

        yield start


@pytest.fixture
def world(start_world: Callable[..., JiraWorld]) -> JiraWorld:
    return start_world()


# ---- both ways through the hub ------------------------------------------------------------------------


def test_hub_incident_opens_one_issue_carrying_the_hub_id_and_its_echo_is_dropped(world: JiraWorld) -> None:
    description = "5xx everywhere\nsince the deploy\n\nEU only"
    incident, issue_id = world.open_hub_incident(
        title="Checkout down", severity="SEV2_HIGH", description=description
    )

    issue = world.state.issues[issue_id]
    assert (issue.key, issue.summary, issue.priority.name, issue.status.name) == (
        "OPS-1",
        "Checkout down",
        "High",
        "To Do",
    )
    assert issue.description is not None and adf_text(issue.description) == description
    assert issue.labels == ["incident-hub", f"incident-hub-{incident['id']}"]
    assert world.writes() == [("POST", f"{API}/issue")]
    # Jira's jira:issue_created webhook (user: the hub's account) was delivered and made no second incident.
    assert [e.status for e in world.state.ledger.entries(direction="out")] == [202]
    assert [i["id"] for i in world.incidents()] == [incident["id"]]
    (ref,) = world.api.get(f"/api/v1/incidents/{incident['id']}").json()["external_refs"]
    assert (ref["external_id"], ref["external_key"], ref["url"]) == (
        issue_id,
        "OPS-1",
        f"{world.jira.url}/browse/OPS-1",
    )


def test_issue_opened_by_a_person_makes_one_hub_incident_and_nothing_is_written_back(
    world: JiraWorld,
) -> None:
    world.act("/issues", summary="Disk 95% on db-2", description="Since 03:00", priority="Highest")
    incident = wait_until(world.incidents)[0]
    world.settle()

    assert (incident["title"], incident["description"], incident["severity"], incident["source"]) == (
        "Disk 95% on db-2",
        "Since 03:00",
        "SEV1_CRITICAL",
        "jira",
    )
    assert len(world.incidents()) == 1
    # The ledger holds Jira API calls only (Mia worked in the UI): the hub wrote nothing.
    assert world.writes() == []


def test_status_priority_and_comments_travel_both_ways_once(world: JiraWorld) -> None:
    incident, issue_id = world.open_hub_incident(title="Queue lag", severity="SEV3_MEDIUM")
    issue, hub_path = world.state.issues[issue_id], f"/api/v1/incidents/{incident['id']}"

    def hub_change(call: Callable[[], httpx.Response]) -> list[tuple[str, str]]:
        before = len(world.writes())
        call().raise_for_status()
        world.settle()
        return world.writes()[before:]

    moved = hub_change(
        lambda: world.api.put(f"{hub_path}/status", json={"status": "ACKNOWLEDGED", "author": "alice"})
    )
    assert moved == [("POST", f"{API}/issue/{issue_id}/transitions")]
    assert issue.status.name == "In Progress"
    raised = hub_change(lambda: world.api.patch(hub_path, json={"severity": "SEV1_CRITICAL"}))
    assert raised == [("PUT", f"{API}/issue/{issue_id}")]
    assert issue.priority.name == "Highest"
    said = hub_change(
        lambda: world.api.post(
            f"{hub_path}/timeline", json={"message": "Scaling consumers", "author": "alice"}
        )
    )
    assert said == [("POST", f"{API}/issue/{issue_id}/comment")]
    assert [adf_text(c.body) for c in issue.comments] == ["[incident-hub] alice: Scaling consumers"]
    # The hub's three writes came back as webhooks by its own account: none changed the incident.
    hub_incident = world.api.get(hub_path).json()
    assert (hub_incident["status"], hub_incident["severity"]) == ("ACKNOWLEDGED", "SEV1_CRITICAL")
    assert world.notes(incident["id"]) == [("Scaling consumers", None)]

    before = len(world.writes())
    world.act(f"/issues/{issue.key}/priority", priority="Low")
    wait_until(lambda: world.api.get(hub_path).json()["severity"] == "SEV4_LOW")
    world.act(f"/issues/{issue.key}/comments", body="Found the bad deploy")
    # Jira sends webhooks in no guaranteed order, and the sync engine drops a change older than the last
    # vendor time it saw for the issue, notes included: let the comment land first.
    wait_until(lambda: len(world.notes(incident["id"])) == 2)
    world.act(f"/issues/{issue.key}/transitions", to="Done")
    wait_until(lambda: world.api.get(hub_path).json()["status"] == "RESOLVED")
    world.settle()

    assert world.notes(incident["id"]) == [("Scaling consumers", None), ("Found the bad deploy", "jira")]
    # Nothing Mia did in Jira was written back to Jira by the hub.
    assert world.writes()[before:] == []
    assert len(issue.comments) == 2


def test_cancelled_issue_resolves_and_a_hub_reopen_walks_the_workflow_back(world: JiraWorld) -> None:
    key = world.act("/issues", summary="Cert expiry on edge")["key"]
    incident = wait_until(world.incidents)[0]
    world.act(f"/issues/{key}/transitions", to="Cancelled")
    wait_until(lambda: world.api.get(f"/api/v1/incidents/{incident['id']}").json()["status"] == "RESOLVED")
    world.settle()
    issue = next(iter(world.state.issues.values()))

    world.api.put(
        f"/api/v1/incidents/{incident['id']}/status", json={"status": "INVESTIGATING", "author": "bob"}
    ).raise_for_status()
    wait_until(lambda: issue.status.name == "In Progress")
    world.settle()

    # Cancelled -> In Progress has no transition: Reopen (to To Do), then Start Progress.
    transitions = f"{API}/issue/{issue.id}/transitions"
    assert world.writes() == [("POST", transitions), ("POST", transitions)]
    # The hop through To Do was the hub's own change: it did not move the incident back to OPEN.
    assert world.api.get(f"/api/v1/incidents/{incident['id']}").json()["status"] == "INVESTIGATING"


def test_server_errors_rate_limits_and_timeouts_are_retried(world: JiraWorld) -> None:
    config = connector_config(world.jira) | {"in_doubt_schedule_seconds": [0.3, 0.3]}
    world.api.put("/api/v1/connectors/jira", json=config).raise_for_status()
    knobs = world.state.knobs
    knobs.fail_next, knobs.retry_after_seconds = [500, 429], 1
    knobs.timeout_next, knobs.timeout_seconds = 1, 1.5
    world.api.post("/api/v1/incidents", json={"title": "Flaky Jira"}).raise_for_status()
    wait_until(lambda: world.state.issues, timeout=15)
    world.settle()

    def injected() -> list[tuple[str, int | None]]:
        return [(e.path, e.status) for e in world.state.ledger.entries() if e.note == "injected"]

    # The push's create met the 500: its outcome unknown, the delivery looked for the issue (the looks met
    # the 429, with Retry-After: 1, and the hung call, logged when the sandbox gives up on it; the retry
    # policy waited them out), found none in the whole in-doubt window, and created the issue once.
    wait_until(lambda: len(injected()) == 3)
    assert sorted(status or 0 for _, status in injected()) == [429, 500, 504]
    assert injected()[0][0] == f"{API}/issue"  # then the look-ups before the next tries met the rest
    received = [e for e in world.state.ledger.entries(direction="in") if e.note != "injected"]
    assert [(e.path, e.status) for e in received if e.method == "POST"] == [(f"{API}/issue", 201)]
    assert any(e.path.startswith(f"{API}/search") for e in received)
    assert len(world.state.issues) == 1


def test_missing_required_field_is_dead_with_jiras_error_and_replays_once_after_the_fix(
    world: JiraWorld,
) -> None:
    config = connector_config(world.jira, project_key="SEC")
    world.api.put("/api/v1/connectors/jira", json=config).raise_for_status()
    world.api.post("/api/v1/incidents", json={"title": "Leaked key", "severity": "SEV2_HIGH"})

    (dead,) = wait_until(lambda: world.api.get("/api/v1/deliveries", params={"state": "dead"}).json())
    assert dead["last_status_code"] == 400
    assert '"errors":{"customfield_10042":"Severity is required."}' in dead["last_error"]
    assert world.state.issues == {}

    config["options"]["required_fields"] = {SEVERITY_FIELD: {"value": "Sev2"}}
    world.api.put("/api/v1/connectors/jira", json=config).raise_for_status()
    world.api.post(f"/api/v1/deliveries/{dead['id']}/replay").raise_for_status()
    wait_until(lambda: world.state.issues)
    world.settle()

    (issue,) = world.state.issues.values()
    assert (issue.key, issue.custom[SEVERITY_FIELD]) == ("SEC-1", ("10101", "Sev2"))
    assert [w for w in world.writes() if w[0] == "POST"] == [("POST", f"{API}/issue")]


def test_forged_and_unsigned_webhooks_are_refused_and_an_unmapped_status_is_reported(
    world: JiraWorld,
) -> None:
    payload = json.loads((EXAMPLES / "webhook-issue-created.json").read_text())
    payload["timestamp"] = int(time.time() * 1000)
    payload["issue"]["fields"]["status"]["name"] = "Blocked"  # a status the mapping does not know
    body = json.dumps(payload).encode()
    post = world.api.post

    assert post("/webhooks/jira", content=body).status_code == 401
    forged = {"X-Hub-Signature": "sha256=" + sign_sha256("not-the-secret", body)}
    assert post("/webhooks/jira", content=body, headers=forged).status_code == 401
    reasons = [r["reason"] for r in world.api.get("/api/v1/webhook-rejections").json()]
    assert reasons == ["X-Hub-Signature does not match the body", "missing X-Hub-Signature"]
    assert world.incidents() == []

    signed = {"X-Hub-Signature": "sha256=" + sign_sha256(SECRET, body)}
    assert post("/webhooks/jira", content=body, headers=signed).status_code == 202
    (incident,) = wait_until(world.incidents)
    assert (incident["title"], incident["status"]) == ("Unit test summary", "OPEN")
    unmapped = [
        (u["connector_id"], u["field"], u["value"]) for u in world.api.get("/api/v1/unmapped-values").json()
    ]
    assert unmapped == [("jira", "status", "Blocked")]


def test_unsigned_connector_reads_what_happened_back_through_the_api(
    start_world: Callable[..., JiraWorld],
) -> None:
    world = start_world(signed=False)
    key = world.act("/issues", summary="Login errors", priority="High")["key"]
    incident = wait_until(world.incidents)[0]
    world.act(f"/issues/{key}/comments", body="Rolling back")
    wait_until(lambda: world.notes(incident["id"]))
    world.settle()
    issue = next(iter(world.state.issues.values()))

    # A forged delivery can only point at an issue: the hub reads the issue itself.
    forged = {
        "timestamp": int(time.time() * 1000),
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": HUMAN_ACCOUNT_ID},
        "issue": {"id": issue.id, "key": key, "fields": {}},
        "changelog": {"items": [{"fieldId": "summary", "fieldtype": "jira", "toString": "Pwned"}]},
    }
    assert world.api.post("/webhooks/jira", json=forged).status_code == 202
    unknown = forged | {"issue": {"id": "99999", "key": "OPS-999", "fields": {}}}
    assert world.api.post("/webhooks/jira", json=unknown).status_code == 400
    world.settle()

    hub_incident = world.api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert (hub_incident["title"], hub_incident["severity"]) == ("Login errors", "SEV2_HIGH")
    assert world.notes(incident["id"]) == [("Rolling back", "jira")]
    reads = {e.path for e in world.state.ledger.entries(direction="in", method="GET")}
    assert {f"{API}/issue/{issue.id}", f"{API}/issue/{issue.id}/comment/{issue.comments[0].id}"} <= reads
    assert world.writes() == []
    rejected = world.api.get("/api/v1/webhook-rejections").json()
    assert [r["reason"] for r in rejected] == [
        "Jira jira:issue_updated: issue 99999 (or its comment) not found"
    ]


# ---- the connector against the sandbox alone ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def open_connector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[JiraConnector, Sandbox]]]:
    """A connector on its own sandbox (no hub, no webhooks)."""
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", SECRET)
    with ExitStack() as stack:

        def open_(*, sandbox: dict[str, Any] | None = None, **config: Any) -> tuple[JiraConnector, Sandbox]:
            app, state = jira_sandbox(EMAIL, TOKEN, SECRET, None, **(sandbox or {}))
            jira = stack.enter_context(Sandbox(app, state))
            options = config.pop("options", {})
            values = connector_config(jira) | config
            connector = JiraConnector(
                ConnectorConfig.model_validate(values | {"options": values["options"] | options})
            )
            stack.callback(lambda: asyncio.run(connector.close()))
            return connector, jira

        yield open_


def person_creates(jira: Sandbox, **fields: Any) -> dict[str, Any]:
    trust = ssl.create_default_context(cafile=str(jira.ca_bundle))
    with httpx.Client(base_url=f"{jira.url}/_sandbox/jira", verify=trust) as person:
        response = person.post("/issues", json=MIA | fields)
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created


def test_health_signs_in_and_checks_the_hub_account(open_connector: Callable[..., Any]) -> None:
    connector, _ = open_connector()
    health = asyncio.run(connector.health())
    assert health.ok is True and SERVICE_ACCOUNT_ID in health.detail

    stranger, _ = open_connector(options={"hub_account_id": HUMAN_ACCOUNT_ID})
    health = asyncio.run(stranger.health())
    assert health.ok is False and "would come back as news" in health.detail


def test_tls_trusts_the_configured_bundle_only(
    open_connector: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # REQUESTS_CA_BUNDLE (the system store here) must not replace the configured bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    connector, _ = open_connector()
    assert asyncio.run(connector.health()).ok is True

    untrusting, other = open_connector(ca_bundle=None)
    health = asyncio.run(untrusting.health())
    assert health.ok is False and "CERTIFICATE_VERIFY_FAILED" in health.detail
    assert other.state.ledger.entries() == []


def test_unreachable_status_is_a_permanent_error_naming_the_status_and_transitions(
    open_connector: Callable[..., Any],
) -> None:
    connector, jira = open_connector(options={"statuses": {"ACKNOWLEDGED": "Blocked"}})
    created = person_creates(jira, summary="Paging broken")
    ref = ExternalRef(connector_id="jira", external_id=created["id"], external_key=created["key"])

    with pytest.raises(PermanentDeliveryError) as refused:
        asyncio.run(connector.update(ref, {"status": "Blocked"}))

    assert str(refused.value) == (
        "Jira issue OPS-1 is in status 'To Do'; no transition reaches 'Blocked' (available: Start Progress ->"
        " In Progress, Done -> Done, Cancel -> Cancelled, Mark as Duplicate -> Duplicate)"
    )
    assert jira.state.ledger.writes() == []
    assert connector.mapping().status.from_vendor["Blocked"] == "ACKNOWLEDGED"


def test_create_carries_the_hub_id_and_find_finds_it_after_a_lost_answer(
    open_connector: Callable[..., Any],
) -> None:
    connector, jira = open_connector(options={"property_key": "incident-hub"})
    example = Incident.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    incident = Incident.model_validate(example)  # ACKNOWLEDGED, SEV2_HIGH
    wanted = to_vendor(connector.mapping(), incident)

    created = asyncio.run(connector.create(incident, wanted))
    issue = jira.state.issues[created.external_id]
    assert (issue.status.name, issue.priority.name, issue.summary) == ("In Progress", "High", incident.title)
    assert issue.labels == ["incident-hub", f"incident-hub-{incident.id}"]
    assert issue.properties == {"incident-hub": {"incidentId": str(incident.id), "number": incident.number}}
    # The sandbox logs a request once its answer is out: the last one may still be on its way.
    wait_until(lambda: len(jira.state.ledger.writes()) == 3)
    assert [(e.method, e.path) for e in jira.state.ledger.writes()] == [
        ("POST", f"{API}/issue"),
        ("PUT", f"{API}/issue/{issue.id}/properties/incident-hub"),
        ("POST", f"{API}/issue/{issue.id}/transitions"),
    ]

    # The create's answer was lost after the issue was made, before its property was set.
    issue.properties.clear()
    found = asyncio.run(connector.find(incident))
    assert found is not None and (found.external_id, found.external_key) == (issue.id, "OPS-1")
    assert issue.properties["incident-hub"]["incidentId"] == str(incident.id)
    assert asyncio.run(connector.find(incident.model_copy(update={"id": uuid.uuid4()}))) is None


def test_fetch_and_changes_since_read_plain_text_in_the_accounts_time_zone(
    open_connector: Callable[..., Any],
) -> None:
    clock = Clock()
    connector, jira = open_connector(
        sandbox={"time_zone": "Europe/Berlin", "clock": clock}, options={"page_size": 1}
    )
    for minutes, summary in ((0, "before"), (10, "one"), (20, "two")):
        clock.now = datetime(2026, 11, 24, 13, minutes, tzinfo=UTC)
        person_creates(jira, summary=summary, description="Payments fail\nwith 502\n\nSince 14:00")

    async def changed() -> list[ExternalChange]:
        return [c async for c in connector.list_changed(datetime(2026, 11, 24, 13, 10, 30, tzinfo=UTC))]

    found = asyncio.run(changed())
    assert [(c.kind, c.external_key, c.fields["summary"]) for c in found] == [
        (ChangeKind.SNAPSHOT, "OPS-2", "one"),
        (ChangeKind.SNAPSHOT, "OPS-3", "two"),
    ]
    snapshot = asyncio.run(
        connector.fetch(ExternalRef(connector_id="jira", external_id=found[0].external_id))
    )
    assert snapshot.fields == {
        "status": "To Do",
        "priority": "Medium",
        "summary": "one",
        "description": "Payments fail\nwith 502\n\nSince 14:00",
    }
    assert snapshot.vendor_timestamp == datetime(2026, 11, 24, 13, 10, tzinfo=UTC)

    # 13:10 UTC is 14:10 in Berlin, the account's zone; searched in pages of one.
    def searches() -> list[str]:
        return [e.query for e in jira.state.ledger.entries(path_prefix=f"{API}/search/jql")]

    wait_until(lambda: len(searches()) == 2)
    assert "2026%2F11%2F24+14%3A10" in searches()[0]


# ---- parsing the vendor's own examples (no network) ---------------------------------------------------


def _connector(hub_account_id: str = SERVICE_ACCOUNT_ID) -> JiraConnector:
    return JiraConnector(
        ConnectorConfig(
            id="jira",
            kind="jira",
            base_url="https://example.atlassian.net",
            webhook_secret=Secret(env="JIRA_WEBHOOK_SECRET"),
            options={"email": EMAIL, "project_key": "OPS", "hub_account_id": hub_account_id},
        )
    )


def _parse(name: str, headers: dict[str, str] | None = None, **changes: Any) -> list[ExternalChange]:
    payload = json.loads((EXAMPLES / name).read_text()) | changes
    return _connector().parse_webhook(headers or {}, json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("example", "kind", "fields"),
    [
        (
            "webhook-issue-created.json",
            ChangeKind.CREATED,
            {
                "status": "To Do",
                "priority": "High",
                "summary": "Unit test summary",
                "description": "Unit test description, not that long",
            },
        ),
        (
            "webhook-issue-created-no-description.json",
            ChangeKind.CREATED,
            {"status": "To Do", "priority": "High", "summary": "Unit test summary", "description": None},
        ),
        ("webhook-issue-updated-started-working.json", ChangeKind.UPDATED, {"status": "In Progress"}),
        ("webhook-issue-updated-resolved.json", ChangeKind.UPDATED, {"status": "Done"}),
        ("webhook-issue-updated-reopened.json", ChangeKind.UPDATED, {"status": "To Do"}),
        ("webhook-issue-updated-raised-priority.json", ChangeKind.UPDATED, {"priority": "High"}),
        ("webhook-issue-updated-lowered-priority.json", ChangeKind.UPDATED, {"priority": "Low"}),
        ("webhook-issue-updated-renamed.json", ChangeKind.UPDATED, {"summary": "Unit test summary 1"}),
        (
            "webhook-issue-updated-edited.json",
            ChangeKind.UPDATED,
            {"description": "Unit test description, not that long, a little longer now"},
        ),
        ("webhook-issue-deleted.json", ChangeKind.DELETED, {}),
    ],
)
def test_vendor_issue_examples_parse_into_changes(
    example: str, kind: ChangeKind, fields: dict[str, Any]
) -> None:
    (change,) = _parse(example, {"x-atlassian-webhook-identifier": "delivery-1"})
    payload = json.loads((EXAMPLES / example).read_text())
    assert (change.kind, change.external_id, change.external_key) == (
        kind,
        payload["issue"]["id"],
        payload["issue"]["key"],
    )
    assert change.fields == fields
    assert change.url == f"https://example.atlassian.net/browse/{payload['issue']['key']}"
    assert change.vendor_timestamp == datetime.fromtimestamp(payload["timestamp"] / 1000, UTC)
    assert (change.event_id, change.actor, change.actor_is_self) == ("delivery-1", "Test User", False)


@pytest.mark.parametrize(
    "example",
    [
        "webhook-cloud-issue-updated-custom-field.json",
        "webhook-issue-updated-multiple-custom-fields.json",
        "webhook-issue-updated-multiple-values.json",
        "webhook-issue-updated-assigned.json",
        "webhook-issue-updated-labels.json",
        "webhook-issue-updated-sprint.json",
        "webhook-issue-updated-resolved-one-changelog.json",
    ],
)
def test_changes_to_fields_the_hub_does_not_map_are_ignored(example: str) -> None:
    assert _parse(example) == []


def test_story_points_set_to_two_is_not_read_as_a_priority() -> None:
    points = {"field": "Story Points", "fieldtype": "custom", "fieldId": "customfield_10016"}
    changelog = {
        "id": "1",
        "items": [points | {"from": None, "fromString": None, "to": "2", "toString": "2"}],
    }
    assert _parse("webhook-issue-updated-raised-priority.json", changelog=changelog) == []


def test_vendor_comment_examples_parse_into_notes() -> None:
    (created,) = _parse("webhook-cloud-comment-created.json")
    (edited,) = _parse("webhook-cloud-comment-updated.json")
    (server,) = _parse("webhook-issue-comment-created-indentation.json")

    assert created.kind is ChangeKind.NOTE and created.note is not None
    assert (created.external_id, created.note.external_comment_id, created.note.body) == (
        "10040",
        "10019",
        "Added a comment",
    )
    assert created.note.author == created.actor and created.actor_is_self is False
    assert edited.note is not None and edited.note.body == "Added a comment, then edited it"
    assert edited.note.external_comment_id == "10019@2019-02-15T19:12:08.432-0800"
    assert server.note is not None
    assert server.note.body == "[~Test] creating a test comment\n\na second line for the test comment"


def test_changes_by_the_hubs_own_account_are_marked_as_echoes() -> None:
    payload = json.loads((EXAMPLES / "webhook-issue-updated-started-working.json").read_text())
    connector = _connector(hub_account_id=payload["user"]["accountId"])
    (change,) = connector.parse_webhook({}, json.dumps(payload).encode())
    assert change.actor_is_self is True


def test_hub_incident_id_is_read_from_the_issue_label() -> None:
    labels = ["incident-hub", "incident-hub-5b8d7b26-8f75-47bd-b0a9-e652ee9e654f", "incident-hub-not-an-id"]
    payload = json.loads((EXAMPLES / "webhook-issue-created.json").read_text())
    payload["issue"]["fields"]["labels"] = labels
    (change,) = _connector().parse_webhook({}, json.dumps(payload).encode())
    assert change.hub_incident_id == "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f"
    (plain,) = _parse("webhook-issue-created.json")
    assert plain.hub_incident_id is None


def test_signature_test_vector_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    vector = json.loads(
        (JIRA_FILES / "webhook-signature" / "atlassian-secure-admin-webhooks-test-vector.json").read_text()
    )
    body = vector["payload_utf8"].encode()
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", vector["secret"])
    connector = _connector()

    connector.verify_webhook({"x-hub-signature": vector["header_value"]}, body)
    for refused in (
        {},
        {"x-hub-signature": vector["header_value"].replace("sha256=", "sha1=")},
        {"x-hub-signature": vector["header_value"][:-1] + "0"},
        {"x-hub-signature": "sha256=ünïcode"},
    ):
        with pytest.raises(WebhookRejected):
            connector.verify_webhook(refused, body)
    with pytest.raises(WebhookRejected):
        connector.verify_webhook({"x-hub-signature": vector["header_value"]}, body + b" ")


_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.json"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(_EXAMPLES), st.data())
def test_mutated_payloads_raise_only_the_typed_parse_error(path: Path, data: st.DataObject) -> None:
    payload = json.loads(path.read_text())
    containers: list[dict[str, Any]] = [payload]
    for key in ("issue", "comment", "changelog", "user"):
        if isinstance(payload.get(key), dict):
            containers.append(payload[key])
    if isinstance(payload["issue"].get("fields"), dict):
        containers.append(payload["issue"]["fields"])
    items = (payload.get("changelog") or {}).get("items") or []
    containers.extend(item for item in items if isinstance(item, dict))
    target = data.draw(st.sampled_from([c for c in containers if c]))
    key = data.draw(st.sampled_from(sorted(target)))
    junk = data.draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
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
    with contextlib.suppress(WebhookParseError):
        _connector().parse_webhook({}, body)
