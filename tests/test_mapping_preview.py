"""Mapping previews: a vendor webhook gives the canonical change it asks for, an incident gives the vendor
fields a push would send; a draft previews without being saved; nothing is stored, no vendor is called."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incident_hub.api.auth import Scope
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.mapping.document import DEFAULTS
from incident_hub.mapping.validation import sample_incident
from incident_hub.model import Severity, Status
from incident_hub.store.tables import Base
from tests.conftest import key_for
from tests.support import VENDOR, Receiver

WEBHOOKS = VENDOR / "pagerduty" / "webhooks-v3"
ACKNOWLEDGED = json.loads((WEBHOOKS / "zulip-fixtures" / "acknowledged_v3.json").read_text())


@pytest.fixture
def vendor() -> Iterator[Receiver]:
    """Where the connectors point: any call the preview made would land here."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def configured(api: TestClient, hub: Hub, vendor: Receiver) -> TestClient:
    for config in (
        {
            "id": "pagerduty",
            "kind": "pagerduty",
            "base_url": vendor.url,
            "webhook_secret": {"env": "NO_SUCH_SECRET_IS_READ"},
            "options": {"from_email": "hub@example.com", "service_id": "PSERVICE"},
        },
        # No webhook secret: Jira webhooks are read back from the API, which a preview never calls.
        {
            "id": "jira",
            "kind": "jira",
            "base_url": vendor.url,
            "options": {"email": "hub@example.com", "project_key": "OPS"},
        },
    ):
        hub.connectors.upsert(ConnectorConfig.model_validate(config))
    hub.mappings.seed_all()
    return api


def _rows(hub: Hub) -> dict[str, int]:
    with hub.db.read() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def test_webhook_preview_gives_the_canonical_change(
    configured: TestClient, hub: Hub, vendor: Receiver
) -> None:
    before = _rows(hub)
    answer = configured.post("/api/v1/mappings/pagerduty/preview", json={"webhook": ACKNOWLEDGED})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["direction"], body["mapping_version"]) == ("inbound", 1)
    (change,) = body["changes"]
    assert change["external_id"] == "PQ1K5C8"
    assert change["vendor_fields"]["status"] == "acknowledged"
    assert change["canonical"]["status"] == "ACKNOWLEDGED"
    assert _rows(hub) == before
    assert vendor.requests == []


def test_webhook_preview_of_a_draft_reads_with_the_draft(configured: TestClient, hub: Hub) -> None:
    draft = yaml.safe_load((DEFAULTS / "pagerduty.yaml").read_text())
    draft["status"]["from_vendor"]["acknowledged"] = "INVESTIGATING"
    before = _rows(hub)
    answer = configured.post(
        "/api/v1/mappings/pagerduty/preview", json={"webhook": ACKNOWLEDGED, "document": draft}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["mapping_version"] is None
    assert answer.json()["changes"][0]["canonical"]["status"] == "INVESTIGATING"
    assert _rows(hub) == before
    assert (
        hub.mappings.current("pagerduty").document.status.from_vendor["acknowledged"] is Status.ACKNOWLEDGED
    )


def test_incident_preview_gives_the_vendor_fields(configured: TestClient, hub: Hub, vendor: Receiver) -> None:
    before = _rows(hub)
    incident = {"title": "Checkout 502s", "severity": "SEV1_CRITICAL", "status": "RESOLVED"}
    answer = configured.post("/api/v1/mappings/jira/preview", json={"incident": incident})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["direction"] == "outbound" and body["routed"] is True
    assert body["fields"] == {
        "status": "Done",
        "priority": "Highest",
        "summary": "Checkout 502s",
        "description": sample_incident().description,
    }
    draft = (DEFAULTS / "jira.yaml").read_text() + (
        "custom_fields:\n  - {field: customfield_10043, template: '{number}: {title}'}\n"
        "routing: {severities: [SEV2_HIGH]}\n"
    )
    answer = configured.post("/api/v1/mappings/jira/preview", json={"incident": incident, "document": draft})
    assert answer.status_code == 200, answer.text
    assert answer.json()["fields"]["customfield_10043"] == f"{sample_incident().number}: Checkout 502s"
    assert answer.json()["routed"] is False
    assert _rows(hub) == before
    assert vendor.requests == []


def test_python_interface_previews(configured: TestClient, hub: Hub) -> None:
    incident = sample_incident().model_copy(update={"severity": Severity.SEV4_LOW})
    preview: dict[str, Any] = hub.mappings.preview_outbound("pagerduty", incident)
    assert preview["fields"]["priority"] == "P4"
    body = json.dumps(ACKNOWLEDGED).encode()
    inbound = hub.mappings.preview_inbound("pagerduty", body, {"Content-Type": "application/json"})
    assert inbound["changes"][0]["canonical"]["status"] == "ACKNOWLEDGED"


def test_a_webhook_that_needs_a_vendor_read_is_not_previewed(
    configured: TestClient, hub: Hub, vendor: Receiver
) -> None:
    before = _rows(hub)
    webhook = {"webhookEvent": "jira:issue_updated", "timestamp": 1, "issue": {"id": "10001", "fields": {}}}
    answer = configured.post("/api/v1/mappings/jira/preview", json={"webhook": webhook})
    assert answer.status_code == 422
    assert "cannot preview" in answer.json()["detail"]
    assert _rows(hub) == before
    assert vendor.requests == []


def test_invalid_draft_and_bad_requests_are_refused(configured: TestClient, hub: Hub) -> None:
    answer = configured.post(
        "/api/v1/mappings/jira/preview", json={"incident": {}, "document": "status: {to_vendor: {}}"}
    )
    assert answer.status_code == 422
    locations = {p["location"] for p in answer.json()["problems"]}
    assert "$.severity" in locations
    both = configured.post("/api/v1/mappings/jira/preview", json={"incident": {}, "webhook": {}})
    assert both.status_code == 422


def test_preview_needs_a_key(configured: TestClient, hub: Hub) -> None:
    answer = configured.post(
        "/api/v1/mappings/jira/preview", json={"incident": {}}, headers={"Authorization": "Bearer nope"}
    )
    assert answer.status_code == 401
    reader = key_for(hub, Scope.READ)
    assert (
        configured.post("/api/v1/mappings/jira/preview", json={"incident": {}}, headers=reader).status_code
        == 200
    )
