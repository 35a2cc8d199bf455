"""The inbox: webhooks about one vendor object are applied in arrival order even with several appliers, a
failing webhook undoes and blocks only itself, and our own writes coming back are stored as applied at
receive without touching the incident."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from incident_hub.clock import utcnow
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.model import Status
from incident_hub.signing import sign_sha256
from incident_hub.store.tables import ExternalRefRow, InboxRow, IncidentRow, TimelineRow
from incident_hub.sync.inbox import Received
from tests.conftest import test_settings

SECRET = "pd-webhook-secret"
HUB_USER = "PHUBUSER"
NOTES = 15
PERSON = {"id": "PPERSON", "type": "user_reference", "summary": "Riley Responder"}
_events = itertools.count(1)


@pytest.fixture
def batch() -> int:
    return 10


@pytest.fixture
def hub(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int) -> Iterator[Hub]:
    """A hub whose workers are not started: the test runs the appliers itself."""
    monkeypatch.setenv("PD_TOKEN", "pd-token")
    monkeypatch.setenv("PD_WEBHOOK_SECRET", SECRET)
    hub = Hub(test_settings(database_url, tmp_path, inbox_batch=batch))
    hub.migrate()
    hub.connectors.upsert(
        ConnectorConfig.model_validate(
            {
                "id": "pagerduty",
                "kind": "pagerduty",
                "base_url": "https://127.0.0.1:9",
                "credentials": {"env": "PD_TOKEN"},
                "webhook_secret": {"env": "PD_WEBHOOK_SECRET"},
                "options": {"from_email": "hub@example.com", "service_id": "PSVC", "hub_user_id": HUB_USER},
            }
        )
    )
    yield hub
    hub.db.dispose()


def pd_event(
    event_type: str,
    pd_id: str,
    at: datetime,
    *,
    status: str,
    title: str,
    agent: dict[str, Any] | None = None,
    urgency: str = "high",
    priority: str = "P2",
) -> bytes:
    data = {
        "id": pd_id,
        "type": "incident",
        "number": int(pd_id.removeprefix("PD")),
        "status": status,
        "title": title,
        "urgency": urgency,
        "priority": {"id": f"PRIO{priority}", "type": "priority", "summary": priority},
        "html_url": f"https://example.pagerduty.com/incidents/{pd_id}",
    }
    return _event(event_type, at, data, agent or PERSON)


def note_event(pd_id: str, at: datetime, content: str, agent: dict[str, Any] | None = None) -> bytes:
    data = {
        "id": f"NOTE{next(_events)}",
        "type": "incident_note",
        "content": content,
        "incident": {"id": pd_id, "type": "incident_reference", "html_url": "https://example.pagerduty.com"},
    }
    return _event("incident.annotated", at, data, agent or PERSON)


def _event(event_type: str, at: datetime, data: dict[str, Any], agent: dict[str, Any]) -> bytes:
    event = {
        "id": f"EVT{next(_events)}",
        "event_type": event_type,
        "resource_type": "incident",
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "agent": agent,
        "data": data,
    }
    return json.dumps({"event": event}).encode()


def receive(hub: Hub, body: bytes) -> Received:
    signature = "v1=" + sign_sha256(SECRET, body)
    headers = {"content-type": "application/json", "x-pagerduty-signature": signature}
    received = hub.inbox.receive("pagerduty", headers, body)
    assert received.status == 202, received
    return received


def drain(hub: Hub, appliers: int = 1) -> None:
    """Run `appliers` appliers at once until none finds anything to claim."""
    errors: list[BaseException] = []

    def applier() -> None:
        try:
            idle = 0
            while idle < 3:
                idle = 0 if hub.inbox.process_pending() else idle + 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=applier) for _ in range(appliers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def open_from_pagerduty(hub: Hub, pd_id: str, at: datetime) -> tuple[str, ExternalRefRow]:
    """A PagerDuty incident a person triggered, applied: the hub incident and its link."""
    receive(hub, pd_event("incident.triggered", pd_id, at, status="triggered", title=f"{pd_id} down"))
    drain(hub)
    with hub.db.read() as session:
        ref = session.scalars(select(ExternalRefRow).where(ExternalRefRow.external_id == pd_id)).one()
    return ref.incident_id, ref


def inbox_rows(hub: Hub) -> list[InboxRow]:
    with hub.db.read() as session:
        return list(session.scalars(select(InboxRow).order_by(InboxRow.id)))


def notes(hub: Hub, incident_id: str) -> list[str]:
    with hub.db.read() as session:
        return list(
            session.scalars(
                select(TimelineRow.message)
                .where(TimelineRow.incident_id == incident_id, TimelineRow.external_comment_id.is_not(None))
                .order_by(TimelineRow.id)
            )
        )


def status_of(hub: Hub, incident_id: str) -> Status:
    with hub.db.read() as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        return Status(row.status)


@pytest.mark.parametrize("batch", [1, 3])
def test_several_appliers_keep_each_incidents_webhooks_in_order(hub: Hub, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several appliers run on PostgreSQL; SQLite has one")
    start = utcnow() - timedelta(minutes=5)
    pd_ids = [f"PD{n}" for n in range(1, 4)]
    incidents = {pd_id: open_from_pagerduty(hub, pd_id, start)[0] for pd_id in pd_ids}
    # Interleaved: every incident's notes, round by round, then each is acknowledged and resolved.
    for n in range(NOTES):
        for pd_id in pd_ids:
            receive(hub, note_event(pd_id, start + timedelta(seconds=n + 1), f"{pd_id} note {n}"))
    for n, (event_type, status) in enumerate(
        [("incident.acknowledged", "acknowledged"), ("incident.resolved", "resolved")]
    ):
        for pd_id in pd_ids:
            at = start + timedelta(seconds=20 + n)
            receive(hub, pd_event(event_type, pd_id, at, status=status, title=f"{pd_id} down"))

    drain(hub, appliers=3)

    assert {r.state for r in inbox_rows(hub)} == {"applied"}
    for pd_id, incident_id in incidents.items():
        assert notes(hub, incident_id) == [f"{pd_id} note {n}" for n in range(NOTES)]
        assert status_of(hub, incident_id) is Status.RESOLVED


def test_failing_webhook_in_a_batch_neither_blocks_nor_undoes_the_others(hub: Hub) -> None:
    start = utcnow() - timedelta(minutes=5)
    first, _ = open_from_pagerduty(hub, "PD1", start)
    broken, link = open_from_pagerduty(hub, "PD2", start)
    third, _ = open_from_pagerduty(hub, "PD3", start)
    later = start + timedelta(seconds=30)
    receive(hub, pd_event("incident.acknowledged", "PD1", later, status="acknowledged", title="PD1"))
    # A title longer than the hub takes: applying it fails after it changed the link.
    receive(hub, pd_event("incident.acknowledged", "PD2", later, status="acknowledged", title="x" * 600))
    receive(hub, pd_event("incident.acknowledged", "PD3", later, status="acknowledged", title="PD3"))
    receive(hub, note_event("PD2", later, "after the broken one"))

    drain(hub)

    assert status_of(hub, first) is Status.ACKNOWLEDGED
    assert status_of(hub, third) is Status.ACKNOWLEDGED
    assert status_of(hub, broken) is Status.OPEN
    rows = {r.id: r for r in inbox_rows(hub)}
    failed = [r for r in rows.values() if r.state == "pending" and r.attempts]
    assert len(failed) == 1 and "title" in (failed[0].error or ""), failed
    # What the failed row did to the link was undone with it.
    with hub.db.read() as session:
        now_link = session.get(ExternalRefRow, link.id)
        assert now_link is not None
        assert now_link.last_vendor_timestamp == link.last_vendor_timestamp
        assert now_link.written == link.written
    # The note about the same object waits behind it (order), and was not applied.
    assert notes(hub, broken) == []
    waiting = [r for r in rows.values() if r.state == "pending" and not r.attempts]
    assert len(waiting) == 1 and waiting[0].subject == "pagerduty:PD2"


def test_own_write_coming_back_is_stored_as_applied_at_receive(hub: Hub) -> None:
    start = utcnow() - timedelta(minutes=5)
    incident_id, link = open_from_pagerduty(hub, "PD7", start)
    echoed = start + timedelta(seconds=10)
    hub_user = {"id": HUB_USER, "type": "user_reference", "summary": "Incident Hub"}

    received = receive(
        hub,
        pd_event("incident.acknowledged", "PD7", echoed, status="acknowledged", title="x", agent=hub_user),
    )

    assert received.echo
    row = inbox_rows(hub)[-1]
    assert (row.state, row.error) == ("applied", "echo: made by the connector's own account")
    assert status_of(hub, incident_id) is Status.OPEN
    with hub.db.read() as session:
        now_link = session.get(ExternalRefRow, link.id)
        assert now_link is not None
        # As applying it would have: a change older than our write is stale now.
        assert now_link.last_vendor_timestamp == echoed
        assert now_link.written == link.written
    assert hub.inbox.process_pending() == 0


def test_webhook_equal_to_what_the_hub_last_wrote_is_stored_as_applied(hub: Hub) -> None:
    start = utcnow() - timedelta(minutes=5)
    incident_id, link = open_from_pagerduty(hub, "PD8", start)
    written = link.written
    same = pd_event(
        "incident.priority_updated",
        "PD8",
        start + timedelta(seconds=5),
        status=written["status"],
        title=written["title"],
        urgency=written["urgency"],
        priority=written["priority"],
    )

    received = receive(hub, same)

    assert received.echo
    assert inbox_rows(hub)[-1].error == "echo: what the hub last wrote"
    with hub.db.read() as session:
        versions = session.scalar(select(func.max(IncidentRow.version)).where(IncidentRow.id == incident_id))
    changed = pd_event(
        "incident.priority_updated",
        "PD8",
        start + timedelta(seconds=6),
        status=written["status"],
        title=written["title"],
        urgency="high",
        priority="P1",
    )
    assert not receive(hub, changed).echo
    drain(hub)
    with hub.db.read() as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None and row.severity == "SEV1_CRITICAL" and row.version > (versions or 0)


def test_echo_is_not_taken_at_receive_while_an_earlier_webhook_about_the_object_waits(hub: Hub) -> None:
    start = utcnow() - timedelta(minutes=5)
    incident_id, _ = open_from_pagerduty(hub, "PD9", start)
    hub_user = {"id": HUB_USER, "type": "user_reference", "summary": "Incident Hub"}
    person_at, echo_at = start + timedelta(seconds=5), start + timedelta(seconds=9)
    receive(hub, pd_event("incident.acknowledged", "PD9", person_at, status="acknowledged", title="PD9"))

    echo = receive(
        hub, pd_event("incident.resolved", "PD9", echo_at, status="resolved", title="PD9", agent=hub_user)
    )
    drain(hub)

    # Had the echo advanced the link first, the person's earlier acknowledgement would read as stale.
    assert not echo.echo
    assert status_of(hub, incident_id) is Status.ACKNOWLEDGED
    assert [r.state for r in inbox_rows(hub)][-2:] == ["applied", "applied"]
