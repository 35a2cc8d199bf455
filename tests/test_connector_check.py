"""`incident-hub connectors check|health` against the four vendor sandboxes over HTTPS: what works is
`ok`, what does not is `FAIL` with the reason, and the exit status says whether anything failed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.pagerduty import ESCALATION_POLICY_ID
from incident_hub.sandbox.world import VENDORS, World, connect
from incident_hub.serving import free_port
from tests.cli_support import Cli, arranged, cli

__all__ = ["arranged", "cli"]  # fixtures


@pytest.fixture
def world(arranged: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with ExitStack() as stack:
        # connect() exports the made-up credentials; monkeypatch puts the environment back after.
        for name in ("pd", "pd_hook", "jira", "jira_hook", "sn", "sn_hook", "og", "og_hook"):
            monkeypatch.setenv(f"INCIDENT_HUB_SANDBOX_{name.upper()}", "")
        yield connect(stack, arranged, "https://hub.invalid", tmp_path / "sandboxes")


def _reconfigure(hub: Hub, connector_id: str, **changes: Any) -> None:
    stored = hub.connectors.state(connector_id).config.model_dump(mode="json")
    options = {**stored["options"], **changes.pop("options", {})}
    hub.connectors.upsert(ConnectorConfig.model_validate({**stored, **changes, "options": options}))


def _lines(output: str) -> dict[str, tuple[str, str]]:
    """`ok  auth  detail` lines as {name: (mark, detail)}."""
    found = {}
    for line in output.splitlines():
        mark, rest = line[:4].strip(), line[6:]
        name, _, detail = rest.partition("  ")
        found[name.strip()] = (mark, detail.strip())
    return found


@pytest.mark.parametrize("vendor", VENDORS)
def test_check_passes_for_a_working_configuration(cli: Cli, world: World, vendor: str) -> None:
    result = cli("connectors", "check", vendor)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert lines["credentials"][0] == "ok" and lines["webhook_secret"][0] == "ok"
    assert lines["auth"][0] == "ok"
    assert lines["webhook"][0] == "--"  # no vendor here says where its webhooks go
    assert "FAIL" not in result.stdout
    target = {"pagerduty": "service", "jira": "project", "servicenow": "table", "opsgenie": None}[vendor]
    if target:
        assert lines[target][0] == "ok"
    if vendor == "jira":
        assert lines["issue type"] == ("ok", "Incident exists")


def test_check_reports_a_refused_token_for_each_vendor(
    cli: Cli, world: World, arranged: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    for vendor in VENDORS:
        _reconfigure(arranged, vendor, credentials={"env": "WRONG_TOKEN"})
        result = cli("connectors", "check", vendor)
        assert result.exit_code == 1, (vendor, result.output)
        mark, detail = _lines(result.stdout)["auth"]
        assert mark == "FAIL" and "401" in detail, (vendor, detail)
        assert "not-the-token" not in result.output


def test_check_reports_a_missing_service_project_or_group(cli: Cli, world: World, arranged: Hub) -> None:
    policies = {"payments": ESCALATION_POLICY_ID, "search": "PNOPOLICY"}
    _reconfigure(arranged, "pagerduty", options={"service_id": "PNOSUCH", "escalation_policies": policies})
    _reconfigure(arranged, "jira", options={"project_key": "NOPE"})
    _reconfigure(arranged, "servicenow", options={"assignment_groups": {"payments": uuid.uuid4().hex}})

    pagerduty = cli("connectors", "check", "pagerduty")
    assert pagerduty.exit_code == 1
    mark, detail = _lines(pagerduty.stdout)["service"]
    assert mark == "FAIL" and "PNOSUCH" in detail and "404" in detail
    assert _lines(pagerduty.stdout)["auth"][0] == "ok"
    assert _lines(pagerduty.stdout)["escalation policy of payments"][0] == "ok"
    assert _lines(pagerduty.stdout)["escalation policy of search"][0] == "FAIL"

    jira = cli("connectors", "check", "jira")
    assert jira.exit_code == 1
    mark, detail = _lines(jira.stdout)["project"]
    assert mark == "FAIL" and "NOPE" in detail and "404" in detail

    servicenow = cli("connectors", "check", "servicenow")
    assert servicenow.exit_code == 1
    mark, detail = _lines(servicenow.stdout)["assignment group of payments"]
    assert mark == "FAIL" and detail.startswith("no sys_user_group")


def test_check_reports_an_unset_credential_without_calling_the_vendor(
    cli: Cli, world: World, arranged: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INCIDENT_HUB_SANDBOX_JIRA")
    calls = len(world["jira"].ledger.entries())
    result = cli("connectors", "check", "jira")
    assert result.exit_code == 1
    lines = _lines(result.stdout)
    assert lines["credentials"] == ("FAIL", "environment variable INCIDENT_HUB_SANDBOX_JIRA is not set")
    assert lines["auth"] == ("FAIL", "not tried: a credential is unreadable")
    assert len(world["jira"].ledger.entries()) == calls
    assert "Traceback" not in result.output


def test_check_reports_an_unreachable_vendor(cli: Cli, world: World, arranged: Hub) -> None:
    _reconfigure(arranged, "opsgenie", base_url=f"https://127.0.0.1:{free_port()}", timeout_seconds=2)
    result = cli("connectors", "check", "opsgenie")
    assert result.exit_code == 1
    mark, detail = _lines(result.stdout)["auth"]
    assert mark == "FAIL" and "unreachable" in detail


def test_health_lists_every_connector_and_fails_if_one_does(
    cli: Cli, world: World, arranged: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = cli("connectors", "health")
    assert healthy.exit_code == 0, healthy.output
    assert sorted(line.split()[0] for line in healthy.stdout.splitlines()[1:]) == sorted(VENDORS)

    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    _reconfigure(arranged, "pagerduty", credentials={"env": "WRONG_TOKEN"})
    broken = cli("connectors", "health", "--json")
    assert broken.exit_code == 1
    answers = json.loads(broken.stdout)
    assert answers["pagerduty"]["ok"] is False and answers["jira"]["ok"] is True


def test_reconcile_now_runs_one_pass_per_connector(cli: Cli, world: World) -> None:
    world["pagerduty"].open("Disk full on db-3", Severity.SEV2_HIGH)
    result = cli("reconcile", "now", "pagerduty")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["RUN", "CONNECTOR", "KIND", "STATE"]
    assert row.split()[1:5] == ["pagerduty", "incremental", "ok", "1"]


def test_put_connector_with_unreadable_credentials_is_refused_naming_them(
    api: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_PD_TOKEN", raising=False)
    config = {
        "id": "pagerduty",
        "kind": "pagerduty",
        "base_url": "https://pagerduty.invalid",
        "credentials": {"env": "NO_SUCH_PD_TOKEN"},
        "options": {"from_email": "hub@example.com", "service_id": "PSERVICE"},
    }
    refused = api.put("/api/v1/connectors/pagerduty", json=config)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["detail"] == (
        "connector pagerduty: credentials: environment variable NO_SUCH_PD_TOKEN is not set"
    )

    missing = tmp_path / "pd-webhook-secret"
    monkeypatch.setenv("NO_SUCH_PD_TOKEN", "token")
    refused = api.put(
        "/api/v1/connectors/pagerduty", json={**config, "webhook_secret": {"file": str(missing)}}
    )
    assert refused.status_code == 422
    assert f"webhook_secret: cannot read secret file {missing}" in refused.json()["detail"]
    assert api.get("/api/v1/connectors/pagerduty").status_code == 404

    assert api.put("/api/v1/connectors/pagerduty", json=config).status_code == 200
