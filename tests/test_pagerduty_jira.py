"""PagerDuty and Jira through the hub: a change in one reaches the other once, and nothing echoes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from incident_hub.api.app import create_app
from incident_hub.demo_sync import Vendors, connect_vendors, run_sync
from incident_hub.hub import Hub
from incident_hub.sandbox.jira import HUMAN_ACCOUNT_ID
from incident_hub.sandbox.jira.render import adf_text
from incident_hub.sandbox.pagerduty import RESPONDER_ID
from incident_hub.serving import ServerThread
from tests.conftest import test_settings
from tests.support import wait_until


@pytest.fixture
def hub_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Hub, str]]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    with ServerThread(app) as server:
        yield app.state.hub, server.url


def test_the_demo_scenario_passes(hub_server: tuple[Hub, str], tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_sync(*hub_server, tmp_path, lines.append), "\n".join(lines)


def test_jira_issue_reaches_pagerduty_once_and_pagerduty_changes_come_back_once(
    hub_server: tuple[Hub, str], tmp_path: Path
) -> None:
    hub, url = hub_server
    with ExitStack() as stack:
        vendors: Vendors = connect_vendors(stack, hub, url, tmp_path)
        created = vendors.jira_ui.post(
            "/issues", json={"actor": HUMAN_ACCOUNT_ID, "summary": "Login errors", "priority": "High"}
        )
        created.raise_for_status()
        key = created.json()["key"]
        pd_incident = wait_until(lambda: next(iter(vendors.pd.incidents.values()), None))
        assert (pd_incident.title, pd_incident.urgency) == ("Login errors", "high")
        wait_until(lambda: vendors.pd.ledger.writes())
        time.sleep(0.5)
        assert [e.path for e in vendors.pd.ledger.writes()] == ["/incidents"]
        assert vendors.jira.ledger.writes() == [], "the Jira issue must not be written back to Jira"

        vendors.pd_ui.post(
            f"/incidents/{pd_incident.id}/priority", json={"actor": RESPONDER_ID, "priority": "P1"}
        )
        issue = next(i for i in vendors.jira.issues.values() if i.key == key)
        wait_until(lambda: issue.priority.name == "Highest")
        vendors.pd_ui.post(
            f"/incidents/{pd_incident.id}/notes",
            json={"actor": RESPONDER_ID, "content": "Identity provider slow"},
        )
        wait_until(lambda: issue.comments)
        time.sleep(0.5)
        (comment,) = issue.comments
        assert adf_text(comment.body).startswith("[pagerduty] ")
        assert adf_text(comment.body).endswith(": Identity provider slow")
        # PagerDuty got its one create and nothing more; Jira got one priority edit and one comment.
        assert [e.path for e in vendors.pd.ledger.writes()] == ["/incidents"]
        assert len(vendors.jira.ledger.writes()) == 2
        incidents = hub.incidents.search().incidents
        assert len(incidents) == 1 and incidents[0].severity.value == "SEV1_CRITICAL"
