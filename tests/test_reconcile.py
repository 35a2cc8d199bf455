"""The reconciler: what webhooks missed reaches the hub through the apply path, once, and never echoes."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import func, select

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.common import LedgerEntry, Sandbox
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, SERVICE_ID, pagerduty_sandbox
from incident_hub.sandbox.world import VENDORS, Side, World, connect
from incident_hub.serving import ServerThread
from incident_hub.settings import Settings
from incident_hub.store.tables import ReconciliationRunRow
from tests.conftest import _postgres_schema, key_for, test_settings
from tests.support import settle, wait_until


class Hubside:
    """A running hub with its vendors' sandboxes (`world`), and an admin API client."""

    def __init__(self, hub: Hub, api: httpx.Client, world: World) -> None:
        self.hub, self.api, self.world = hub, api, world

    def settle(self) -> None:
        settle(self.hub, [side.ledger for side in self.world.sides.values()])

    def drop_webhooks(self) -> None:
        for side in self.world.sides.values():
            side.sandbox.state.knobs.webhooks_enabled = False

    def clear_ledgers(self) -> None:
        for side in self.world.sides.values():
            side.ledger.clear()

    def reconcile(self, connector_id: str, kind: str = "incremental") -> dict[str, Any]:
        response = self.api.post("/api/v1/reconciliations", json={"connector_id": connector_id, "kind": kind})
        assert response.status_code == 201, response.text
        run: dict[str, Any] = response.json()
        return run

    def incident(self, incident_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get(f"/api/v1/incidents/{incident_id}").json()
        return found

    def incidents(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/incidents").json()["items"]
        return items

    def ref(self, incident_id: str, connector_id: str) -> dict[str, Any]:
        refs = self.incident(incident_id)["external_refs"]
        return next(r for r in refs if r["connector_id"] == connector_id)

    def create_pushed_incident(self, title: str, severity: str = "SEV3_MEDIUM") -> dict[str, Any]:
        """A hub incident, pushed to every vendor, with every echo applied."""
        incident: dict[str, Any] = self.api.post(
            "/api/v1/incidents", json={"title": title, "severity": severity}
        ).json()
        wait_until(lambda: len(self.incident(incident["id"])["external_refs"]) == len(self.world.sides))
        self.settle()
        return incident

    def writes_about(self, connector_id: str, incident_id: str) -> list[LedgerEntry]:
        """Writes the vendor received that name its object of this incident (by id, key or hub id)."""
        ref = self.ref(incident_id, connector_id)
        names = [n for n in (ref["external_id"], ref["external_key"], incident_id) if n]

        def named(entry: LedgerEntry) -> set[str]:
            query = [v for values in parse_qs(entry.query).values() for v in values]
            return {*entry.path.split("/"), *query}

        return [e for e in self.world[connector_id].ledger.writes() if named(e) & set(names)]


def start(
    stack: ExitStack,
    settings: Settings,
    workdir: Path,
    vendors: tuple[str, ...] = VENDORS,
    vendor_stack: ExitStack | None = None,
) -> Hubside:
    """A hub served until `stack` closes, with sandboxes until `vendor_stack` (default `stack`) closes."""
    app = create_app(settings)
    hub: Hub = app.state.hub
    server = stack.enter_context(ServerThread(app))
    world = connect(vendor_stack or stack, hub, server.url, workdir / "sandboxes", vendors)
    api = stack.enter_context(
        httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=30)
    )
    return Hubside(hub, api, world)


def quiet_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    """Passes run only when a test asks for them."""
    values: dict[str, object] = {"inbox_poll_seconds": 0.05, "reconcile_enabled": False, **overrides}
    return test_settings(database_url, tmp_path, **values)


@pytest.fixture
def two(database_url: str, tmp_path: Path) -> Iterator[Hubside]:
    """PagerDuty and Jira."""
    with ExitStack() as stack:
        yield start(stack, quiet_settings(database_url, tmp_path), tmp_path, ("pagerduty", "jira"))


@pytest.fixture
def four(database_url: str, tmp_path: Path) -> Iterator[Hubside]:
    with ExitStack() as stack:
        yield start(stack, quiet_settings(database_url, tmp_path), tmp_path)


WORKING = ("ACKNOWLEDGED", "INVESTIGATING", "IDENTIFIED", "MONITORING")


@pytest.mark.slow
def test_changes_whose_webhooks_were_lost_are_applied_by_one_incremental_pass(four: Hubside) -> None:
    hub = four
    changed = {name: hub.create_pushed_incident(f"Checkout 5xx, changed in {name}") for name in VENDORS}
    hub.drop_webhooks()
    hub.clear_ledgers()
    for name, incident in changed.items():
        side, ref = hub.world[name], hub.ref(incident["id"], name)["external_id"]
        side.acknowledge(ref)
        side.set_severity(ref, Severity.SEV1_CRITICAL)
    for name, side in hub.world.sides.items():
        assert [e.note for e in side.ledger.entries(direction="out")] == ["dropped"] * len(
            side.ledger.entries(direction="out")
        )
        assert hub.incident(changed[name]["id"])["status"] == "OPEN", "the webhooks must really be lost"

    runs = {name: hub.reconcile(name) for name in VENDORS}

    assert {n: (r["state"], r["drift_found"], r["drift_repaired"]) for n, r in runs.items()} == {
        n: ("ok", 1, 1) for n in VENDORS
    }
    assert all(r["examined"] >= len(VENDORS) for r in runs.values())
    hub.settle()
    for name, incident in changed.items():
        found = hub.incident(incident["id"])
        assert (found["title"], found["status"] in WORKING, found["severity"]) == (
            incident["title"],
            True,
            "SEV1_CRITICAL",
        ), name
        for side in hub.world.sides.values():
            ref = hub.ref(incident["id"], side.name)["external_id"]
            assert (side.title(ref), side.status(ref), side.severity(ref)) == (
                incident["title"],
                "working",
                Severity.SEV1_CRITICAL,
            ), (name, side.name)
        assert hub.writes_about(name, incident["id"]) == [], f"{name}'s change was written back to {name}"
        assert all(hub.writes_about(other, incident["id"]) for other in VENDORS if other != name)

    # Unchanged objects apply as nothing: a second pass repairs nothing and writes nowhere.
    writes = hub.world.writes()
    again = {name: hub.reconcile(name) for name in VENDORS}
    hub.settle()
    assert {n: (r["state"], r["drift_found"], r["drift_repaired"]) for n, r in again.items()} == {
        n: ("ok", 0, 0) for n in VENDORS
    }
    assert hub.world.writes() == writes
    assert len(hub.incidents()) == len(VENDORS)


def test_pagerduty_and_jira_changes_whose_webhooks_were_lost_are_applied_by_one_pass(two: Hubside) -> None:
    hub = two
    acked = hub.create_pushed_incident("Checkout 5xx")
    renamed = hub.create_pushed_incident("Search slow")
    hub.drop_webhooks()
    hub.clear_ledgers()
    pd_ref = hub.ref(acked["id"], "pagerduty")["external_id"]
    jira_ref = hub.ref(renamed["id"], "jira")["external_id"]
    hub.world["pagerduty"].acknowledge(pd_ref)
    hub.world["pagerduty"].set_severity(pd_ref, Severity.SEV1_CRITICAL)
    hub.world["jira"].set_severity(jira_ref, Severity.SEV2_HIGH)
    hub.world["jira"].resolve(jira_ref)

    assert [hub.reconcile(name)["drift_repaired"] for name in ("pagerduty", "jira")] == [1, 1]

    hub.settle()
    assert (hub.incident(acked["id"])["status"], hub.incident(acked["id"])["severity"]) == (
        "ACKNOWLEDGED",
        "SEV1_CRITICAL",
    )
    assert (hub.incident(renamed["id"])["status"], hub.incident(renamed["id"])["severity"]) == (
        "RESOLVED",
        "SEV2_HIGH",
    )
    jira_acked = hub.ref(acked["id"], "jira")["external_id"]
    pd_renamed = hub.ref(renamed["id"], "pagerduty")["external_id"]
    assert (hub.world["jira"].status(jira_acked), hub.world["jira"].severity(jira_acked)) == (
        "working",
        Severity.SEV1_CRITICAL,
    )
    assert (hub.world["pagerduty"].status(pd_renamed), hub.world["pagerduty"].severity(pd_renamed)) == (
        "resolved",
        Severity.SEV2_HIGH,
    )
    assert hub.writes_about("pagerduty", acked["id"]) == []
    assert hub.writes_about("jira", renamed["id"]) == []
    assert [hub.reconcile(name)["drift_repaired"] for name in ("pagerduty", "jira")] == [0, 0]


def test_a_jira_snapshot_read_before_our_push_landed_is_not_written_back_to_pagerduty(
    database_url: str, tmp_path: Path
) -> None:
    # A budget of 0.2 Jira calls/s: the pass reads its page, then waits ~5 s for a token before applying
    # it, as a pass on a busy machine applies a page long after reading it.
    settings = quiet_settings(database_url, tmp_path, reconcile_rate_fraction=0.02)
    with ExitStack() as stack:
        hub = start(stack, settings, tmp_path, ("pagerduty", "jira"))
        incident = hub.create_pushed_incident("Checkout 5xx")
        pagerduty, jira = hub.world["pagerduty"], hub.world["jira"]
        # The echo of our push comes late (a busy webhook sender): nothing tells the hub Jira's new time.
        jira.sandbox.state.knobs.webhooks_enabled = False
        hub.clear_ledgers()

        def searched() -> list[LedgerEntry]:
            return [e for e in jira.ledger.entries(direction="in") if "/search" in e.path]

        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(hub.reconcile, "jira")
            wait_until(searched)
            pagerduty.acknowledge(hub.ref(incident["id"], "pagerduty")["external_id"])
            wait_until(lambda: jira.status(hub.ref(incident["id"], "jira")["external_id"]) == "working")
            hub.settle()
            run = running.result(timeout=60)
        hub.settle()

        moved = [e for e in jira.ledger.writes() if e.path.endswith("/transitions")]
        assert moved and searched()[0].seq < moved[0].seq, "the pass must read before our push lands"
        assert moved[0].at < datetime.fromisoformat(run["ended_at"]), "...and apply after it"
        assert hub.incident(incident["id"])["status"] == "ACKNOWLEDGED"
        assert [e for e in pagerduty.ledger.entries(direction="in") if e.method != "GET"] == []
        assert run["drift_repaired"] == 0


def test_objects_opened_while_webhooks_were_lost_become_incidents_once(two: Hubside) -> None:
    hub = two
    hub.drop_webhooks()
    opened = {
        name: hub.world[name].open(f"Opened in {name}", Severity.SEV2_HIGH) for name in ("pagerduty", "jira")
    }

    assert [hub.reconcile(name)["drift_repaired"] for name in ("pagerduty", "jira")] == [1, 1]
    hub.settle()

    by_title = {i["title"]: i for i in hub.incidents()}
    assert {t: (i["severity"], i["source"]) for t, i in by_title.items()} == {
        "Opened in pagerduty": ("SEV2_HIGH", "pagerduty"),
        "Opened in jira": ("SEV2_HIGH", "jira"),
    }
    # Each reached the other vendor once; neither was written back where it was opened.
    assert hub.world.writes() == {"pagerduty": 1, "jira": 1}
    for name, ref in opened.items():
        assert hub.ref(by_title[f"Opened in {name}"]["id"], name)["external_id"] == ref
        assert hub.writes_about(name, by_title[f"Opened in {name}"]["id"]) == []
    assert [hub.reconcile(name)["drift_repaired"] for name in ("pagerduty", "jira")] == [0, 0]
    assert len(hub.incidents()) == 2


def test_full_sweep_repairs_a_jira_status_changed_with_its_webhook_dropped(two: Hubside) -> None:
    hub = two
    incident = hub.create_pushed_incident("Payments queue backing up")
    jira = hub.world["jira"]
    jira.sandbox.state.knobs.drop_webhook_rate = 1.0
    hub.clear_ledgers()
    jira.acknowledge(hub.ref(incident["id"], "jira")["external_id"])
    wait_until(lambda: [e.note for e in jira.ledger.entries(direction="out")] == ["dropped"])
    time.sleep(0.2)
    assert hub.incident(incident["id"])["status"] == "OPEN"

    run = hub.reconcile("jira", "full")

    assert (run["kind"], run["state"], run["examined"], run["drift_found"], run["drift_repaired"]) == (
        "full",
        "ok",
        1,
        1,
        1,
    )
    assert hub.incident(incident["id"])["status"] == "ACKNOWLEDGED"
    hub.settle()
    assert hub.world["pagerduty"].status(hub.ref(incident["id"], "pagerduty")["external_id"]) == "working"
    assert jira.ledger.writes() == [], "the repair must not be written back to Jira"
    assert hub.reconcile("jira", "full")["drift_repaired"] == 0


def test_a_closed_incident_is_not_swept(two: Hubside) -> None:
    hub = two
    incident = hub.create_pushed_incident("Old outage")
    for status in ("RESOLVED", "CLOSED"):
        hub.api.put(f"/api/v1/incidents/{incident['id']}/status", json={"status": status}).raise_for_status()
    hub.settle()
    hub.clear_ledgers()
    run = hub.reconcile("jira", "full")
    assert (run["state"], run["examined"]) == ("ok", 0)
    assert hub.world["jira"].ledger.entries(direction="in") == []


def test_changes_made_while_the_hub_was_stopped_are_picked_up_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    settings = quiet_settings(database_url, tmp_path)
    with ExitStack() as vendors_stack:
        with ExitStack() as first_stack:
            first = start(first_stack, settings, tmp_path, ("pagerduty", "jira"), vendors_stack)
            incident = first.create_pushed_incident("Cache evictions")
            assert [first.reconcile(name)["state"] for name in ("pagerduty", "jira")] == ["ok", "ok"]
            jira_ref = first.ref(incident["id"], "jira")["external_id"]
        # The first hub is down: the sandboxes' webhooks reach nobody.
        world = first.world
        world["jira"].resolve(jira_ref)
        world["pagerduty"].open("Cron missed", Severity.SEV4_LOW)

        app = create_app(settings)
        hub: Hub = app.state.hub
        with (
            ServerThread(app) as server,
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=30) as api,
        ):
            second = Hubside(hub, api, world)
            assert second.reconcile("jira")["drift_repaired"] == 1
            assert second.reconcile("pagerduty")["drift_repaired"] == 1
            assert second.incident(incident["id"])["status"] == "RESOLVED"
            assert sorted((i["title"], i["severity"]) for i in second.incidents()) == [
                ("Cache evictions", "SEV3_MEDIUM"),
                ("Cron missed", "SEV4_LOW"),
            ]
            second.settle()
            assert (
                world["pagerduty"].status(second.ref(incident["id"], "pagerduty")["external_id"])
                == "resolved"
            )
            asyncio.run(hub.connectors.close())


