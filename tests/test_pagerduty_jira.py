"""PagerDuty and Jira through the hub: a change in one reaches the other once, and nothing echoes; and the
demo's four-way scenario."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from incident_hub.api.app import create_app
from incident_hub.demo_sync import run_sync
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.world import JiraSide, PagerDutySide, connect
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
        world = connect(stack, hub, url, tmp_path, vendors=("pagerduty", "jira"))
        pd, jira = world["pagerduty"], world["jira"]
        assert isinstance(pd, PagerDutySide) and isinstance(jira, JiraSide)
        issue_id = jira.open("Login errors", Severity.SEV2_HIGH)
        pd_id = wait_until(lambda: next(iter(pd.refs()), None))
        pd_incident = pd.state.incidents[pd_id]
        assert (pd_incident.title, pd_incident.urgency) == ("Login errors", "high")
        wait_until(lambda: pd.ledger.writes())
        time.sleep(0.5)
        assert [e.path for e in pd.ledger.writes()] == ["/incidents"]
        assert jira.ledger.writes() == [], "the Jira issue must not be written back to Jira"

        pd.set_severity(pd_id, Severity.SEV1_CRITICAL)
        wait_until(lambda: jira.severity(issue_id) is Severity.SEV1_CRITICAL)
        pd.add_note(pd_id, "Identity provider slow")
        wait_until(lambda: jira.notes(issue_id))
        time.sleep(0.5)
        (comment,) = jira.notes(issue_id)
        assert comment.startswith("[pagerduty] ") and comment.endswith(": Identity provider slow")
        # PagerDuty got its one create and nothing more; Jira got one priority edit and one comment.
        assert [e.path for e in pd.ledger.writes()] == ["/incidents"]
        assert len(jira.ledger.writes()) == 2
        incidents = hub.incidents.search().incidents
        assert len(incidents) == 1 and incidents[0].severity.value == "SEV1_CRITICAL"
