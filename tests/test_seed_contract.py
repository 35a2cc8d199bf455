"""The seed's incident API and event contract ("seed 001"), driven with the seed's own example payloads,
on SQLite and on PostgreSQL (through the `api` fixture), with a real subscriber over loopback.

What each assertion encodes, fact by fact from the seed's text:

- `Incident.incident_id: String`, a human id like `INC-20250621-001`: every incident answer carries
  `incident_id` matching `INC-YYYYMMDD-NNN`, and every `/api/v1/incidents/{incident_id}/...` route takes
  that value as well as the uuid.
- `affected_services: List<String>`, e.g. `["portfolio_management_service"]`: accepted as is on create,
  and returned as the same list of strings (on incidents and in `incident_created`).
- `AutomatedResponse {action_type, execution_status}`, with `execution_status: "in_progress"`: accepted,
  stored and returned as given.
- Severities `SEV1_CRITICAL..SEV4_LOW`, statuses `OPEN, ACKNOWLEDGED, INVESTIGATING, IDENTIFIED,
  MONITORING, RESOLVED, CLOSED`: a new incident is `OPEN`; the create's severity comes back as sent.
- Endpoints, exactly: `POST /api/v1/incidents`; `GET /api/v1/incidents?status=&severity=&assigned_team=`;
  `PUT /api/v1/incidents/{incident_id}/status` with `{status, message, author}`;
  `POST /api/v1/incidents/{incident_id}/escalate` with a reason and a target severity or team.
- Events are `{"event_id", "timestamp", "<event_name>": {...}}`; `incident_created` carries the seed's
  `IncidentCreatedData`: `incident_id, title, severity, status, affected_services, assigned_team,
  automated_responses[{action_type, execution_status}]`, with those names and types (more fields may sit
  beside them).
- `POST /api/v1/subscriptions` without `event_types` subscribes to every event.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, inspect, select

from incident_hub.events import EVENT_TYPES
from incident_hub.hub import Hub
from incident_hub.mapping.validation import sample_incident
from incident_hub.model import AffectedService, Impact
from incident_hub.store.tables import EventRow
from tests.admin_support import log_in
from tests.support import Receiver, event_name

INCIDENTS = "/api/v1/incidents"
HUMAN_ID = re.compile(r"INC-\d{8}-\d{3}")
SECRET = "seed-subscriber-secret"

# The seed's create example, field for field.
SEED_CREATE: dict[str, Any] = {
    "title": "Portfolio valuation delayed",
    "severity": "SEV2_HIGH",
    "affected_services": ["portfolio_management_service"],
    "assigned_team": "portfolio-platform",
    "automated_responses": [{"action_type": "restart_service", "execution_status": "in_progress"}],
}

# The `incident_created` body the seed example must produce (its `incident_id` is the one handed out).
SEED_CREATED_DATA: dict[str, Any] = {
    "title": "Portfolio valuation delayed",
    "severity": "SEV2_HIGH",
    "status": "OPEN",
    "affected_services": ["portfolio_management_service"],
    "assigned_team": "portfolio-platform",
    "automated_responses": [{"action_type": "restart_service", "execution_status": "in_progress"}],
}

# The seed's `IncidentCreatedData` field types.
SEED_CREATED_TYPES: dict[str, type] = {
    "incident_id": str,
    "title": str,
    "severity": str,
    "status": str,
    "affected_services": list,
    "assigned_team": str,
    "automated_responses": list,
}


def created(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(INCIDENTS, json=body)
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()
    return incident


def subscribe_to_everything(api: TestClient, receiver: Receiver) -> dict[str, Any]:
    """The seed's subscription: no `event_types`."""
    response = api.post("/api/v1/subscriptions", json={"url": receiver.url, "secret": SECRET})
    assert response.status_code == 201, response.text
    subscription: dict[str, Any] = response.json()
    return subscription


def seed_view(created_data: dict[str, Any]) -> dict[str, Any]:
    """The seed's fields of an `incident_created` body, automated responses narrowed to the seed's two."""
    view = {name: created_data[name] for name in SEED_CREATED_TYPES}
    view["automated_responses"] = [
        {"action_type": r["action_type"], "execution_status": r["execution_status"]}
        for r in created_data["automated_responses"]
    ]
    return view


