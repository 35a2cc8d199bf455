"""Vendor webhooks take a direct road past the API's routes; what a vendor and an operator see of them is
what the router gave: the answers, the problem documents, the limits, the metrics and the OpenAPI entry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incident_hub.signing import sign_sha256
from tests.support import put_webhook_connector

SECRET = "pagerduty-webhook-secret-for-ingress"
MIB = 1024 * 1024


@pytest.fixture
def pagerduty_hub(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    put_webhook_connector(api, monkeypatch, "pagerduty", SECRET)
    return api


def _triggered(n: int, padding: str = "") -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "event": {
                "id": f"EVINGRESS{n}",
                "event_type": "incident.triggered",
                "resource_type": "incident",
                "occurred_at": now,
                "agent": {"id": "PPERSON", "type": "user_reference", "summary": "Monitoring"},
                "client": None,
                "data": {
                    "id": f"QINGRESS{n}",
                    "type": "incident",
                    "number": n,
                    "status": "triggered",
                    "title": f"Disk 95% on db-{n}{padding}",
                    "urgency": "high",
                    "incident_key": f"disk/db-{n}",
                    "html_url": f"https://example.pagerduty.com/incidents/QINGRESS{n}",
                    "service": {"id": "PSVC", "type": "service_reference", "summary": "db"},
                },
            }
        }
    ).encode()


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={sign_sha256(SECRET, body)}"}


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _requests_counted(client: TestClient, method: str, route: str, status: int) -> float:
    text = client.get("/metrics").text
    line = re.search(
        rf'^incident_hub_http_requests_total\{{method="{method}",route="{re.escape(route)}",'
        rf'status="{status}"\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(line.group(1)) if line else 0.0


def test_signed_webhook_is_stored_once_and_its_repeat_answered_as_a_duplicate(
    pagerduty_hub: TestClient,
) -> None:
    body = _triggered(1)
    first = pagerduty_hub.post("/webhooks/pagerduty", content=body, headers=_signed(body))
    again = pagerduty_hub.post("/webhooks/pagerduty", content=body, headers=_signed(body))
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted" and isinstance(first.json()["inbox_id"], int)
    assert again.status_code == 202
    assert again.json() == {"status": "duplicate", "inbox_id": None}
    stored = pagerduty_hub.get("/api/v1/inbox", params={"connector_id": "pagerduty"}).json()
    assert [entry["id"] for entry in stored] == [first.json()["inbox_id"]]


def test_forged_and_unknown_connector_webhooks_are_problems_and_recorded(pagerduty_hub: TestClient) -> None:
    body = _triggered(2)
    forged = pagerduty_hub.post(
        "/webhooks/pagerduty",
        content=body,
        headers={"Content-Type": "application/json", "X-PagerDuty-Signature": "v1=" + "0" * 64},
    )
    unknown = pagerduty_hub.post("/webhooks/nobody", content=body, headers=_signed(body))
    assert _problem(forged, 401)["title"] == "Unauthenticated webhook"
    assert _problem(unknown, 404)["instance"] == "/webhooks/nobody"
    rejections = pagerduty_hub.get("/api/v1/webhook-rejections").json()
    assert sorted((r["connector_id"], r["status"]) for r in rejections) == [
        ("nobody", 404),
        ("pagerduty", 401),
    ]
    assert pagerduty_hub.get("/api/v1/inbox").json() == []


def test_other_methods_on_the_webhook_path_are_405_naming_post(pagerduty_hub: TestClient) -> None:
    answer = pagerduty_hub.get("/webhooks/pagerduty")
    _problem(answer, 405)
    assert answer.headers["allow"] == "POST"


def test_webhook_bodies_over_the_limit_are_413_with_or_without_a_length(pagerduty_hub: TestClient) -> None:
    body = _triggered(3, padding="x" * (MIB + 10))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    with_length = pagerduty_hub.post("/webhooks/pagerduty", content=body, headers=_signed(body))
    streamed = pagerduty_hub.post("/webhooks/pagerduty", content=chunks(), headers=_signed(body))
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert _problem(with_length, 413)["title"] == "Content too large"
    assert _problem(streamed, 413)["title"] == "Content too large"
    assert pagerduty_hub.get("/api/v1/inbox").json() == []


def test_webhooks_are_counted_under_their_route_template(pagerduty_hub: TestClient) -> None:
    route = "/webhooks/{connector_id}"
    accepted = _requests_counted(pagerduty_hub, "POST", route, 202)
    refused = _requests_counted(pagerduty_hub, "POST", route, 404)
    body = _triggered(4)
    assert pagerduty_hub.post("/webhooks/pagerduty", content=body, headers=_signed(body)).status_code == 202
    assert pagerduty_hub.post("/webhooks/nobody", content=body, headers=_signed(body)).status_code == 404
    assert _requests_counted(pagerduty_hub, "POST", route, 202) == accepted + 1
    assert _requests_counted(pagerduty_hub, "POST", route, 404) == refused + 1


def test_openapi_document_lists_the_webhook_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operation = paths["/webhooks/{connector_id}"]["post"]
    assert "202" in operation["responses"]
    assert "webhooks" in operation["tags"]
