"""Backfill: a vendor's existing objects come in once; those carrying a hub incident id are linked to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.cli import app as cli
from incident_hub.connectors.pagerduty import KEY_PREFIX
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.world import PagerDutySide, connect
from incident_hub.scheduler.backfill import BackfillReport, backfill
from incident_hub.serving import ServerThread
from incident_hub.settings import get_settings
from incident_hub.store.tables import DeliveryRow, ExternalRefRow, IncidentRow
from tests.conftest import key_for, test_settings
from tests.support import settle

SINCE = datetime.now(UTC) - timedelta(days=1)


@dataclass
class Backlog:
    """A hub that never heard of PagerDuty's incidents: one carries a hub incident's id, one is new, one
    is resolved."""

    hub: Hub
    api: httpx.Client
    pd: PagerDutySide
    known: str  # the hub incident PagerDuty's first incident carries
    database_url: str

    def run(self, *, include_ended: bool = False, dry_run: bool = False) -> BackfillReport:
        return asyncio.run(
            backfill(self.hub.reconciler, "pagerduty", SINCE, include_ended=include_ended, dry_run=dry_run)
        )

    def counts(self) -> tuple[int, int, int]:
        """Incidents, links and deliveries in the database."""
        with self.hub.db.read() as session:
            return (
                session.scalar(select(func.count()).select_from(IncidentRow)) or 0,
                session.scalar(select(func.count()).select_from(ExternalRefRow)) or 0,
                session.scalar(select(func.count()).select_from(DeliveryRow)) or 0,
            )

    def titles(self) -> dict[str, str]:
        return {i["title"]: i["status"] for i in self.api.get("/api/v1/incidents").json()["items"]}


@pytest.fixture
def backlog(database_url: str, tmp_path: Path) -> Iterator[Backlog]:
    settings = test_settings(database_url, tmp_path, inbox_poll_seconds=0.05, reconcile_enabled=False)
    app = create_app(settings)
    hub: Hub = app.state.hub
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        api = stack.enter_context(
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=30)
        )
        # Made before PagerDuty was connected: the hub never pushed it there.
        known = api.post("/api/v1/incidents", json={"title": "DB failover", "severity": "SEV2_HIGH"}).json()
        world = connect(stack, hub, server.url, tmp_path / "sandboxes", ("pagerduty",))
        pd = world["pagerduty"]
        assert isinstance(pd, PagerDutySide)
        pd.sandbox.state.knobs.webhooks_enabled = False
        pd.ui.post(
            "/incidents",
            json={
                "title": "DB failover",
                "urgency": "high",
                "priority": "P2",
                "incident_key": KEY_PREFIX + known["id"],
            },
        ).raise_for_status()
        pd.open("Queue slow", Severity.SEV3_MEDIUM)
        pd.resolve(pd.open("Old blip", Severity.SEV4_LOW))
        pd.ledger.clear()
        yield Backlog(hub, api, pd, known["id"], database_url)


def test_backfill_links_what_carries_a_hub_id_creates_the_rest_and_leaves_resolved_alone(
    backlog: Backlog,
) -> None:
    report = backlog.run()

    failover, queue, blip = backlog.pd.refs()
    assert [(i.external_id, i.incident_id) for i in report.linked] == [(failover, backlog.known)]
    assert [i.external_id for i in report.created] == [queue]
    assert [(i.external_id, i.detail) for i in report.left_alone] == [
        (blip, "ended in the vendor (see --all)")
    ]
    assert (report.updated, report.in_step) == ([], [])
    assert backlog.titles() == {"DB failover": "OPEN", "Queue slow": "OPEN"}
    refs = backlog.api.get(f"/api/v1/incidents/{backlog.known}").json()["external_refs"]
    assert [(r["connector_id"], r["external_id"]) for r in refs] == [("pagerduty", failover)]
    settle(backlog.hub, [backlog.pd.ledger])
    assert backlog.pd.ledger.writes() == [], "backfill must not write back to the vendor it reads"


def test_backfill_twice_links_nothing_new_and_creates_nothing(backlog: Backlog) -> None:
    backlog.run()
    settle(backlog.hub, [backlog.pd.ledger])
    counts = backlog.counts()

    again = backlog.run()

    assert (again.linked, again.created, again.updated) == ([], [], [])
    failover, queue, blip = backlog.pd.refs()
    assert [i.external_id for i in again.in_step] == [failover, queue]
    assert [i.external_id for i in again.left_alone] == [blip]
    assert backlog.counts() == counts
    assert "examined 3: linked 0, created 0, updated 0, already in step 2, left alone 1" in again.lines()


def test_backfill_all_brings_resolved_objects_in_as_resolved_incidents(backlog: Backlog) -> None:
    first = backlog.run(include_ended=True)
    assert (len(first.linked), len(first.created), first.left_alone) == (1, 2, [])
    assert backlog.titles() == {"DB failover": "OPEN", "Queue slow": "OPEN", "Old blip": "RESOLVED"}
    again = backlog.run(include_ended=True)
    assert (again.linked, again.created, len(again.in_step)) == ([], [], 3)


def test_backfill_dry_run_reports_and_changes_nothing(backlog: Backlog) -> None:
    counts = backlog.counts()

    report = backlog.run(dry_run=True)

    assert (len(report.linked), len(report.created), len(report.left_alone)) == (1, 1, 1)
    assert report.lines()[0].endswith("(dry run: nothing was kept)")
    assert backlog.counts() == counts
    assert backlog.titles() == {"DB failover": "OPEN"}
    # And the real run after it still finds everything to do.
    assert (len(backlog.run().linked), backlog.counts()[0]) == (1, 2)


def test_backfill_command_prints_its_report(backlog: Backlog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENT_HUB_DATABASE_URL", backlog.database_url)
    monkeypatch.setenv("INCIDENT_HUB_LOG_JSON", "false")
    get_settings.cache_clear()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(
            cli, ["backfill", "--connector", "pagerduty", "--since", SINCE.strftime("%Y-%m-%d"), "--dry-run"]
        )
    finally:
        get_settings.cache_clear()
        root.handlers[:] = handlers  # the command set up logging to its own stderr
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    assert "examined 3: linked 1, created 1, updated 0, already in step 0, left alone 1" in result.output
    assert f"linked     {backlog.pd.refs()[0]} -> incident {backlog.known}" in result.output
    assert backlog.titles() == {"DB failover": "OPEN"}
