"""A push the vendor applied but whose answer the hub never saw repeats nothing when it is sent again.

The sandbox applies a write and answers 504 in its place (`answers_lost_next`): for the hub that is the
same as being killed between the vendor call and recording it, or finding its database unwritable then.
A note sent again looks at the vendor's notes first; an Opsgenie alert created and closed by one push is
found by the retry although its alias no longer names an open alert.
"""

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
from incident_hub.sandbox.world import VENDORS, OpsgenieSide, Side, connect
from incident_hub.serving import ServerThread
from tests.conftest import key_for, test_settings
from tests.support import settle, wait_until

# Each vendor's note call: what the lost answer is made to hit.
NOTE_CALLS = {
    "pagerduty": r"/incidents/[^/]+/notes$",
    "jira": r"/issue/[^/]+/comment$",
    "servicenow": r"/table/incident/[^/]+$",
    "opsgenie": r"/alerts/[^/]+/notes$",
}


@contextmanager
def running(database_url: str, tmp_path: Path, vendor: str) -> Iterator[tuple[Hub, httpx.Client, Side]]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub: Hub = app.state.hub
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        api = stack.enter_context(
            httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10)
        )
        world = connect(stack, hub, server.url, tmp_path / "sandboxes", (vendor,), {})
        yield hub, api, world[vendor]


def links(api: httpx.Client, incident_id: str, vendor: str) -> list[dict[str, Any]]:
    incident = api.get(f"/api/v1/incidents/{incident_id}").json()
    return [r for r in incident["external_refs"] if r["connector_id"] == vendor]


def deliveries(api: httpx.Client, incident_id: str, vendor: str) -> list[dict[str, Any]]:
    listed = api.get("/api/v1/deliveries", params={"target_kind": "connector"}).json()
    return [d for d in listed if d["incident_id"] == incident_id and d["target_id"] == vendor]


def lost_answers(side: Side) -> int:
    return sum(1 for e in side.ledger.entries(direction="in") if e.note == "answer lost")


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_note_whose_answer_was_lost_is_at_the_vendor_once(
    vendor: str, database_url: str, tmp_path: Path
) -> None:
    with running(database_url, tmp_path, vendor) as (hub, api, side):
        incident = api.post("/api/v1/incidents", json={"title": f"Note to {vendor}"}).json()
        (link,) = wait_until(lambda: links(api, incident["id"], vendor), timeout=20)
        settle(hub, [side.ledger])
        knobs = side.sandbox.state.knobs
        knobs.answers_lost_path, knobs.answers_lost_next = NOTE_CALLS[vendor], 1

        path = f"/api/v1/incidents/{incident['id']}/timeline"
        api.post(path, json={"message": "Rolled back the canary", "author": "alice"}).raise_for_status()
        wait_until(lambda: all(d["state"] == "delivered" for d in deliveries(api, incident["id"], vendor)))
        settle(hub, [side.ledger])

        assert lost_answers(side) == 1  # the vendor added the note; the hub never heard
        said = [n for n in side.notes(link["external_id"]) if n.endswith("Rolled back the canary")]
        assert len(said) == 1, side.notes(link["external_id"])
        note_delivery = deliveries(api, incident["id"], vendor)[-1]
        assert note_delivery["attempts"] >= 1  # it was sent again, and looked first

        # The same words once more are a new note, and are added.
        api.post(path, json={"message": "Rolled back the canary", "author": "alice"}).raise_for_status()
        wait_until(lambda: all(d["state"] == "delivered" for d in deliveries(api, incident["id"], vendor)))
        settle(hub, [side.ledger])
        said = [n for n in side.notes(link["external_id"]) if n.endswith("Rolled back the canary")]
        assert len(said) == 2, side.notes(link["external_id"])


@pytest.mark.parametrize("vendor", ["pagerduty", "opsgenie"])
def test_a_repeated_note_whose_answer_was_lost_is_added_once_more_not_twice(
    vendor: str, database_url: str, tmp_path: Path
) -> None:
    with running(database_url, tmp_path, vendor) as (hub, api, side):
        incident = api.post("/api/v1/incidents", json={"title": f"Same words at {vendor}"}).json()
        (link,) = wait_until(lambda: links(api, incident["id"], vendor), timeout=20)
        path = f"/api/v1/incidents/{incident['id']}/timeline"
        api.post(path, json={"message": "Still looking", "author": "bob"}).raise_for_status()
        wait_until(lambda: all(d["state"] == "delivered" for d in deliveries(api, incident["id"], vendor)))
        settle(hub, [side.ledger])
        knobs = side.sandbox.state.knobs
        knobs.answers_lost_path, knobs.answers_lost_next = NOTE_CALLS[vendor], 1

        api.post(path, json={"message": "Still looking", "author": "bob"}).raise_for_status()
        wait_until(lambda: all(d["state"] == "delivered" for d in deliveries(api, incident["id"], vendor)))
        settle(hub, [side.ledger])

        assert lost_answers(side) == 1
        said = [n for n in side.notes(link["external_id"]) if n.endswith("Still looking")]
        assert len(said) == 2, side.notes(link["external_id"])


def test_an_opsgenie_alert_created_and_closed_by_a_push_whose_answer_was_lost_is_not_made_again(
    database_url: str, tmp_path: Path
) -> None:
    with running(database_url, tmp_path, "opsgenie") as (hub, api, side):
        assert isinstance(side, OpsgenieSide)
        knobs = side.sandbox.state.knobs
        # Webhooks off: only the push's own look can find the alert. The first call waits out a 429, so
        # the incident is resolved by the time the push goes: it creates the alert and closes it.
        knobs.webhooks_enabled, knobs.retry_after_seconds, knobs.rate_limit_next = False, 2, 1
        knobs.answers_lost_path, knobs.answers_lost_next = r"/close$", 1
        incident = api.post("/api/v1/incidents", json={"title": "Over before it was pushed"}).json()
        status = f"/api/v1/incidents/{incident['id']}/status"
        api.put(status, json={"status": "RESOLVED", "author": "alice"}).raise_for_status()
        (link,) = wait_until(lambda: links(api, incident["id"], "opsgenie"), timeout=30)
        wait_until(
            lambda: all(d["state"] == "delivered" for d in deliveries(api, incident["id"], "opsgenie"))
        )
        settle(hub, [side.ledger])

        assert lost_answers(side) == 1  # the close was applied; the hub never heard
        assert side.refs() == [link["external_id"]], side.refs()  # one alert, the one linked
        assert side.status(link["external_id"]) == "resolved"
        creates = [e for e in side.ledger.writes() if e.method == "POST" and e.path == "/v2/alerts"]
        assert len(creates) == 1, creates
