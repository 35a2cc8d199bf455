"""Every vendor's failure modes through the hub, and one vendor down while the other three stay in step.

Each vendor sandbox answers 5xx, 429 with Retry-After and hung calls on demand; the hub retries them, turns
a permanent refusal into a dead delivery that an admin replays once, refuses unsigned and forged webhooks
(recorded, nothing applied), and holds a failing vendor's backlog in order until it is back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.world import VENDORS, World, connect
from incident_hub.serving import ServerThread
from tests.conftest import key_for, test_settings
from tests.support import settle, wait_until

pytestmark = pytest.mark.slow

FORGED = {
    "pagerduty": {"X-PagerDuty-Signature": "v1=" + "0" * 64},
    "jira": {"X-Hub-Signature": "sha256=" + "0" * 64},
    "servicenow": {"X-Incident-Hub-Secret": "not-the-secret"},
    "opsgenie": {"X-Incident-Hub-Secret": "not-the-secret"},
}


@contextmanager
def running(
    database_url: str, tmp_path: Path, vendors: tuple[str, ...], **overrides: Any
) -> Iterator[tuple[Hub, httpx.Client, World]]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05, **overrides))
    hub: Hub = app.state.hub
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        api = stack.enter_context(
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10)
        )
        # A 500 on a create leaves its outcome unknown: a short in-doubt window keeps these tests quick.
        quick = {"in_doubt_schedule_seconds": [0.3, 0.3]}
        yield hub, api, connect(stack, hub, server.url, tmp_path / "sandboxes", vendors, quick)


def _settle(hub: Hub, world: World) -> None:
    settle(hub, [side.ledger for side in world.sides.values()])


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_failures_are_retried_and_a_refusal_replays_once(
    vendor: str, database_url: str, tmp_path: Path
) -> None:
    with running(database_url, tmp_path, (vendor,)) as (hub, api, world):
        side = world[vendor]
        knobs = side.sandbox.state.knobs
        knobs.fail_next, knobs.retry_after_seconds = [500, 429], 1
        knobs.timeout_next, knobs.timeout_seconds = 1, 1.0
        incident = api.post("/api/v1/incidents", json={"title": f"Flaky {vendor}"}).json()
        wait_until(side.refs, timeout=20)
        _settle(hub, world)
        (ref,) = side.refs()
        injected = sorted(e.status or 0 for e in side.ledger.entries() if e.note == "injected")
        assert injected == [429, 500, 504]
        created = [e for e in side.ledger.writes() if e.method == "POST"]
        assert len(created) == 1, [e.path for e in created]

        # A permanent refusal: dead at once, nothing changed; replayed after the fix, delivered once.
        knobs.fail_next = [400]
        path = f"/api/v1/incidents/{incident['id']}/status"
        api.put(path, json={"status": "ACKNOWLEDGED", "author": "alice"}).raise_for_status()
        (dead,) = wait_until(lambda: api.get("/api/v1/deliveries", params={"state": "dead"}).json())
        assert "400" in dead["last_error"]
        assert side.status(ref) == "open"
        writes = len(side.ledger.writes())
        api.post(f"/api/v1/deliveries/{dead['id']}/replay").raise_for_status()
        wait_until(lambda: side.status(ref) == "working")
        _settle(hub, world)
        assert len(side.ledger.writes()) == writes + 1
        assert api.get("/api/v1/deliveries", params={"state": "dead"}).json() == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_unsigned_and_forged_webhooks_are_refused_recorded_and_not_applied(
    vendor: str, database_url: str, tmp_path: Path
) -> None:
    with running(database_url, tmp_path, (vendor,)) as (hub, api, _):
        body = b'{"event": "made up"}'
        unsigned = api.post(f"/webhooks/{vendor}", content=body, headers={"Content-Type": "application/json"})
        forged = api.post(f"/webhooks/{vendor}", content=body, headers=FORGED[vendor])
        assert (unsigned.status_code, forged.status_code) == (401, 401), (unsigned.text, forged.text)
        recorded = [r for r in api.get("/api/v1/webhook-rejections").json() if r["connector_id"] == vendor]
        assert [r["status"] for r in recorded] == [401, 401]
        assert all(r["reason"] for r in recorded)
        assert hub.incidents.search().incidents == []


@pytest.mark.parametrize("down", ["servicenow", "opsgenie"])
def test_a_vendor_down_throughout_holds_its_backlog_while_the_others_stay_in_step(
    down: str, database_url: str, tmp_path: Path
) -> None:
    settings = {"connector_failure_threshold": 3, "connector_cool_down_seconds": 600}
    with running(database_url, tmp_path, VENDORS, **settings) as (hub, api, world):
        world[down].sandbox.state.knobs.error_rate = 1.0
        origin = world["pagerduty"]
        up = [world[name] for name in VENDORS if name not in (down, "pagerduty")]
        ref = origin.open("Card payments failing", Severity.SEV2_HIGH)
        refs = {side.name: wait_until(lambda side=side: next(iter(side.refs()), None), 20) for side in up}
        origin.acknowledge(ref)
        origin.add_note(ref, "Failing over to the second acquirer")
        origin.resolve(ref)
        wait_until(lambda: all(side.status(refs[side.name]) == "resolved" for side in up), 20)
        wait_until(lambda: all(side.notes(refs[side.name]) for side in up), 20)
        # The down vendor's connector is paused, its deliveries held (pending, in order), none dead.
        paused = wait_until(lambda: api.get(f"/api/v1/connectors/{down}").json()["paused_until"], 20)
        assert paused
        assert api.get("/api/v1/deliveries", params={"state": "dead"}).json() == []
        assert world[down].refs() == []

        # Back: an admin resumes it; the backlog drains in order into one object in its final state.
        world[down].sandbox.state.knobs.error_rate = 0.0
        api.post(f"/api/v1/connectors/{down}/resume").raise_for_status()
        held = wait_until(lambda: next(iter(world[down].refs()), None), 20)
        wait_until(lambda: world[down].status(held) == "resolved" and world[down].notes(held), 20)
        _settle(hub, world)
        assert len(world[down].refs()) == 1
        (note,) = world[down].notes(held)
        assert note.endswith("Failing over to the second acquirer")
        assert world.writes()["pagerduty"] == 0
        writes = [e.method for e in world[down].ledger.writes()]
        assert writes[0] == "POST", writes  # the create came first, the rest after it
