"""Stored, versioned mappings: the shipped default is version 1, every save and rollback is a new version,
invalid documents are refused with located messages, admin actions land in the audit log, and what the
API saves is what the next sync sends (sandbox ledgers, both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.mapping.document import DEFAULTS
from incident_hub.mapping.store import MappingInvalid
from incident_hub.model import Status
from incident_hub.sandbox.jira.model import JiraState
from incident_hub.sandbox.pagerduty import PRIORITY_IDS
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.world import World, connect
from incident_hub.serving import ServerThread
from incident_hub.store.tables import DeliveryRow
from tests.conftest import key_for, test_settings
from tests.support import settle, wait_until

JIRA = {
    "id": "jira",
    "kind": "jira",
    "base_url": "https://jira.invalid",
    "options": {"email": "hub@example.com", "project_key": "OPS"},
}
PAGERDUTY = {
    "id": "pagerduty",
    "kind": "pagerduty",
    "base_url": "https://pagerduty.invalid",
    "options": {"from_email": "hub@example.com", "service_id": "PSERVICE"},
}


def configure(hub: Hub, *configs: dict[str, Any]) -> None:
    for config in configs:
        hub.connectors.upsert(ConnectorConfig.model_validate(config))


def jira_yaml(**status_changes: str) -> str:
    """Jira's shipped default with some canonical statuses written as other status names."""
    data = yaml.safe_load((DEFAULTS / "jira.yaml").read_text())
    data["status"]["to_vendor"].update(status_changes)
    return yaml.safe_dump(data, sort_keys=False)


CANCELLING = jira_yaml(RESOLVED="Cancelled")
# Done is now written for CLOSED only: it reads back as CLOSED, so the round trip stays stable.
CANCELLING = CANCELLING.replace("Done: RESOLVED", "Done: CLOSED")