# ---- full sweep by pages ----------------------------------------------------------------------------


def vendor_reads(side: Side) -> list[str]:
    """The API reads a vendor received (its sandbox's control calls left out), as `GET /path`."""
    writes = side.ledger.writes()
    return [
        f"{e.method} {e.path}"
        for e in side.ledger.entries(direction="in")
        if not e.path.startswith("/_sandbox") and e not in writes
    ]


def test_full_sweep_lists_open_objects_by_pages_and_fetches_only_those_the_vendor_ended(
    two: Hubside,
) -> None:
    hub = two
    jira_config = hub.hub.connectors.state("jira").config
    page = 2
    hub.hub.connectors.upsert(
        jira_config.model_copy(update={"options": {**jira_config.options, "page_size": page}})
    )
    incidents = [hub.create_pushed_incident(f"Sweep {n}") for n in range(6)]
    ended_in_hub = incidents[5]
    hub.api.put(
        f"/api/v1/incidents/{ended_in_hub['id']}/status", json={"status": "RESOLVED"}
    ).raise_for_status()
    hub.settle()
    hub.drop_webhooks()
    jira, pd = hub.world["jira"], hub.world["pagerduty"]
    jira.acknowledge(hub.ref(incidents[0]["id"], "jira")["external_id"])
    jira.resolve(hub.ref(incidents[1]["id"], "jira")["external_id"])
    pd.acknowledge(hub.ref(incidents[2]["id"], "pagerduty")["external_id"])
    pd.resolve(hub.ref(incidents[3]["id"], "pagerduty")["external_id"])
    hub.clear_ledgers()

    swept_jira = hub.reconcile("jira", "full")

    # Four open issues in two pages of 2; the issue resolved in Jira is read alone; the one resolved in
    # the hub is left out (ended on both sides). jira-python reads the field list once per client.
    read_alone = hub.ref(incidents[1]["id"], "jira")["external_id"]
    assert sorted(r for r in vendor_reads(jira) if r != "GET /rest/api/3/field") == sorted(
        ["GET /rest/api/3/search/jql"] * math.ceil(4 / page) + [f"GET /rest/api/3/issue/{read_alone}"]
    )
    assert [hub.incident(i["id"])["status"] for i in incidents[:2]] == ["ACKNOWLEDGED", "RESOLVED"]
    hub.settle()  # both repairs reach PagerDuty
    hub.clear_ledgers()

    swept_pd = hub.reconcile("pagerduty", "full")

    # Three open incidents in one page of 100; the one resolved in PagerDuty is read alone.
    read_alone = hub.ref(incidents[3]["id"], "pagerduty")["external_id"]
    assert sorted(vendor_reads(pd)) == ["GET /incidents", f"GET /incidents/{read_alone}"]
    assert [hub.incident(i["id"])["status"] for i in incidents[2:5]] == ["ACKNOWLEDGED", "RESOLVED", "OPEN"]
    tallies = [
        (r["state"], r["examined"], r["drift_found"], r["drift_repaired"]) for r in (swept_jira, swept_pd)
    ]
    assert tallies == [("ok", 5, 2, 2), ("ok", 4, 2, 2)]
    hub.settle()
    assert jira.ledger.writes() != [] and pd.ledger.writes() == [], "repairs go to the other vendor only"


