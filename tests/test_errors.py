"""Every error is RFC 9457 `application/problem+json`: not found, too large, invalid input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.store.tables import IncidentRow

# What TestClient returns (an httpx or httpx2 response, depending on what is installed).
Response = Any

INCIDENTS = "/api/v1/incidents"
PROBLEM_KEYS = {"type", "title", "status", "detail"}
MIB = 1024 * 1024
MISSING = "0b7c6a2e-5d1f-4c8e-9a3b-2f6d8e1c4a5b"


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def incident_count(hub: Hub) -> int:
    with hub.db.read() as session:
        return len(session.scalars(select(IncidentRow.id)).all())


def calls_on(incident_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"{INCIDENTS}/{incident_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"title": "x"}),
        ("PUT", f"{base}/status", {"status": "ACKNOWLEDGED"}),
        ("POST", f"{base}/escalate", {"reason": "x"}),
        ("GET", f"{base}/timeline", None),
        ("POST", f"{base}/timeline", {"message": "x"}),
        ("GET", f"{base}/resolution-steps", None),
        ("POST", f"{base}/resolution-steps", {"action_taken": "x"}),
        ("GET", f"{base}/automated-responses", None),
        ("POST", f"{base}/automated-responses", {"action_type": "x"}),
        ("PUT", f"{base}/roles", {"role": "commander", "person": "x"}),
    ]


def test_unknown_incident_is_404_problem(api: TestClient) -> None:
    for incident_id in (MISSING, "not-a-uuid", "INC-20260101-001"):
        for method, path, body in calls_on(incident_id):
            response = api.request(method, path, json=body)
            problem_body = problem(response, 404)
            assert problem_body["title"] == "Not found"
            assert incident_id in problem_body["detail"], (method, path)
            assert problem_body["instance"] == path


def test_unknown_route_and_method_are_problems(api: TestClient) -> None:
    problem(api.get("/api/v1/nothing-here"), 404)
    body = problem(api.delete(INCIDENTS), 405)
    assert body["title"] == "Method not allowed"


def test_body_over_one_mib_with_content_length_is_413(api: TestClient, hub: Hub) -> None:
    payload = json.dumps({"title": "big", "description": "x" * (MIB + 10)}).encode()
    response = api.post(INCIDENTS, content=payload, headers={"Content-Type": "application/json"})
    body = problem(response, 413)
    assert body["title"] == "Content too large"
    assert str(MIB) in body["detail"]
    assert incident_count(hub) == 0
    # Just under the limit is accepted.
    fits = json.dumps({"title": "big", "description": "x" * (MIB - 200)}).encode()
    assert len(fits) <= MIB
    accepted = api.post(INCIDENTS, content=fits, headers={"Content-Type": "application/json"})
    assert accepted.status_code == 201, accepted.text[:300]
    assert incident_count(hub) == 1


def test_streamed_body_over_one_mib_without_content_length_is_413(api: TestClient, hub: Hub) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"title": "big", "description": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = api.post(INCIDENTS, content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert incident_count(hub) == 0
    problem(response, 413)


def test_invalid_enum_is_422_naming_the_field(api: TestClient) -> None:
    body = problem(api.post(INCIDENTS, json={"title": "x", "severity": "SEV9"}), 422)
    assert "severity" in body["detail"]
    assert body["title"] == "Invalid request"
    assert ["body", "severity"] in [e["loc"] for e in body["errors"]]

    body = problem(
        api.post(INCIDENTS, json={"title": "x", "affected_services": [{"name": "a", "impact": "meh"}]}), 422
    )
    assert "affected_services.0.impact" in body["detail"]

    incident = api.post(INCIDENTS, json={"title": "x"}).json()
    body = problem(api.put(f"{INCIDENTS}/{incident['id']}/status", json={"status": "DONE"}), 422)
    assert "status" in body["detail"]
    body = problem(api.get(INCIDENTS, params={"status": "DONE"}), 422)
    assert ["query", "status", 0] in [e["loc"] for e in body["errors"]]
    problem(api.get(INCIDENTS, params={"severity": "sev1"}), 422)
    assert api.get(f"{INCIDENTS}/{incident['id']}").json()["status"] == "OPEN"


def test_invalid_bodies_are_422_problems(api: TestClient, hub: Hub) -> None:
    malformed = api.post(INCIDENTS, content=b'{"title": ', headers={"Content-Type": "application/json"})
    problem(malformed, 400)
    body = problem(api.post(INCIDENTS, json={}), 422)
    assert "title" in body["detail"]
    problem(api.post(INCIDENTS, json={"title": ""}), 422)
    problem(api.post(INCIDENTS, json={"title": "x" * 501}), 422)
    body = problem(api.post(INCIDENTS, json={"title": "x", "priority": "P1", "state": "open"}), 422)
    assert body["detail"] == "unknown field(s): priority, state"
    # Validation errors never echo the submitted values back.
    assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])
    assert incident_count(hub) == 0


def test_bad_query_parameters_are_422(api: TestClient) -> None:
    body = problem(api.get(INCIDENTS, params={"cursor": "not-a-cursor"}), 422)
    assert "cursor" in body["detail"]
    problem(api.get(INCIDENTS, params={"limit": 0}), 422)
    problem(api.get(INCIDENTS, params={"limit": 201}), 422)
    assert api.get(INCIDENTS, params={"limit": 200}).status_code == 200


def test_malformed_json_is_a_400_saying_where(api: TestClient, hub: Hub) -> None:
    body = b'{\n  "title": "Checkout down",\n  "severity": SEV1_CRITICAL\n}'
    answer = api.post(INCIDENTS, content=body, headers={"Content-Type": "application/json"})
    found = problem(answer, 400)
    assert found["title"] == "Malformed JSON"
    assert found["detail"] == "malformed JSON at line 3 column 15: Expecting value"
    assert incident_count(hub) == 0


def test_a_closed_incident_refuses_to_move_and_says_how_to_reopen(api: TestClient) -> None:
    incident = api.post(INCIDENTS, json={"title": "Disk full"}).json()
    status = f"{INCIDENTS}/{incident['id']}/status"
    api.put(status, json={"status": "CLOSED"}).raise_for_status()

    refused = problem(api.put(status, json={"status": "INVESTIGATING"}), 409)
    assert '{"status": "INVESTIGATING", "reopen": true}' in refused["detail"]
    assert refused["reopen_with"] == {"status": "INVESTIGATING", "reopen": True}
    nowhere = problem(api.put(status, json={"status": "MONITORING"}), 409)
    assert 'to OPEN or INVESTIGATING, with "reopen": true' in nowhere["detail"]

    reopened = api.put(status, json={"status": "INVESTIGATING", "reopen": True})
    assert reopened.status_code == 200 and reopened.json()["status"] == "INVESTIGATING"


def test_malformed_json_mapping_change_is_a_400_saying_where(api: TestClient, hub: Hub) -> None:
    options = {"from_email": "hub@example.com", "service_id": "PSERVICE"}
    config = {"id": "pagerduty", "kind": "pagerduty", "base_url": "https://pd.invalid", "options": options}
    hub.connectors.upsert(ConnectorConfig.model_validate(config))
    answer = api.put(
        "/api/v1/mappings/pagerduty",
        content=b'{\n  "yaml": status: {}\n}',
        headers={"Content-Type": "application/json"},
    )
    assert problem(answer, 400)["detail"] == "malformed JSON at line 2 column 11: expected value"
