"""Failed authentication is throttled per client address with a clear 429 and Retry-After."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from incident_hub.api.auth import Scope
from incident_hub.api.throttle import FailureThrottle
from incident_hub.hub import Hub
from tests.admin_support import csrf_token
from tests.conftest import key_for

BAD_KEY = {"Authorization": "Bearer ih_000000000000_not-a-key"}


def _from(client: TestClient, address: str) -> TestClient:
    return TestClient(client.app, client=(address, 40000), raise_server_exceptions=False)


def test_bad_api_keys_from_one_address_are_answered_429_after_a_burst(
    client: TestClient, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = key_for(hub, Scope.READ)
    attacker, neighbour, elsewhere = (
        _from(client, "10.0.0.7"),
        _from(client, "10.0.0.7"),
        _from(client, "10.0.0.8"),
    )
    assert neighbour.get("/api/v1/incidents", headers=good).status_code == 200  # verified before the flood

    statuses = [attacker.get("/api/v1/incidents", headers=BAD_KEY).status_code for _ in range(50)]

    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    refused = attacker.get("/api/v1/incidents", headers=BAD_KEY)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert "too many failed attempts" in refused.json()["detail"]
    # A key already verified keeps working from the same address; other addresses are not affected.
    assert neighbour.get("/api/v1/incidents", headers=good).status_code == 200
    assert elsewhere.get("/api/v1/incidents", headers=BAD_KEY).status_code == 401
    # One line says the address is throttled, not one per attempt.
    assert [r.getMessage() for r in caplog.records].count("throttling failed attempts") == 1


def test_failed_admin_logins_are_answered_429_after_a_burst(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    browser = _from(client, "10.0.0.9")
    form = browser.get("/admin/login")
    token = csrf_token(form.text)

    statuses = [
        browser.post("/admin/login", data={"api_key": "ih_0_wrong", "csrf_token": token}).status_code
        for _ in range(40)
    ]

    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    last = browser.post("/admin/login", data={"api_key": "ih_0_wrong", "csrf_token": token})
    assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
    assert "too many failed attempts" in last.text
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("admin login refused") == 10
    assert logged.count("throttling failed attempts") == 1


def test_a_throttled_address_may_try_again_once_its_bucket_refills() -> None:
    now = [1000.0]
    throttle = FailureThrottle(burst=3, per_second=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a", "api key")
    assert throttle.retry_after("a") == pytest.approx(2.0)
    assert throttle.retry_after("b") is None
    now[0] += 1.0
    assert throttle.retry_after("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert throttle.retry_after("a") is None
    throttle.failed("a", "api key")
    assert throttle.retry_after("a") == pytest.approx(2.0)


def test_the_throttle_forgets_addresses_beyond_its_bound() -> None:
    throttle = FailureThrottle(burst=1, per_second=0.001, clock=lambda: 0.0, max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.1.{n // 256}.{n % 256}", "api key")
    assert len(throttle) <= 100