def test_full_sweep_repairs_objects_closed_in_each_vendor_without_a_webhook(four: Hubside) -> None:
    hub = four
    closed_in = {name: hub.create_pushed_incident(f"Disk full, closed in {name}") for name in VENDORS}
    hub.drop_webhooks()
    for name, incident in closed_in.items():
        hub.world[name].resolve(hub.ref(incident["id"], name)["external_id"])
    assert {i["status"] for i in hub.incidents()} == {"OPEN"}, "the webhooks must really be lost"

    for swept, name in enumerate(VENDORS):
        run = hub.reconcile(name, "full")
        hub.settle()

        # Incidents repaired by the sweeps before are resolved on every side: neither listed nor read.
        assert (run["state"], run["examined"], run["drift_found"], run["drift_repaired"]) == (
            "ok",
            len(VENDORS) - swept,
            1,
            1,
        ), name
        assert hub.incident(closed_in[name]["id"])["status"] == "RESOLVED", name
        for side in hub.world.sides.values():
            assert side.status(hub.ref(closed_in[name]["id"], side.name)["external_id"]) == "resolved"


# ---- API --------------------------------------------------------------------------------------------


def test_reconciliations_are_listed_newest_first_and_run_now_needs_admin(two: Hubside) -> None:
    hub, api = two.hub, two.api
    first = two.reconcile("jira")
    second = two.reconcile("pagerduty", "full")
    anonymous = httpx.Client(base_url=str(api.base_url), timeout=10)
    reader = httpx.Client(base_url=str(api.base_url), headers=key_for(hub, Scope.READ), timeout=10)
    writer = httpx.Client(base_url=str(api.base_url), headers=key_for(hub, Scope.WRITE), timeout=10)
    order = {"connector_id": "jira", "kind": "incremental"}
    with anonymous, reader, writer:
        assert anonymous.get("/api/v1/reconciliations").status_code == 401
        listed = reader.get("/api/v1/reconciliations")
        assert listed.status_code == 200
        assert [r["id"] for r in listed.json()] == [second["id"], first["id"]]
        only_jira = reader.get("/api/v1/reconciliations", params={"connector_id": "jira"}).json()
        assert [(r["id"], r["connector_id"], r["kind"]) for r in only_jira] == [
            (first["id"], "jira", "incremental")
        ]
        assert reader.get(f"/api/v1/reconciliations/{first['id']}").json() == first
        assert reader.post("/api/v1/reconciliations", json=order).status_code == 403
        assert writer.post("/api/v1/reconciliations", json=order).status_code == 403
    assert api.post("/api/v1/reconciliations", json={"connector_id": "nope"}).status_code == 404
    assert (
        api.post("/api/v1/reconciliations", json={"connector_id": "jira", "kind": "weekly"}).status_code
        == 422
    )
    assert first["trigger"] == "api" and first["ended_at"] is not None and first["errors"] is None
    assert first["window_start"] is not None and second["window_start"] is None


