from __future__ import annotations

from fastapi.testclient import TestClient


def test_created_incident_can_be_read_back(api: TestClient) -> None:
    created = api.post("/api/v1/incidents", json={"title": "Disk full on db-1", "severity": "SEV2_HIGH"})
    assert created.status_code == 201, created.text
    incident = created.json()
    assert incident["number"].startswith("INC-")
    fetched = api.get(f"/api/v1/incidents/{incident['id']}")
    assert fetched.json()["title"] == "Disk full on db-1"
    assert fetched.headers["ETag"] == '"1"'
