"""No credential a vendor repeats inside a webhook body is stored: not when the webhook is accepted, not when
it is rejected, not when nobody knows the connector; a read key sees none of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from incident_hub.store.tables import InboxRow, WebhookRejectionRow
from tests.conftest import key_for
from tests.support import VENDOR, put_webhook_connector

SECRET = "og-shared-secret-4417-never-stored"
ESCALATE = VENDOR / "opsgenie" / "webhook-examples" / "zulip-fixtures" / "escalate.json"


@pytest.fixture
def opsgenie_hub(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    put_webhook_connector(api, monkeypatch, "opsgenie", SECRET)
    return api


def _escalate_repeating_the_secret() -> bytes:
    """Opsgenie repeats the integration's custom headers, the shared secret among them, in the body."""
    payload: dict[str, Any] = json.loads(ESCALATE.read_text())
    payload["headers"] = {"X-Incident-Hub-Secret": SECRET, "X-Team": "payments"}
    payload["alert"]["updatedAt"] = 4102444800000000000  # 2100, in nanoseconds: never stale
    return json.dumps(payload).encode()


def _stored_text(hub: Hub) -> str:
    with hub.db.read() as session:
        inbox = [f"{r.headers} {r.body}" for r in session.scalars(select(InboxRow))]
        rejected = [f"{r.reason} {r.body_excerpt}" for r in session.scalars(select(WebhookRejectionRow))]
    return "\n".join(inbox + rejected)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/webhooks/opsgenie", {"X-Incident-Hub-Secret": SECRET}, 202),  # accepted
        ("/webhooks/opsgenie", {"X-Incident-Hub-Secret": "wrong"}, 401),  # rejected: forged header
        ("/webhooks/opsgenie", {}, 401),  # rejected: no header
        ("/webhooks/no-such-connector", {"X-Incident-Hub-Secret": SECRET}, 404),  # nobody to strip it
    ],
)
def test_a_secret_repeated_in_a_body_is_never_stored_nor_shown(
    opsgenie_hub: TestClient, hub: Hub, path: str, headers: dict[str, str], status: int
) -> None:
    answer = opsgenie_hub.post(path, content=_escalate_repeating_the_secret(), headers=headers)
    assert answer.status_code == status, answer.text
    assert SECRET not in answer.text

    assert SECRET not in _stored_text(hub)
    reader = TestClient(opsgenie_hub.app, headers=key_for(hub, Scope.READ))
    for listing in ("/api/v1/webhook-rejections", "/api/v1/inbox"):
        shown = reader.get(listing)
        assert shown.status_code == 200
        assert SECRET not in shown.text
    if status != 202:
        (rejection,) = reader.get("/api/v1/webhook-rejections").json()
        assert "7ba97e3a-d328-4b5e-8f9a-39e945a3869a" in rejection["body_excerpt"]  # the rest is kept