def test_a_failing_vendor_leaves_the_watermark_and_says_why(two: Hubside) -> None:
    assert two.reconcile("jira")["state"] == "ok"
    watermark = two.hub.reconciler.runs.watermark("jira")
    assert watermark is not None
    two.world["jira"].sandbox.state.knobs.fail_next = [500] * 10
    run = two.reconcile("jira")
    assert run["state"] == "failed"
    assert "500" in run["errors"]
    assert two.hub.reconciler.runs.watermark("jira") == watermark
    metrics = two.api.get("/metrics").text
    assert (
        'incident_hub_reconcile_runs_total{connector="jira",kind="incremental",outcome="failed"}' in metrics
    )


# ---- scheduling and the leader lock -----------------------------------------------------------------


def test_the_schedule_runs_incremental_passes_and_a_full_sweep(database_url: str, tmp_path: Path) -> None:
    settings = quiet_settings(
        database_url,
        tmp_path,
        reconcile_enabled=True,
        reconcile_interval_seconds=0.3,
        reconcile_full_minutes=60,
    )
    with ExitStack() as stack:
        hub = start(stack, settings, tmp_path, ("pagerduty", "jira"))

        def scheduled() -> list[tuple[str, str]]:
            runs = hub.api.get("/api/v1/reconciliations", params={"connector_id": "jira"}).json()
            return [(r["kind"], r["state"]) for r in runs if r["trigger"] == "schedule"]

        wait_until(lambda: scheduled().count(("incremental", "ok")) >= 3)
        # The full sweep ran once: the next is an hour after it.
        assert scheduled().count(("full", "ok")) == 1


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema()


