"""API keys and scopes, secrets that never leave the hub, and the key-less operational endpoints."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.api.app import create_app
from incident_hub.api.auth import ApiKeys, Scope
from incident_hub.hub import Hub
from incident_hub.store.db import Database
from incident_hub.store.tables import ApiKeyRow, IncidentRow, SubscriptionRow
from tests.conftest import key_for, test_settings
from tests.support import Receiver

# What TestClient returns (an httpx or httpx2 response, depending on what is installed).
Response = Any

INCIDENTS = "/api/v1/incidents"
SUBSCRIPTIONS = "/api/v1/subscriptions"
PROBLEM_KEYS = {"type", "title", "status", "detail"}
SECRET = "s3cr3t-value-never-shown"


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def incident_count(hub: Hub) -> int:
    with hub.db.read() as session:
        return len(session.scalars(select(IncidentRow.id)).all())


def subscription_draft(url: str = "https://chatops.example.com/hooks/incidents") -> dict[str, Any]:
    return {"url": url, "event_types": ["incident_created"], "secret": SECRET, "name": "chatops"}


@pytest.fixture
def uncached(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Hub]]:
    """The app with API keys re-checked on every request (no verification cache), and its hub."""
    app = create_app(test_settings(database_url, tmp_path / "uncached", api_key_cache_seconds=0))
    with TestClient(app) as test_client:
        yield test_client, app.state.hub


# ---- authentication -------------------------------------------------------------------------------------


def test_missing_key_is_401_with_www_authenticate(client: TestClient, hub: Hub) -> None:
    for response in (
        client.get(INCIDENTS),
        client.post(INCIDENTS, json={"title": "x"}),
        client.get(f"{INCIDENTS}/00000000-0000-0000-0000-000000000000"),
        client.get(SUBSCRIPTIONS),
        client.get(INCIDENTS, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    ):
        body = problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in body["detail"]
    assert incident_count(hub) == 0


def test_unknown_or_malformed_key_is_401(client: TestClient, hub: Hub) -> None:
    good = key_for(hub, Scope.ADMIN)["Authorization"]
    prefix, secret = good.removeprefix("Bearer ").split("_", 2)[1:]
    tampered = f"Bearer ih_{prefix}_{'A' * len(secret)}"
    for header in ("Bearer garbage", "Bearer ih_000000000000_nope", tampered, "Bearer "):
        response = client.post(INCIDENTS, json={"title": "x"}, headers={"Authorization": header})
        problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert incident_count(hub) == 0
    assert client.get(INCIDENTS, headers={"Authorization": good}).status_code == 200


def test_read_key_can_read_but_not_write(client: TestClient, hub: Hub) -> None:
    admin = key_for(hub, Scope.ADMIN)
    incident = client.post(INCIDENTS, json={"title": "x"}, headers=admin).json()
    reader = key_for(hub, Scope.READ)

    assert client.get(INCIDENTS, headers=reader).status_code == 200
    assert client.get(f"{INCIDENTS}/{incident['id']}", headers=reader).status_code == 200
    assert client.get(f"{INCIDENTS}/{incident['id']}/timeline", headers=reader).status_code == 200

    for response in (
        client.post(INCIDENTS, json={"title": "y"}, headers=reader),
        client.patch(f"{INCIDENTS}/{incident['id']}", json={"title": "y"}, headers=reader),
        client.put(f"{INCIDENTS}/{incident['id']}/status", json={"status": "RESOLVED"}, headers=reader),
        client.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "y"}, headers=reader),
        client.post(f"{INCIDENTS}/{incident['id']}/timeline", json={"message": "y"}, headers=reader),
    ):
        body = problem(response, 403)
        assert "write" in body["detail"]
        assert "WWW-Authenticate" not in response.headers
    after = client.get(f"{INCIDENTS}/{incident['id']}", headers=reader).json()
    assert after["title"] == "x"
    assert after["version"] == 1
    assert incident_count(hub) == 1


def test_write_key_changes_incidents_but_cannot_manage_subscriptions(client: TestClient, hub: Hub) -> None:
    writer = key_for(hub, Scope.WRITE)
    created = client.post(INCIDENTS, json={"title": "x"}, headers=writer)
    assert created.status_code == 201
    assert client.get(INCIDENTS, headers=writer).status_code == 200  # write includes read

    body = problem(client.post(SUBSCRIPTIONS, json=subscription_draft(), headers=writer), 403)
    assert "admin" in body["detail"]
    problem(client.get(SUBSCRIPTIONS, headers=writer), 403)
    with hub.db.read() as session:
        assert session.scalars(select(SubscriptionRow)).all() == []


def test_admin_key_manages_subscriptions(client: TestClient, hub: Hub) -> None:
    admin = key_for(hub, Scope.ADMIN)
    created = client.post(SUBSCRIPTIONS, json=subscription_draft(), headers=admin)
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert subscription["url"] == "https://chatops.example.com/hooks/incidents"
    assert subscription["event_types"] == ["incident_created"]
    assert subscription["active"] is True

    listed = client.get(SUBSCRIPTIONS, headers=admin).json()
    assert [s["id"] for s in listed] == [subscription["id"]]
    deleted = client.delete(f"{SUBSCRIPTIONS}/{subscription['id']}", headers=admin)
    assert deleted.status_code == 204
    assert client.get(SUBSCRIPTIONS, headers=admin).json() == []
    problem(client.delete(f"{SUBSCRIPTIONS}/{subscription['id']}", headers=admin), 404)


def test_revoked_key_is_rejected(client: TestClient, hub: Hub) -> None:
    issued = hub.api_keys.create("ci", [Scope.WRITE])
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert client.get(INCIDENTS, headers=headers).status_code == 200  # now cached as verified
    assert hub.api_keys.revoke(issued.id) is True
    problem(client.get(INCIDENTS, headers=headers), 401)
    problem(client.post(INCIDENTS, json={"title": "x"}, headers=headers), 401)
    assert hub.api_keys.revoke(issued.id) is False  # already revoked
    assert incident_count(hub) == 0


def _revoke_from_another_process(hub: Hub, key_id: str) -> None:
    """Revoke the way the CLI or another replica does: through the database, not this hub's cache."""
    other = Database(hub.db.url.render_as_string(hide_password=False))
    try:
        assert ApiKeys(other).revoke(key_id) is True
    finally:
        other.dispose()


