"""A captured, correctly signed webhook replayed with new unsigned headers is stored once, not applied
again."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from incident_hub.sandbox.jira.webhooks import IDENTIFIER_HEADER, sign
from tests.support import VENDOR, put_webhook_connector

SECRET = "jira-webhook-secret-for-replay"
EXAMPLES = VENDOR / "jira" / "webhook-examples" / "mattermost-plugin-jira"


@pytest.fixture
def jira_hub(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    put_webhook_connector(api, monkeypatch, "jira", SECRET)
    return api


def _signed(example: str) -> tuple[bytes, dict[str, str]]:
    payload = json.loads((EXAMPLES / example).read_text())
    payload["timestamp"] = 4102444800000  # 2100: never stale
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", **sign(body, SECRET)}


@pytest.mark.parametrize(
    "example", ["webhook-issue-updated-edited.json", "webhook-cloud-comment-created.json"]
)
def test_a_signed_jira_body_replayed_with_a_new_identifier_is_a_duplicate(
    jira_hub: TestClient, example: str
) -> None:
    body, headers = _signed(example)
    answers = [
        jira_hub.post("/webhooks/jira", content=body, headers={**headers, IDENTIFIER_HEADER: f"replay-{n}"})
        for n in range(5)
    ]
    assert [a.status_code for a in answers] == [202] * 5
    stored = jira_hub.get("/api/v1/inbox", params={"connector_id": "jira"}).json()
    assert len(stored) == 1


def test_two_different_jira_changes_are_both_kept(jira_hub: TestClient) -> None:
    first, headers = _signed("webhook-issue-updated-edited.json")
    payload = json.loads(first)
    payload["changelog"]["id"] = str(int(payload["changelog"]["id"]) + 1)
    second = json.dumps(payload).encode()
    for body in (first, second):
        signed = {**headers, **sign(body, SECRET), IDENTIFIER_HEADER: "same-header"}
        assert jira_hub.post("/webhooks/jira", content=body, headers=signed).status_code == 202
    assert len(jira_hub.get("/api/v1/inbox", params={"connector_id": "jira"}).json()) == 2
