"""Plain-text logs (INCIDENT_HUB_LOG_JSON=false) carry the context JSON logs carry; start-up says which
connectors the hub syncs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from incident_hub.api.app import create_app
from incident_hub.commands import IncidentDraft
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.logs import configure
from incident_hub.sandbox.world import connect
from tests.conftest import test_settings


@pytest.fixture
def own_logging() -> Iterator[None]:
    """The test may set up logging as `serve` does; the test runner's is put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_plain_log_of_a_dead_delivery_names_the_delivery_the_connector_and_the_reason(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    own_logging: None,
) -> None:
    configure("INFO", json_lines=False)  # as `serve` with INCIDENT_HUB_LOG_JSON=false, to capsys's stderr
    hub = Hub(test_settings(database_url, tmp_path, delivery_max_attempts=1))
    hub.migrate()
    monkeypatch.setenv("INCIDENT_HUB_SANDBOX_PD", "")
    with ExitStack() as stack:
        connect(stack, hub, "https://hub.invalid", tmp_path / "sandboxes", vendors=("pagerduty",))
        monkeypatch.setenv("INCIDENT_HUB_SANDBOX_PD", "a-revoked-token")
        hub.incidents.create(IncidentDraft(title="Payments down"))
        asyncio.run(hub.dispatcher.drain())
        (dead,) = hub.outbox.search(state="dead")
    asyncio.run(hub.stop())

    line = next(line for line in capsys.readouterr().err.splitlines() if "delivery dead" in line)
    assert " WARNING incident_hub.sync.dispatcher delivery dead " in line
    assert f"delivery_id={dead.id}" in line
    assert "connector=pagerduty" in line
    assert 'error="HTTP 401 from PagerDuty' in line
    assert "a-revoked-token" not in line


def test_start_up_warns_when_no_connector_is_configured(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="incident_hub.hub")
    with TestClient(create_app(test_settings(database_url, tmp_path))):
        pass
    (warning,) = [r for r in caplog.records if r.name == "incident_hub.hub"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("no connectors configured: set INCIDENT_HUB_CONFIG")


def test_start_up_lists_the_connectors_and_those_missing_credentials(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_JIRA_TOKEN", raising=False)
    app = create_app(test_settings(database_url, tmp_path))
    hub: Hub = app.state.hub
    hub.migrate()
    for config in (
        {
            "id": "pagerduty",
            "kind": "pagerduty",
            "base_url": "https://pagerduty.invalid",
            "options": {"from_email": "hub@example.com", "service_id": "PSERVICE"},
        },
        {
            "id": "jira",
            "kind": "jira",
            "base_url": "https://jira.invalid",
            "credentials": {"env": "UNSET_JIRA_TOKEN"},
            "options": {"email": "hub@example.com", "project_key": "OPS"},
        },
    ):
        hub.connectors.upsert(ConnectorConfig.model_validate(config), source="file")

    caplog.set_level(logging.INFO, logger="incident_hub.hub")
    with TestClient(app):
        pass
    said = [(r.levelname, r.getMessage(), r.__dict__.get("reason")) for r in caplog.records]
    assert ("INFO", "connectors: jira (jira), pagerduty (pagerduty)", None) in said
    assert (
        "WARNING",
        "connector cannot read its credentials: its deliveries will fail",
        "credentials: environment variable UNSET_JIRA_TOKEN is not set",
    ) in said