def test_key_revoked_elsewhere_is_rejected_at_once_without_cache(uncached: tuple[TestClient, Hub]) -> None:
    client, hub = uncached
    issued = hub.api_keys.create("ci", [Scope.READ])
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert client.get(INCIDENTS, headers=headers).status_code == 200
    _revoke_from_another_process(hub, issued.id)
    problem(client.get(INCIDENTS, headers=headers), 401)


def test_key_revoked_elsewhere_is_trusted_until_its_cache_entry_expires(client: TestClient, hub: Hub) -> None:
    """The documented revocation lag (`api_key_cache_seconds`, 30 s by default)."""
    issued = hub.api_keys.create("ci", [Scope.READ])
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert client.get(INCIDENTS, headers=headers).status_code == 200
    _revoke_from_another_process(hub, issued.id)
    assert client.get(INCIDENTS, headers=headers).status_code == 200
    # A key never verified before is checked against the database: a revoked one is refused.
    fresh = hub.api_keys.create("ci-2", [Scope.READ])
    _revoke_from_another_process(hub, fresh.id)
    problem(client.get(INCIDENTS, headers={"Authorization": f"Bearer {fresh.key}"}), 401)


# ---- secrets never leave the hub ------------------------------------------------------------------------


def test_subscription_secrets_are_never_returned(api: TestClient, hub: Hub) -> None:
    created = api.post(SUBSCRIPTIONS, json=subscription_draft())
    assert created.status_code == 201
    assert "secret" not in created.json()
    assert SECRET not in created.text
    listed = api.get(SUBSCRIPTIONS)
    assert listed.status_code == 200
    assert all("secret" not in s for s in listed.json())
    assert SECRET not in listed.text
    # Nor in a validation error about the same body.
    invalid = api.post(SUBSCRIPTIONS, json={**subscription_draft(), "event_types": ["bogus"]})
    body = problem(invalid, 422)
    assert "bogus" in body["detail"]
    assert SECRET not in invalid.text
    short = api.post(SUBSCRIPTIONS, json={**subscription_draft(), "secret": "short"})
    problem(short, 422)
    assert '"short"' not in short.text
    # The hub does keep it, to sign with.
    with hub.db.read() as session:
        assert session.scalars(select(SubscriptionRow.secret)).all() == [SECRET]
    schema = api.get("/openapi.json").json()["components"]["schemas"]["Subscription"]
    assert "secret" not in schema["properties"]