def test_first_use_stores_the_shipped_default_as_version_1(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    current = hub.mappings.current("jira")
    assert (current.version, current.author, current.comment) == (1, None, "shipped default")
    assert current.yaml == (DEFAULTS / "jira.yaml").read_text()
    answer = api.get("/api/v1/mappings/jira")
    assert answer.status_code == 200
    assert answer.json()["version"] == 1
    assert answer.json()["document"]["status"]["to_vendor"]["RESOLVED"] == "Done"
    assert [v.version for v in hub.mappings.versions("jira")] == [1]


def test_connector_options_are_kept_in_version_1(api: TestClient, hub: Hub) -> None:
    configure(hub, {**JIRA, "options": {**JIRA["options"], "statuses": {"MONITORING": "Monitoring"}}})
    current = hub.mappings.current("jira")
    assert current.document.status.to_vendor[Status.MONITORING] == "Monitoring"
    assert current.yaml.startswith("# The shipped default with this connector's options applied.")


def test_a_saved_version_is_what_the_connector_translates_with(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    saved = hub.mappings.save("jira", CANCELLING, "alice", "cancel instead of done")
    assert (saved.version, saved.author, saved.comment) == (2, "alice", "cancel instead of done")
    assert saved.yaml == CANCELLING
    assert hub.mappings.current("jira").version == 2
    # The connector itself (Jira reads status names from its mapping) sees the same document.
    assert hub.connectors.get("jira").mapping().status.to_vendor[Status.RESOLVED] == "Cancelled"
    assert [v.version for v in hub.mappings.versions("jira")] == [2, 1]


def test_an_invalid_mapping_is_refused_with_located_messages(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    data = yaml.safe_load((DEFAULTS / "jira.yaml").read_text())
    del data["status"]["to_vendor"]["MONITORING"]
    data["fields"]["title"] = "summry"
    data["custom_fields"] = [{"field": "customfield_10042", "template": "{number}: {titel}"}]
    answer = api.put("/api/v1/mappings/jira", json={"document": data, "comment": "broken"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problems = {p["location"]: p["message"] for p in answer.json()["problems"]}
    assert "MONITORING is not mapped" in problems["$.status.to_vendor.MONITORING"]
    assert "jira has no field 'summry'" in problems["$.fields.title"]
    assert "Fails on a sample incident" in problems["$.custom_fields[0].template"]
    assert hub.mappings.current("jira").version == 1


def test_an_ambiguous_reverse_map_and_read_only_fields_are_refused(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    text = jira_yaml(MONITORING="Monitoring") + "disabled_reason: nobody may set this\n"
    text += "custom_fields:\n  - {field: u_service, source: severity}\n"
    problems = {p.location: p.message for p in hub.mappings.validate("jira", text)}
    assert "'Monitoring' is written for MONITORING but never read back" in problems["$.status.from_vendor"]
    assert "read-only" in problems["$.disabled_reason"]
    assert "jira has no field 'u_service'" in problems["$.custom_fields[0].field"]
    lossy = jira_yaml().replace("    In Progress: ACKNOWLEDGED\n", "")
    (problem,) = hub.mappings.validate("jira", lossy)
    assert problem.location == "$.status.from_vendor"
    assert problem.message.startswith("ambiguous: 'In Progress' is written for ACKNOWLEDGED, INVESTIGATING")
    with pytest.raises(MappingInvalid) as refused:
        hub.mappings.save("jira", "status: [", "alice", None)
    assert refused.value.problems[0].message.startswith("This is not valid YAML at line")


def test_custom_fields_teams_and_routing_are_accepted(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA, PAGERDUTY)
    jira = jira_yaml() + (
        "custom_fields:\n"
        "  - {field: customfield_10043, template: '{number}: {title}'}\n"
        "  - {field: customfield_10042, source: severity, map: {SEV1_CRITICAL: {value: Sev1}},"
        " default: {value: Sev3}}\n"
        "routing: {severities: [SEV1_CRITICAL, SEV2_HIGH], tags: [customer-facing]}\n"
        "notes: {outbound: false}\n"
    )
    assert hub.mappings.validate("jira", jira) == []
    pagerduty = (DEFAULTS / "pagerduty.yaml").read_text() + (
        "teams:\n  to_vendor: {payments: PPAYMNT, checkout: PCHECKO}\n"
    )
    saved = hub.mappings.save("pagerduty", pagerduty, "alice", None)
    assert saved.document.teams is not None and saved.document.teams.field == "escalation_policy"
    # The connector routes a team to its escalation policy from the mapping, with no option set.
    connector = hub.connectors.get("pagerduty")
    assert connector.team_targets(connector.options.escalation_policies) == {  # type: ignore[attr-defined]
        "payments": "PPAYMNT",
        "checkout": "PCHECKO",
    }


def test_rollback_makes_a_new_version_equal_to_the_old_one(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    hub.mappings.save("jira", CANCELLING, "alice", None)
    answer = api.post("/api/v1/mappings/jira/rollback/1")
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 3
    assert answer.json()["comment"] == "rollback to version 1"
    assert hub.mappings.get("jira", 3).yaml == hub.mappings.get("jira", 1).yaml
    assert hub.connectors.get("jira").mapping().status.to_vendor[Status.RESOLVED] == "Done"
    assert api.get("/api/v1/mappings/jira/versions/7").status_code == 404


def test_diff_shows_the_yaml_and_the_changed_paths(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    hub.mappings.save("jira", CANCELLING, "alice", None)
    answer = api.get("/api/v1/mappings/jira/diff", params={"from": 1, "to": 2})
    assert answer.status_code == 200
    body = answer.json()
    assert "-    RESOLVED: Done\n" in body["diff"] and "+    RESOLVED: Cancelled\n" in body["diff"]
    assert body["diff"] == hub.mappings.diff("jira", 1, 2)
    assert set(body["changed_paths"]) == {"$.status.to_vendor.RESOLVED", "$.status.from_vendor.Done"}


def test_the_circuit_breaker_state_shows_in_the_document(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    for _ in range(hub.connectors.failure_threshold):
        hub.connectors.record_failure("jira", "503 from Jira")
    document = api.get("/api/v1/mappings/jira").json()["document"]
    assert "503 from Jira" in document["disabled_reason"]
    assert document["disabled_until"] is not None
    hub.connectors.resume("jira")
    assert api.get("/api/v1/mappings/jira").json()["document"]["disabled_reason"] is None


def test_yaml_body_saves_as_given(api: TestClient, hub: Hub) -> None:
    configure(hub, JIRA)
    answer = api.put(
        "/api/v1/mappings/jira",
        content=CANCELLING.encode(),
        headers={"content-type": "application/yaml"},
        params={"comment": "from a file"},
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["yaml"], answer.json()["comment"]) == (CANCELLING, "from a file")


def test_admin_actions_are_audited_and_need_the_admin_scope(api: TestClient, hub: Hub) -> None:
    answer = api.put("/api/v1/connectors/jira", json=JIRA)
    assert answer.status_code == 200, answer.text
    assert api.put("/api/v1/mappings/jira", json={"yaml": CANCELLING, "comment": "why"}).status_code == 200
    assert api.post("/api/v1/mappings/jira/rollback/1").status_code == 200
    assert api.post("/api/v1/connectors/jira/resume").status_code == 200
    entries = api.get("/api/v1/audit").json()
    assert [(e["action"], e["target"]) for e in entries] == [
        ("connector.resume", "jira"),
        ("mapping.rollback", "jira"),
        ("mapping.save", "jira"),
        ("connector.upsert", "jira"),
    ]
    assert all(e["actor"].startswith("test (") for e in entries)
    assert entries[2]["detail"] == {"version": 2, "comment": "why"}
    assert [e.action for e in hub.audit.list(1)] == ["connector.resume"]

    reader = key_for(hub, Scope.READ)
    assert api.get("/api/v1/mappings/jira", headers=reader).status_code == 200
    assert api.get("/api/v1/audit", headers=reader).status_code == 403
    refused = api.put("/api/v1/mappings/jira", json={"yaml": CANCELLING}, headers=reader)
    assert refused.status_code == 403
    assert api.post("/api/v1/mappings/jira/rollback/2", headers=reader).status_code == 403
    assert hub.mappings.current("jira").version == 3


def test_unknown_connector_is_404(api: TestClient) -> None:
    assert api.get("/api/v1/mappings/nope").status_code == 404


# ---- the sync sends what the mapping says ----------------------------------------------------------


@pytest.fixture
def synced(database_url: str, tmp_path: Path) -> Iterator[tuple[Hub, World, httpx.Client]]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub: Hub = app.state.hub
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        world = connect(stack, hub, server.url, tmp_path / "sandboxes", vendors=("pagerduty", "jira"))
        client = stack.enter_context(
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10)
        )
        yield hub, world, client


def _refs(hub: Hub, incident_id: str) -> dict[str, str]:
    refs = hub.incidents.get(incident_id).external_refs
    return {ref.connector_id: ref.external_id for ref in refs}


def _open(hub: Hub, world: World, api: httpx.Client, title: str) -> tuple[str, dict[str, str]]:
    incident = api.post("/api/v1/incidents", json={"title": title, "severity": "SEV2_HIGH"}).json()
    refs = wait_until(lambda: len(_refs(hub, incident["id"])) == 2 and _refs(hub, incident["id"]), timeout=20)
    settle(hub, [side.ledger for side in world.sides.values()])
    return incident["id"], refs


def _lower_and_resolve(hub: Hub, world: World, api: httpx.Client, incident_id: str) -> None:
    assert api.patch(f"/api/v1/incidents/{incident_id}", json={"severity": "SEV3_MEDIUM"}).status_code == 200
    settle(hub, [side.ledger for side in world.sides.values()])
    assert api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": "RESOLVED"}).status_code == 200
    settle(hub, [side.ledger for side in world.sides.values()])


def _jira_create(world: World, title: str) -> dict[str, Any]:
    for entry in world["jira"].ledger.entries(direction="in", method="POST", path_prefix="/rest/api/3/issue"):
        fields = (entry.body or {}).get("fields") if isinstance(entry.body, dict) else None
        if fields and fields.get("summary") == title:
            found: dict[str, Any] = fields
            return found
    raise AssertionError(f"no Jira create for {title!r}")


def _pd_writes(world: World, external_id: str) -> list[dict[str, Any]]:
    """What the hub's updates of one PagerDuty incident set, in order."""
    ledger = world["pagerduty"].ledger
    entries = ledger.entries(direction="in", method="PUT", path_prefix=f"/incidents/{external_id}")
    return [e.body["incident"] for e in entries]


@pytest.mark.slow
def test_a_mapping_saved_through_the_api_changes_what_the_next_sync_sends(
    synced: tuple[Hub, World, httpx.Client],
) -> None:
    hub, world, api = synced
    # SEV3 written as P4 and SEV4 as P5 (an account whose P5 is a real severity).
    pagerduty = (
        (DEFAULTS / "pagerduty.yaml")
        .read_text()
        .replace("SEV3_MEDIUM: {urgency: low, priority: P3}", "SEV3_MEDIUM: {urgency: low, priority: P4}")
        .replace("SEV4_LOW: {urgency: low, priority: P4}", "SEV4_LOW: {urgency: low, priority: P5}")
        .replace("P4: SEV4_LOW, P5: SEV4_LOW", "P4: SEV3_MEDIUM, P5: SEV4_LOW")
    )
    jira = CANCELLING + "custom_fields:\n  - {field: customfield_10043, template: '{number}: {title}'}\n"
    for connector_id, text in (("pagerduty", pagerduty), ("jira", jira)):
        saved = api.put(f"/api/v1/mappings/{connector_id}", json={"yaml": text, "comment": "test"})
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 2

    first, refs = _open(hub, world, api, "Checkout 502s")
    number = hub.incidents.get(first).number
    assert _jira_create(world, "Checkout 502s")["customfield_10043"] == f"{number}: Checkout 502s"
    _lower_and_resolve(hub, world, api, first)
    (lowered, resolved) = _pd_writes(world, refs["pagerduty"])
    assert lowered["priority"]["id"] == PRIORITY_IDS["P4"]
    assert resolved["status"] == "resolved"
    pd_state, jira_state = world["pagerduty"].sandbox.state, world["jira"].sandbox.state
    assert isinstance(pd_state, PagerDutyState) and isinstance(jira_state, JiraState)
    assert pd_state.incidents[refs["pagerduty"]].priority_id == PRIORITY_IDS["P4"]
    assert jira_state.issues[refs["jira"]].status.name == "Cancelled"
    with hub.db.read() as session:
        versions = set(
            session.scalars(select(DeliveryRow.mapping_version).where(DeliveryRow.target_kind == "connector"))
        )
    assert versions - {None} == {2}

    # Rollback restores the previous behaviour for the next sync.
    for connector_id in ("pagerduty", "jira"):
        assert api.post(f"/api/v1/mappings/{connector_id}/rollback/1").status_code == 200
    second, refs = _open(hub, world, api, "Search timeouts")
    assert "customfield_10043" not in _jira_create(world, "Search timeouts")
    _lower_and_resolve(hub, world, api, second)
    (lowered, _) = _pd_writes(world, refs["pagerduty"])
    assert lowered["priority"]["id"] == PRIORITY_IDS["P3"]
    assert pd_state.incidents[refs["pagerduty"]].priority_id == PRIORITY_IDS["P3"]
    assert jira_state.issues[refs["jira"]].status.name == "Done"
    actions = [entry.action for entry in hub.audit.list(10)]
    assert actions.count("mapping.save") == 2 and actions.count("mapping.rollback") == 2
