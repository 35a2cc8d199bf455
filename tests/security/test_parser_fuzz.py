"""Fuzzing each connector's webhook parser, seeded from the vendors' own examples in the repository:
whatever the body, only the typed parse error escapes (the request then answers 400 and is recorded)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident_hub.connectors.base import Connector, ConnectorConfig, Secret, WebhookParseError
from incident_hub.connectors.jira import JiraConnector
from incident_hub.connectors.opsgenie import OpsgenieConnector
from incident_hub.connectors.pagerduty import PagerDutyConnector
from incident_hub.connectors.servicenow import ServiceNowConnector
from tests.connectors.test_servicenow_connector import message
from tests.support import VENDOR


def _config(kind: str, **options: Any) -> ConnectorConfig:
    return ConnectorConfig(
        id=kind,
        kind=kind,
        base_url=f"https://{kind}.invalid",
        credentials=Secret(env="FUZZ_UNUSED"),
        webhook_secret=Secret(env="FUZZ_UNUSED"),
        options=options,
    )


CONNECTORS: dict[str, Connector] = {
    "pagerduty": PagerDutyConnector(
        _config("pagerduty", from_email="hub@example.com", service_id="PSVC", hub_user_id="PHUB")
    ),
    "jira": JiraConnector(
        _config("jira", email="hub@example.com", project_key="OPS", hub_account_id="557058:hub")
    ),
    "servicenow": ServiceNowConnector(_config("servicenow", username="hub")),
    "opsgenie": OpsgenieConnector(_config("opsgenie")),
}


def _examples(kind: str) -> list[Any]:
    folders = {
        "pagerduty": VENDOR / "pagerduty" / "webhooks-v3",
        "jira": VENDOR / "jira" / "webhook-examples",
        "opsgenie": VENDOR / "opsgenie" / "webhook-examples",
    }
    if kind == "servicenow":
        return [message()]
    found = []
    for path in sorted(Path(folders[kind]).rglob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            continue
    assert found, f"no {kind} examples"
    return found


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """The example with one value somewhere in it replaced by any JSON value (or removed)."""
    document = json.loads(json.dumps(seed))
    node = document
    for _ in range(draw(st.integers(0, 6))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], dict | list) or draw(st.booleans()):
                if draw(st.booleans()):
                    node[key] = draw(json_values)
                else:
                    del node[key]
                return document
            node = node[key]
        elif isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            if not isinstance(node[index], dict | list) or draw(st.booleans()):
                node[index] = draw(json_values)
                return document
            node = node[index]
        else:
            break
    return draw(json_values) if draw(st.integers(0, 9)) == 0 else document


def _parse_only_fails_typed(connector: Connector, body: bytes) -> None:
    """What the inbox does with a verified body: only the typed parse error may escape."""
    headers = {"content-type": "application/json"}
    with contextlib.suppress(WebhookParseError):
        connector.read_webhook(headers, body)
    connector.event_key(headers, body)
    connector.kept_body(body)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_a_mutated_vendor_example_only_ever_raises_the_parse_error(kind: str) -> None:
    connector = CONNECTORS[kind]
    examples = _examples(kind)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(st.sampled_from(examples).flatmap(mutated))
    def check(document: Any) -> None:
        _parse_only_fails_typed(connector, json.dumps(document).encode())

    check()


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion limit
        b'{"event": ' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe not utf-8",
        b"",
        b"null",
        b'"a string"',
        b"1e999999",
        b'{"a": NaN}',
    ],
    ids=["deep-list", "deep-object", "not-utf8", "empty", "null", "string", "huge-number", "nan"],
)
def test_hostile_bodies_only_ever_raise_the_parse_error(kind: str, body: bytes) -> None:
    _parse_only_fails_typed(CONNECTORS[kind], body)


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@given(body=st.binary(max_size=200))
@settings(max_examples=100, deadline=None, derandomize=True)
def test_random_bytes_only_ever_raise_the_parse_error(kind: str, body: bytes) -> None:
    _parse_only_fails_typed(CONNECTORS[kind], body)


def test_a_signed_deeply_nested_pagerduty_body_answers_400_and_is_recorded(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUZZ_PD_TOKEN", "token")
    monkeypatch.setenv("FUZZ_PD_SECRET", "pd-secret-for-fuzzing")
    config = {
        "id": "pagerduty",
        "kind": "pagerduty",
        "base_url": "https://pagerduty.invalid",
        "credentials": {"env": "FUZZ_PD_TOKEN"},
        "webhook_secret": {"env": "FUZZ_PD_SECRET"},
        "options": {"from_email": "hub@example.com", "service_id": "PSVC"},
    }
    assert api.put("/api/v1/connectors/pagerduty", json=config).status_code == 200
    body = b'{"event": ' * 50_000 + b"1" + b"}" * 50_000
    signature = hmac.new(b"pd-secret-for-fuzzing", body, hashlib.sha256).hexdigest()

    answer = api.post(
        "/webhooks/pagerduty", content=body, headers={"X-PagerDuty-Signature": f"v1={signature}"}
    )

    assert answer.status_code == 400, answer.text
    (rejection,) = api.get("/api/v1/webhook-rejections").json()
    assert rejection["status"] == 400 and "RecursionError" in rejection["reason"]
    assert rejection["body_sha256"] == hashlib.sha256(body).hexdigest()