def test_api_key_hashes_are_never_returned(api: TestClient, hub: Hub) -> None:
    issued = hub.api_keys.create("ci", [Scope.READ])
    digest = hashlib.sha256(issued.key.encode()).hexdigest()
    with hub.db.read() as session:
        assert session.scalar(select(ApiKeyRow.key_hash).where(ApiKeyRow.id == issued.id)) == digest
    api.post(INCIDENTS, json={"title": "x"})
    responses = [
        api.get(INCIDENTS, headers={"Authorization": f"Bearer {issued.key}"}),
        api.get(SUBSCRIPTIONS),
        api.get("/openapi.json"),
        api.get("/metrics"),
        api.get(INCIDENTS, headers={"Authorization": f"Bearer {issued.key}x"}),
    ]
    for response in responses:
        assert digest not in response.text
        assert issued.key not in response.text
        assert "key_hash" not in response.text


# ---- operational endpoints ------------------------------------------------------------------------------


def test_health_and_readiness_need_no_key(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_metrics_need_no_key_and_count_requests_and_deliveries(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    admin = key_for(hub, Scope.ADMIN)
    subscription = client.post(
        SUBSCRIPTIONS, json={"url": receiver.url, "event_types": ["*"], "secret": SECRET}, headers=admin
    )
    assert subscription.status_code == 201, subscription.text
    assert client.post(INCIDENTS, json={"title": "x"}, headers=admin).status_code == 201
    receiver.wait_for(1)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    created = re.search(
        r'^incident_hub_http_requests_total\{method="POST",route="/api/v1/incidents",status="201"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert created is not None and float(created.group(1)) >= 1
    assert "# TYPE incident_hub_deliveries gauge" in text
    assert re.search(r'^incident_hub_deliveries\{state="(pending|delivered)"\} [1-9]', text, re.MULTILINE)
    assert "incident_hub_dispatcher_lag_seconds" in text
    assert "incident_hub_events_total" in text


def test_openapi_lists_the_seed_paths_with_examples(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/incidents"])
    assert "put" in paths["/api/v1/incidents/{incident_id}/status"]
    assert "post" in paths["/api/v1/incidents/{incident_id}/escalate"]
    draft = spec["components"]["schemas"]["IncidentDraft"]
    seed_example, richer = draft["examples"]
    assert seed_example["affected_services"] == ["portfolio_management_service"]
    assert seed_example["automated_responses"][0]["execution_status"] == "in_progress"
    assert richer["dedup_key"]
    for example in (seed_example, richer):
        assert example["title"]
        assert example["severity"] == "SEV2_HIGH"
        assert set(example) <= set(draft["properties"])
    # Timestamps set by the lifecycle are not part of any request body.
    for name in ("IncidentDraft", "IncidentPatch", "StatusChange"):
        properties = spec["components"]["schemas"][name]["properties"]
        assert not {"acknowledged_at", "mitigated_at", "resolved_at", "closed_at"} & set(properties)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
