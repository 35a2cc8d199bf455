"""The sync road end to end with a third-party connector found by entry point: a change made on either
side reaches the other once, never echoes, and bad webhooks are refused and recorded."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.commands import IncidentDraft
from incident_hub.connectors.base import ConnectorConfig, available_kinds
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.serving import ServerThread
from incident_hub.signing import sign_sha256
from tests.conftest import key_for, test_settings
from tests.support import wait_until

EXAMPLE = Path(__file__).parent / "example_connector"
sys.path.insert(0, str(EXAMPLE))
importlib.invalidate_caches()

from tickets_app import TicketService, tickets_app  # noqa: E402


class World:
    def __init__(self, hub: Hub, api: httpx.Client, service: TicketService, hub_url: str) -> None:
        self.hub, self.api, self.service, self.hub_url = hub, api, service, hub_url

    def incidents(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/incidents").json()["items"]
        return items

    def settle(self) -> None:
        """Wait until the inbox and outbox are drained."""

        def drained() -> bool:
            pending = self.api.get("/api/v1/deliveries", params={"state": "pending"}).json()
            with self.hub.db.read() as session:
                from incident_hub.store.tables import InboxRow

                inbox = session.query(InboxRow).filter(InboxRow.state == "pending").count()
            return not pending and inbox == 0

        wait_until(drained)
        time.sleep(0.2)
        wait_until(drained)


@pytest.fixture
def world(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    service = TicketService()
    monkeypatch.setenv("TICKETS_TOKEN", "token-1")
    monkeypatch.setenv("TICKETS_WEBHOOK_SECRET", service.secret)
    settings = test_settings(
        database_url,
        tmp_path,
        inbox_poll_seconds=0.05,
        connector_failure_threshold=3,
        connector_cool_down_seconds=600,
    )
    app = create_app(settings)
    hub: Hub = app.state.hub
    with ServerThread(tickets_app(service)) as vendor, ServerThread(app) as server:
        service.hub_url = f"{server.url}/webhooks/tickets"
        with httpx.Client(base_url=server.url, headers=key_for(hub, Scope.ADMIN), timeout=10) as api:
            created = api.put(
                "/api/v1/connectors/tickets",
                json={
                    "id": "tickets",
                    "kind": "tickets",
                    "base_url": vendor.url,
                    "credentials": {"env": "TICKETS_TOKEN"},
                    "webhook_secret": {"env": "TICKETS_WEBHOOK_SECRET"},
                    "options": {"account": service.bot},
                },
            )
            assert created.status_code == 200, created.text
            yield World(hub, api, service, server.url)


def test_third_party_connector_is_found_through_its_entry_point() -> None:
    assert available_kinds()["tickets"].__module__ == "hub_example_connector"


def test_ticket_opened_by_a_person_creates_one_incident_and_nothing_goes_back(world: World) -> None:
    ticket = world.service.open("alice", subject="Checkout slow", level=2, body="p99 at 4s")
    incident = wait_until(lambda: world.incidents())[0]
    world.settle()
    assert incident["title"] == "Checkout slow"
    assert incident["severity"] == "SEV2_HIGH"
    assert incident["source"] == "tickets"
    full = world.api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert [(r["connector_id"], r["external_id"]) for r in full["external_refs"]] == [
        ("tickets", str(ticket["id"]))
    ]
    assert world.service.writes == []
    assert len(world.incidents()) == 1


def test_hub_incident_makes_one_ticket_and_its_echo_is_dropped(world: World) -> None:
    created = world.api.post("/api/v1/incidents", json={"title": "DB failover", "severity": "SEV1_CRITICAL"})
    incident = created.json()
    wait_until(lambda: world.service.tickets)
    world.settle()
    assert len(world.service.tickets) == 1
    ticket = next(iter(world.service.tickets.values()))
    assert (ticket["subject"], ticket["level"], ticket["state"], ticket["hub_id"]) == (
        "DB failover",
        1,
        "new",
        incident["id"],
    )
    assert [w[0] for w in world.service.writes] == ["POST"]
    # The ticket service's webhook about our own create did not make a second incident.
    assert len(world.incidents()) == 1
    after = world.api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert after["version"] == incident["version"]


def test_status_changes_travel_both_ways_once(world: World) -> None:
    incident = world.api.post(
        "/api/v1/incidents", json={"title": "Cache misses", "severity": "SEV3_MEDIUM"}
    ).json()
    wait_until(lambda: world.service.tickets)
    world.settle()
    world.api.put(
        f"/api/v1/incidents/{incident['id']}/status", json={"status": "INVESTIGATING"}
    ).raise_for_status()
    world.settle()
    ticket_id = next(iter(world.service.tickets))
    assert world.service.tickets[ticket_id]["state"] == "working"
    assert [w[:2] for w in world.service.writes] == [("POST", "/tickets"), ("PATCH", f"/tickets/{ticket_id}")]
    # A further canonical move that writes the same vendor value sends nothing (no noisy updates).
    world.api.put(
        f"/api/v1/incidents/{incident['id']}/status", json={"status": "IDENTIFIED"}
    ).raise_for_status()
    world.settle()
    assert len(world.service.writes) == 2

    world.service.act(ticket_id, "alice", state="done")
    wait_until(lambda: world.api.get(f"/api/v1/incidents/{incident['id']}").json()["status"] == "RESOLVED")
    world.settle()
    assert len(world.service.writes) == 2, "the resolution must not be pushed back to where it came from"


def test_notes_travel_both_ways_without_coming_back(world: World) -> None:
    incident = world.api.post("/api/v1/incidents", json={"title": "Queue stuck"}).json()
    wait_until(lambda: world.service.tickets)
    world.settle()
    ticket_id = next(iter(world.service.tickets))
    world.api.post(
        f"/api/v1/incidents/{incident['id']}/timeline",
        json={"message": "Restarting consumers", "author": "bob"},
    ).raise_for_status()
    world.settle()
    comments = world.service.tickets[ticket_id]["comments"]
    assert [c["body"] for c in comments] == ["[incident-hub] bob: Restarting consumers"]

    world.service.comment(ticket_id, "alice", "Consumers back, lag falling")
    world.settle()
    notes = [
        e
        for e in world.api.get(f"/api/v1/incidents/{incident['id']}/timeline").json()
        if e["type"] == "NOTE" and not e["message"].startswith("Updated")
    ]
    assert [(n["message"], n["origin_connector"]) for n in notes] == [
        ("Restarting consumers", None),
        ("Consumers back, lag falling", "tickets"),
    ]
    assert len(world.service.tickets[ticket_id]["comments"]) == 2


def _signed(world: World, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "X-Tickets-Signature": f"sha256={sign_sha256(world.service.secret, body)}",
        "Content-Type": "application/json",
    }


def test_bad_webhooks_are_refused_recorded_and_not_applied(world: World) -> None:
    now = datetime.now(UTC)
    ticket = {"id": 99, "state": "new", "level": 1, "subject": "Forged", "updated_at": now.isoformat()}
    good, headers = _signed(world, {"event_id": "e-1", "kind": "created", "ticket": ticket, "actor": "eve"})
    post = world.api.post
    assert post("/webhooks/tickets", content=good).status_code == 401
    assert (
        post(
            "/webhooks/tickets", content=good, headers={"X-Tickets-Signature": "sha256=" + "0" * 64}
        ).status_code
        == 401
    )
    malformed, malformed_headers = (
        b"{not json",
        {"X-Tickets-Signature": f"sha256={sign_sha256(world.service.secret, b'{not json')}"},
    )
    assert post("/webhooks/tickets", content=malformed, headers=malformed_headers).status_code == 400
    assert post("/webhooks/nobody", content=good, headers=headers).status_code == 404
    old = {**ticket, "updated_at": (now - timedelta(days=5)).isoformat()}
    stale, stale_headers = _signed(
        world, {"event_id": "e-0", "kind": "created", "ticket": old, "actor": "eve"}
    )
    assert post("/webhooks/tickets", content=stale, headers=stale_headers).status_code == 400
    rejections = world.api.get("/api/v1/webhook-rejections").json()
    assert [r["status"] for r in rejections] == [400, 404, 400, 401, 401]
    assert "stale" in rejections[0]["reason"] and "signature" in rejections[3]["reason"]
    world.settle()
    assert world.incidents() == []

    # The genuine one, delivered twice (vendor retry): applied once.
    assert post("/webhooks/tickets", content=good, headers=headers).json()["status"] == "accepted"
    assert post("/webhooks/tickets", content=good, headers=headers).json()["status"] == "duplicate"
    world.settle()
    assert len(world.incidents()) == 1


def test_refused_push_is_dead_and_replays_once(world: World) -> None:
    world.service.fail_next = [400]
    world.api.post("/api/v1/incidents", json={"title": "Refused at first"}).raise_for_status()
    dead = wait_until(
        lambda: world.api.get(
            "/api/v1/deliveries", params={"state": "dead", "target_kind": "connector"}
        ).json()
    )
    assert dead[0]["last_status_code"] == 400
    assert world.service.tickets == {}
    world.api.post(f"/api/v1/deliveries/{dead[0]['id']}/replay").raise_for_status()
    wait_until(lambda: world.service.tickets)
    world.settle()
    assert len(world.service.tickets) == 1
    assert [w[0] for w in world.service.writes] == ["POST"]


def test_failing_connector_is_paused_and_resumes_in_order(world: World) -> None:
    world.service.fail_next = [503] * 20
    incident = world.api.post("/api/v1/incidents", json={"title": "Vendor down"}).json()
    state = wait_until(
        lambda: (s := world.api.get("/api/v1/connectors/tickets").json())["paused_until"] and s
    )
    assert "failures in a row" in state["pause_reason"]
    world.api.put(
        f"/api/v1/incidents/{incident['id']}/status", json={"status": "ACKNOWLEDGED"}
    ).raise_for_status()
    time.sleep(0.3)
    assert world.service.tickets == {}
    world.service.fail_next = []
    world.api.post("/api/v1/connectors/tickets/resume").raise_for_status()
    wait_until(lambda: world.service.tickets)
    world.settle()
    ticket = next(iter(world.service.tickets.values()))
    # Held deliveries went out in order; the first push already carried the latest state, so the
    # second had nothing left to write.
    assert ticket["state"] == "working"
    assert [w[0] for w in world.service.writes] == ["POST"]
    assert world.api.get("/api/v1/deliveries", params={"state": "dead"}).json() == []


def test_rate_limit_spaces_out_pushes(world: World) -> None:
    config = world.api.get("/api/v1/connectors/tickets").json()["config"]
    world.api.put(
        "/api/v1/connectors/tickets", json={**config, "rate_limit_per_second": 2}
    ).raise_for_status()
    started = time.monotonic()
    for n in range(6):
        world.api.post("/api/v1/incidents", json={"title": f"Burst {n}"}).raise_for_status()
    wait_until(lambda: len(world.service.tickets) == 6, timeout=15)
    # Two at once (one second's burst), then one every half second.
    assert time.monotonic() - started >= 1.5
    assert [w[0] for w in world.service.writes] == ["POST"] * 6


def test_field_owned_by_another_system_is_not_changed_from_this_one(world: World) -> None:
    owner = TicketService()
    with ServerThread(tickets_app(owner)) as owner_vendor:
        world.api.put(
            "/api/v1/connectors/owner",
            json={
                "id": "owner",
                "kind": "tickets",
                "base_url": owner_vendor.url,
                "owns": ["status"],
                "credentials": {"env": "TICKETS_TOKEN"},
                "options": {"account": owner.bot},
            },
        ).raise_for_status()
        ticket = world.service.open("alice", subject="Owned status", level=3)
        incident = wait_until(world.incidents)[0]
        world.settle()
        world.service.act(ticket["id"], "alice", state="done", level=1)
        wait_until(
            lambda: world.api.get(f"/api/v1/incidents/{incident['id']}").json()["severity"] == "SEV1_CRITICAL"
        )
        world.settle()
        after = world.api.get(f"/api/v1/incidents/{incident['id']}").json()
        # Severity is nobody's: it changed. Status belongs to the other system: it did not.
        assert after["status"] == "OPEN"


def test_a_webhook_that_keeps_failing_is_listed_and_replayed_once_fixed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    applier = world.hub.inbox.applier
    working = applier.apply

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("mapping service unavailable")

    monkeypatch.setattr(world.hub.inbox, "max_attempts", 2)
    monkeypatch.setattr(applier, "apply", broken)
    world.service.open("alice", subject="Queue stuck", level=3, body="consumer lag 2h")
    (failed,) = wait_until(lambda: world.api.get("/api/v1/inbox", params={"state": "failed"}).json())
    assert failed["attempts"] == 2 and "mapping service unavailable" in failed["error"]
    assert world.incidents() == []

    monkeypatch.setattr(applier, "apply", working)
    replayed = world.api.post(f"/api/v1/inbox/{failed['id']}/replay")
    assert replayed.status_code == 200 and replayed.json()["state"] == "pending"
    wait_until(world.incidents)
    world.settle()
    assert [i["title"] for i in world.incidents()] == ["Queue stuck"]
    assert world.api.get("/api/v1/inbox", params={"state": "failed"}).json() == []
    assert world.api.post(f"/api/v1/inbox/{failed['id']}/replay").status_code == 409


def test_a_connector_another_replica_just_added_gets_its_first_push(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that read the stored connectors before another replica added one does not call the new
    connector's deliveries undeliverable: it reads the connectors afresh once."""
    service = TicketService()
    monkeypatch.setenv("TICKETS_TOKEN", "token-1")
    monkeypatch.setenv("TICKETS_WEBHOOK_SECRET", service.secret)
    settings = test_settings(database_url, tmp_path, inbox_poll_seconds=0.05)
    pushing_app = create_app(settings)
    pushing: Hub = pushing_app.state.hub
    pushing.connectors.cache_seconds = 3600  # the race made certain: this replica never re-reads by itself
    with ServerThread(tickets_app(service)) as vendor, ServerThread(pushing_app) as server:
        service.hub_url = f"{server.url}/webhooks/tickets"
        assert pushing.connectors.states() == []  # read and kept: no connector yet
        adding = Hub(settings)  # another replica on the same database
        try:
            adding.connectors.upsert(
                ConnectorConfig.model_validate(
                    {
                        "id": "tickets",
                        "kind": "tickets",
                        "base_url": vendor.url,
                        "credentials": {"env": "TICKETS_TOKEN"},
                        "webhook_secret": {"env": "TICKETS_WEBHOOK_SECRET"},
                        "options": {"account": service.bot},
                    }
                )
            )
            adding.incidents.create(IncidentDraft(title="Added elsewhere", severity=Severity.SEV2_HIGH))
        finally:
            adding.db.dispose()
        wait_until(lambda: service.tickets, timeout=10)
        with httpx.Client(base_url=server.url, headers=key_for(pushing, Scope.ADMIN)) as api:
            dead = api.get("/api/v1/deliveries", params={"state": "dead"}).json()
        assert dead == []
        assert [t["subject"] for t in service.tickets.values()] == ["Added elsewhere"]
