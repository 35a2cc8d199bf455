"""Human incident numbers and what a create stores, on SQLite and on PostgreSQL (through the `api` fixture):
numbers taken by concurrent creates are unique and consecutive, and the stored event carries the number."""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incident_hub.commands import IncidentDraft
from incident_hub.hub import Hub
from incident_hub.store.tables import DeliveryRow, EventRow, IncidentCounterRow, IncidentRow, TimelineRow
from tests.support import Receiver

INCIDENTS = "/api/v1/incidents"
NUMBER = re.compile(r"^INC-(\d{8})-(\d{3,})$")


def _create(hub: Hub, title: str, **fields: Any) -> str:
    return hub.incidents.create(IncidentDraft(title=title, **fields)).incident.number


def test_concurrent_creates_take_unique_consecutive_numbers(api: TestClient, hub: Hub) -> None:
    titles = [f"disk full on db-{i}" for i in range(120)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        numbers = list(pool.map(lambda title: _create(hub, title), titles))

    assert len(set(numbers)) == len(numbers), "two incidents share a number"
    by_day: dict[str, list[int]] = defaultdict(list)
    for number in numbers:
        match = NUMBER.match(number)
        assert match, number
        by_day[match.group(1)].append(int(match.group(2)))
    # Consecutive from 1 on each UTC day (a run that crosses midnight starts the new day at 1).
    for sequence in by_day.values():
        assert sorted(sequence) == list(range(1, len(sequence) + 1))
    with hub.db.read() as session:
        rows = session.execute(select(IncidentRow.title, IncidentRow.number))
        stored = {title: number for title, number in rows}
        assert stored == dict(zip(titles, numbers, strict=True))
        opened = set(session.scalars(select(TimelineRow.message).where(TimelineRow.type == "DETECTED")))
        assert opened == {f"Incident {n} opened: {t}" for t, n in zip(titles, numbers, strict=True)}


def test_a_deduplicated_report_takes_no_number(api: TestClient, hub: Hub) -> None:
    first = _create(hub, "checkout 5xx", dedup_key="checkout/5xx")
    again = _create(hub, "checkout 5xx again", dedup_key="checkout/5xx")
    other = _create(hub, "search slow", dedup_key="search/latency")

    assert again == first
    day, last = first.rsplit("-", 1)
    assert other == f"{day}-{int(last) + 1:03d}"


def test_numbers_past_999_keep_every_digit(api: TestClient, hub: Hub) -> None:
    day = datetime.now(UTC).strftime("%Y%m%d")
    with hub.db.write() as session:
        session.add(IncidentCounterRow(day=day, last=998))

    numbers = [_create(hub, f"incident {i}") for i in range(3)]

    if all(number.startswith(f"INC-{day}-") for number in numbers):  # not across midnight
        assert numbers == [f"INC-{day}-999", f"INC-{day}-1000", f"INC-{day}-1001"]


def test_created_event_carries_the_incident_as_the_api_answered_it(
    api: TestClient, hub: Hub, receiver: Receiver
) -> None:
    subscription = api.post(
        "/api/v1/subscriptions",
        json={"url": receiver.url, "event_types": ["incident_created"], "secret": "s" * 32},
    )
    assert subscription.status_code == 201, subscription.text
    answer = api.post(
        INCIDENTS,
        json={
            "title": "Checkout API returning 502s",
            "severity": "SEV2_HIGH",
            "affected_services": ["checkout-api", {"name": "payments-db", "impact": "total_outage"}],
            "assigned_team": "payments",
            "dedup_key": "checkout-api/5xx",
            "tags": ["customer-facing"],
        },
    )
    assert answer.status_code == 201, answer.text
    incident = answer.json()

    with hub.db.read() as session:
        event = session.scalars(select(EventRow).where(EventRow.incident_id == incident["id"])).one()
        queued = session.scalar(
            select(func.count()).select_from(DeliveryRow).where(DeliveryRow.event_id == event.id)
        )
    assert event.type == "incident_created"
    assert event.payload["event_id"] == event.id
    assert event.payload["incident_created"] == incident
    assert incident["incident_id"] == incident["number"]
    assert queued == 1
    assert api.get(f"{INCIDENTS}/{incident['incident_id']}").json() == incident
    [delivered] = receiver.wait_for(1)
    assert delivered.json()["incident_created"] == incident