def _passes(hub: Hub) -> int:
    with hub.db.read() as session:
        return session.scalar(select(func.count()).select_from(ReconciliationRunRow)) or 0


@pytest.mark.slow
def test_one_replica_reconciles_and_another_takes_over_when_it_stops(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 0.5
    settings = test_settings(postgres_url, tmp_path, reconcile_interval_seconds=interval)
    monkeypatch.setenv("PD_TOKEN", "pd-token")
    pd_app, _ = pagerduty_sandbox("pd-token", None, None)
    replicas = [Hub(settings), Hub(settings)]
    replicas[0].migrate()

    async def scenario(pd: Sandbox) -> None:
        replicas[0].connectors.upsert(
            ConnectorConfig.model_validate(
                {
                    "id": "pagerduty",
                    "kind": "pagerduty",
                    "base_url": pd.url,
                    "ca_bundle": str(pd.ca_bundle),
                    "credentials": {"env": "PD_TOKEN"},
                    "options": {
                        "from_email": HUB_EMAIL,
                        "service_id": SERVICE_ID,
                        "hub_user_id": HUB_USER_ID,
                    },
                }
            )
        )
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(r.schedule.run(s)) for r, s in zip(replicas, stops, strict=True)]
        try:
            await asyncio.sleep(interval * 4.5)
            held = [r.schedule.lock.held for r in replicas]
            assert held.count(True) == 1, held
            leader = held.index(True)
            follower = 1 - leader
            ran = await asyncio.to_thread(_passes, replicas[0])
            # Four ticks of one leader: four incremental passes and the first full sweep (two leaders: ten).
            assert 3 <= ran <= 6, ran

            stops[leader].set()
            await tasks[leader]
            stopped_at = time.monotonic()
            before = await asyncio.to_thread(_passes, replicas[0])
            while await asyncio.to_thread(_passes, replicas[0]) == before:
                assert time.monotonic() - stopped_at < 2 * interval, "no pass within two intervals"
                await asyncio.sleep(0.02)
            assert replicas[follower].schedule.lock.held
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks)
            for replica in replicas:
                await replica.connectors.close()

    try:
        with Sandbox(pd_app, _) as pd:
            asyncio.run(scenario(pd))
    finally:
        for replica in replicas:
            replica.db.dispose()