@contextmanager
def statements(hub: Hub) -> Iterator[list[str]]:
    """Every SQL statement the hub runs inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(hub.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", record)


# ---- one test per defect a seed client met --------------------------------------------------------------


def test_incident_is_fetched_by_its_human_incident_id(api: TestClient) -> None:
    incident = created(api, SEED_CREATE)
    assert HUMAN_ID.fullmatch(incident["incident_id"])
    assert incident["incident_id"] == incident["number"]
    by_human_id = api.get(f"{INCIDENTS}/{incident['incident_id']}")
    assert by_human_id.status_code == 200, by_human_id.text
    assert by_human_id.json() == api.get(f"{INCIDENTS}/{incident['id']}").json() == incident


def test_affected_services_as_a_list_of_names_is_accepted_and_returned_as_names(api: TestClient) -> None:
    incident = created(
        api, {"title": "Valuation delayed", "affected_services": ["portfolio_management_service"]}
    )
    assert incident["affected_services"] == ["portfolio_management_service"]
    # A name alone says the service is affected, not how: the weakest impact.
    assert incident["service_impacts"] == [{"name": "portfolio_management_service", "impact": "degraded"}]


def test_named_services_and_impact_objects_may_be_mixed_and_impacts_come_back_beside(
    api: TestClient, hub: Hub
) -> None:
    incident = created(
        api,
        {
            "title": "Checkout down",
            "affected_services": ["checkout-api", {"name": "payments-db", "impact": "total_outage"}],
            "service_impacts": [{"name": "checkout-api", "impact": "partial_outage"}],
        },
    )
    assert incident["affected_services"] == ["checkout-api", "payments-db"]
    assert incident["service_impacts"] == [
        {"name": "checkout-api", "impact": "partial_outage"},
        {"name": "payments-db", "impact": "total_outage"},
    ]
    # Patching with names only keeps the impacts already known and adds new names as degraded.
    patched = api.patch(
        f"{INCIDENTS}/{incident['incident_id']}", json={"affected_services": ["payments-db", "ledger"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["affected_services"] == ["payments-db", "ledger"]
    assert patched.json()["service_impacts"] == [
        {"name": "payments-db", "impact": "total_outage"},
        {"name": "ledger", "impact": "degraded"},
    ]
    with hub.db.read() as session:
        (updated,) = session.scalars(
            select(EventRow.payload).where(
                EventRow.incident_id == incident["id"], EventRow.type == "incident_updated"
            )
        ).all()
    changes = updated["incident_updated"]["changes"]
    assert changes["affected_services"] == {
        "old": ["checkout-api", "payments-db"],
        "new": ["payments-db", "ledger"],
    }
    assert changes["service_impacts"]["new"] == patched.json()["service_impacts"]


def test_one_service_with_two_impacts_is_a_422_naming_it(api: TestClient) -> None:
    response = api.post(
        INCIDENTS,
        json={
            "title": "x",
            "affected_services": [{"name": "checkout-api", "impact": "degraded"}],
            "service_impacts": [{"name": "checkout-api", "impact": "total_outage"}],
        },
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "checkout-api" in response.json()["detail"]


def test_automated_response_in_progress_is_accepted_and_kept(api: TestClient) -> None:
    incident = created(api, SEED_CREATE)
    assert incident["automated_responses"][0]["execution_status"] == "in_progress"
    recorded = api.post(
        f"{INCIDENTS}/{incident['incident_id']}/automated-responses",
        json={"action_type": "scale_out", "execution_status": "in_progress"},
    )
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["execution_status"] == "in_progress"
    listed = api.get(f"{INCIDENTS}/{incident['incident_id']}/automated-responses").json()
    assert [r["execution_status"] for r in listed] == ["in_progress", "in_progress"]


def test_subscription_without_event_types_receives_every_event(api: TestClient, receiver: Receiver) -> None:
    subscription = subscribe_to_everything(api, receiver)
    assert subscription["event_types"] == ["*"]
    incident = created(api, SEED_CREATE)
    api.post(
        f"{INCIDENTS}/{incident['incident_id']}/timeline", json={"message": "looking", "author": "ana"}
    ).raise_for_status()
    api.put(f"{INCIDENTS}/{incident['incident_id']}/status", json={"status": "RESOLVED"}).raise_for_status()
    received = receiver.wait_for(4)
    assert [event_name(r.json()) for r in received] == [
        "incident_created",
        "incident_note_added",
        "incident_status_changed",
        "incident_resolved",
    ]


def test_incident_created_event_carries_the_seed_fields_with_their_types(
    api: TestClient, receiver: Receiver
) -> None:
    subscribe_to_everything(api, receiver)
    incident = created(api, SEED_CREATE)
    (request,) = receiver.wait_for(1)
    payload = request.json()
    assert set(payload) == {"event_id", "timestamp", "incident_created"}
    data = payload["incident_created"]
    for name, kind in SEED_CREATED_TYPES.items():
        assert isinstance(data[name], kind), name
    assert all(isinstance(service, str) for service in data["affected_services"])
    assert seed_view(data) == {"incident_id": incident["incident_id"], **SEED_CREATED_DATA}


# ---- the seed's examples end to end ---------------------------------------------------------------------


def test_seed_examples_run_through_the_api_and_reach_a_subscriber(
    api: TestClient, receiver: Receiver
) -> None:
    subscribe_to_everything(api, receiver)
    incident = created(api, SEED_CREATE)
    human_id = incident["incident_id"]
    assert seed_view(incident) == {"incident_id": human_id, **SEED_CREATED_DATA}
    created(api, {"title": "Search slow", "severity": "SEV4_LOW", "assigned_team": "search"})

    listed = api.get(
        INCIDENTS, params={"status": "OPEN", "severity": "SEV2_HIGH", "assigned_team": "portfolio-platform"}
    )
    assert listed.status_code == 200, listed.text
    assert [i["incident_id"] for i in listed.json()["items"]] == [human_id]

    moved = api.put(
        f"{INCIDENTS}/{human_id}/status",
        json={"status": "ACKNOWLEDGED", "message": "Restart under way", "author": "ana"},
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["incident_id"], moved.json()["status"]) == (human_id, "ACKNOWLEDGED")

    escalated = api.post(
        f"{INCIDENTS}/{human_id}/escalate",
        json={"reason": "Valuations stale", "target_severity": "SEV1_CRITICAL"},
    )
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["incident"]["severity"] == "SEV1_CRITICAL"
    handed = api.post(f"{INCIDENTS}/{human_id}/escalate", json={"reason": "Needs DBA", "target_team": "dba"})
    assert handed.status_code == 200, handed.text
    assert handed.json()["incident"]["assigned_team"] == "dba"

    received = [r.json() for r in receiver.wait_for(5)]
    # In order per incident; the other incident's events may come between (no order across incidents).
    mine = [e for e in received if e[event_name(e)]["incident_id"] == human_id]
    assert [event_name(e) for e in mine] == [
        "incident_created",
        "incident_status_changed",
        "incident_escalated",
        "incident_escalated",
    ]
    assert [event_name(e) for e in received if e not in mine] == ["incident_created"]
    first = mine[0]["incident_created"]
    assert seed_view(first) == {"incident_id": human_id, **SEED_CREATED_DATA}
    for payload in mine[1:]:
        assert set(payload) == {"event_id", "timestamp", event_name(payload)}
        assert payload[event_name(payload)]["incident_id"] == human_id


def test_every_event_body_names_the_incident_by_its_human_id(api: TestClient, hub: Hub) -> None:
    late = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    incident = created(api, {**SEED_CREATE, "severity": "SEV1_CRITICAL", "detected_at": late})
    path = f"{INCIDENTS}/{incident['incident_id']}"
    for answer in (
        api.patch(path, json={"assignee": "ana"}),
        api.put(f"{path}/roles", json={"role": "commander", "person": "ana"}),
        api.post(f"{path}/timeline", json={"message": "note"}),
        api.post(f"{path}/resolution-steps", json={"action_taken": "restarted"}),
        api.post(f"{path}/automated-responses", json={"action_type": "page_oncall"}),
        api.post(f"{path}/escalate", json={"reason": "spreading", "target_team": "dba"}),
        api.put(f"{path}/status", json={"status": "RESOLVED"}),
    ):
        assert answer.status_code in (200, 201), answer.text
    with hub.db.read() as session:
        rows = session.scalars(select(EventRow).where(EventRow.incident_id == incident["id"])).all()
        bodies = {row.type: row.payload[row.type] for row in rows}
    assert set(bodies) == set(EVENT_TYPES)
    for name, body in bodies.items():
        assert (body["incident_id"], body["id"], body["number"]) == (
            incident["incident_id"],
            incident["id"],
            incident["incident_id"],
        ), name


def test_every_incident_route_takes_the_human_id(api: TestClient) -> None:
    incident = created(api, SEED_CREATE)
    path = f"{INCIDENTS}/{incident['incident_id']}"
    answers = [
        api.get(path),
        api.patch(path, json={"assignee": "ana"}),
        api.put(f"{path}/roles", json={"role": "commander", "person": "ana"}),
        api.get(f"{path}/timeline"),
        api.post(f"{path}/timeline", json={"message": "note"}),
        api.get(f"{path}/resolution-steps"),
        api.post(f"{path}/resolution-steps", json={"action_taken": "restarted"}),
        api.get(f"{path}/automated-responses"),
        api.post(f"{path}/automated-responses", json={"action_type": "page_oncall"}),
        api.put(f"{path}/status", json={"status": "INVESTIGATING"}),
        api.post(f"{path}/escalate", json={"reason": "spreading"}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 201, 200, 201, 200, 201, 200, 200]
    final = api.get(f"{INCIDENTS}/{incident['id']}").json()
    assert (final["assignee"], final["roles"]["commander"], final["status"]) == (
        "ana",
        "ana",
        "INVESTIGATING",
    )
    assert final["version"] == 7


def test_an_unknown_human_id_is_a_404_problem(api: TestClient) -> None:
    created(api, SEED_CREATE)
    for path in ("INC-20250621-999", "not-an-incident"):
        response = api.get(f"{INCIDENTS}/{path}")
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert path in response.json()["detail"]
        assert api.put(f"{INCIDENTS}/{path}/status", json={"status": "RESOLVED"}).status_code == 404


def test_a_human_id_is_found_by_one_lookup_on_a_unique_index(api: TestClient, hub: Hub) -> None:
    incident = created(api, SEED_CREATE)
    with statements(hub) as seen:
        assert api.get(f"{INCIDENTS}/{incident['incident_id']}").status_code == 200
    # Background workers share the engine: look only at lookups of one incident.
    by_number = [s for s in seen if "FROM incidents" in s and "WHERE incidents.number =" in s]
    by_uuid = [s for s in seen if "FROM incidents" in s and "WHERE incidents.id =" in s]
    assert (len(by_number), len(by_uuid)) == (1, 0)
    unique = inspect(hub.db.engine).get_unique_constraints("incidents")
    indexes = inspect(hub.db.engine).get_indexes("incidents")
    assert ["number"] in [c["column_names"] for c in unique] + [
        i["column_names"] for i in indexes if i["unique"]
    ]


def test_admin_incident_page_opens_by_human_id(api: TestClient, hub: Hub) -> None:
    incident = created(api, SEED_CREATE)
    api.headers.pop("Authorization")
    log_in(api, hub)
    page = api.get(f"/admin/incidents/{incident['incident_id']}")
    assert page.status_code == 200
    assert f"{incident['incident_id']}: Portfolio valuation delayed" in page.text
    assert "portfolio_management_service (degraded)" in page.text


def test_a_sample_incident_given_in_the_seed_shape_replaces_both_shapes_of_a_field() -> None:
    """The mapping preview builds its incident this way from what the caller gives."""
    sample = sample_incident()
    changed = sample.replaced({"affected_services": ["ledger"], "incident_id": "INC-20250621-001"})
    assert (changed.affected_services, changed.service_impacts) == (
        ["ledger"],
        [AffectedService(name="ledger", impact=Impact.DEGRADED)],
    )
    assert (changed.incident_id, changed.number) == ("INC-20250621-001", "INC-20250621-001")
    assert changed.replaced({"number": "INC-20250621-002"}).incident_id == "INC-20250621-002"