@pytest.mark.slow
def test_with_30_percent_of_webhooks_dropped_one_pass_makes_all_four_agree(four: Hubside) -> None:
    for side in four.world.sides.values():
        side.sandbox.state.knobs.drop_webhook_rate = 0.3
    # A run of changes made by people in all four vendors: open, acknowledge, raise to SEV2.
    refs: dict[str, tuple[str, str]] = {}
    for name in VENDORS:
        for n in range(3):
            title = f"From {name} {n}"
            refs[title] = (name, four.world[name].open(title, Severity.SEV3_MEDIUM))
    for name, ref in refs.values():
        four.world[name].acknowledge(ref)
        four.world[name].set_severity(ref, Severity.SEV2_HIGH)
    four.settle()
    sent = [e for side in four.world.sides.values() for e in side.ledger.entries(direction="out")]
    assert [e for e in sent if e.note == "dropped"], "the run lost no webhook: nothing to repair"

    for name in VENDORS:
        run = four.reconcile(name)
        assert run["state"] == "ok", run
    four.settle()

    # The hub and all four vendors agree, field by field, on every incident; one object each.
    incidents = {i["title"]: i for i in four.incidents()}
    assert sorted(incidents) == sorted(refs)
    for title, incident in incidents.items():
        agreed = (incident["severity"], incident["status"] in WORKING)
        assert agreed == ("SEV2_HIGH", True), (title, incident, _why(four, incident["id"]))
        for side in four.world.sides.values():
            held = [ref for ref in side.refs() if side.title(ref) == title]
            assert len(held) == 1, (title, side.name, held)
            agreed = (side.status(held[0]), side.severity(held[0]))
            assert agreed == ("working", Severity.SEV2_HIGH), (title, side.name, agreed)


def _why(hubside: Hubside, incident_id: str) -> dict[str, Any]:
    """What the hub knows of an incident's links and what its vendors' inboxes said, for a failure."""
    from incident_hub.store.tables import ExternalRefRow

    with hubside.hub.db.read() as session:
        refs = [
            (r.connector_id, r.external_id, r.written, str(r.last_vendor_timestamp))
            for r in session.scalars(select(ExternalRefRow).where(ExternalRefRow.incident_id == incident_id))
        ]
    inbox = hubside.api.get("/api/v1/inbox", params={"limit": 200}).json()
    return {
        "refs": refs,
        "timeline": [
            e["message"] for e in hubside.api.get(f"/api/v1/incidents/{incident_id}/timeline").json()
        ],
        "inbox": [(e["connector_id"], e["error"]) for e in inbox],
        "runs": hubside.api.get("/api/v1/reconciliations").json(),
    }
