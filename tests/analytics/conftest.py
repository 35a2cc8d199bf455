"""A week of incidents built through the API on a fake clock, with every expected figure worked out by
hand in the tests that read it.

All times UTC. The report window is 2026-10-20 00:00 to NOW (2026-10-26 12:00), 9360 minutes; in
Europe/Berlin the clocks go back on Sunday 2026-10-25 at 01:00 UTC, so that local day lasts 25 hours.

    H  SEV3 checkout total_outage   det 10-19 12:00  ack 12:30  res 10-20 01:00  "Disk full" (before window)
    A  SEV1 checkout total_outage   det 10-21 10:00  ack 10:04  res 11:00        first signal 09:58:30
    B  SEV2 checkout partial_outage det 10-21 10:30  ack 10:50  res 12:30
    G  SEV1 signal cam-1/dev0/capture stopped 10-22 08:00 (seen 07:59), active 08:30
    F  SEV4 search degraded         det 10-24 22:30  ack 22:35  open               "disk full"
    C  SEV3 search degraded         det 10-25 00:30  ack 00:40  res 02:30          "Disk full"
    D  SEV4 search partial_outage   det 10-25 22:30  ack 23:30  res 10-26 00:30    " disk FULL "
    E  SEV1 signal cam-1/dev0/capture stopped 10-25 23:30 (seen 23:29:30), open
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incident_hub import clock

NOW = datetime(2026, 10, 26, 12, 0, tzinfo=UTC)
WINDOW = {"from": "2026-10-20T00:00:00Z", "to": "2026-10-26T12:00:00Z"}
WINDOW_MINUTES = 6.5 * 24 * 60


def at(month_day: str, hh_mm: str, second: int = 0) -> datetime:
    month, day = (int(part) for part in month_day.split("-"))
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime

    def read(self) -> datetime:
        return self.now


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock(at("10-19", "00:00"))
    clock.use_clock(fake.read)
    yield fake
    clock.use_clock(None)


class Week:
    """Drives the API at given instants of the fake clock."""

    def __init__(self, api: Any, fake: FakeClock) -> None:
        self.api = api
        self.fake = fake
        self.ids: dict[str, str] = {}

    def create(self, name: str, when: datetime, **draft: Any) -> None:
        self.fake.now = when
        answer = self.api.post("/api/v1/incidents", json={"title": f"incident {name}", **draft})
        assert answer.status_code == 201, answer.text
        self.ids[name] = answer.json()["id"]

    def move(self, name: str, status: str, when: datetime) -> None:
        self.fake.now = when
        answer = self.api.put(f"/api/v1/incidents/{self.ids[name]}/status", json={"status": status})
        assert answer.status_code == 200, answer.text

    def signal(self, name: str, status: str, when: datetime, observed: datetime | None = None) -> None:
        self.fake.now = when
        body: dict[str, Any] = {"host": "cam-1", "device": "dev0", "component": "capture", "status": status}
        if observed is not None:
            body["observed_at"] = observed.isoformat()
        answer = self.api.post("/api/v1/signals", json=body)
        assert answer.status_code in (200, 201), answer.text
        if status != "active":
            self.ids[name] = answer.json()["id"]


def service(name: str, impact: str) -> dict[str, Any]:
    return {"affected_services": [{"name": name, "impact": impact}]}


@pytest.fixture
def week(api: TestClient, fake_clock: FakeClock) -> Week:
    return build_week(api, fake_clock)


def build_week(api: Any, fake_clock: FakeClock) -> Week:
    """The week above, made through `api` (a TestClient, or an httpx client of a real server)."""
    w = Week(api, fake_clock)
    w.create("H", at("10-19", "12:00"), severity="SEV3_MEDIUM", **service("checkout", "total_outage"))
    w.api.patch(f"/api/v1/incidents/{w.ids['H']}", json={"root_cause": "Disk full"})
    w.move("H", "ACKNOWLEDGED", at("10-19", "12:30"))
    w.move("H", "RESOLVED", at("10-20", "01:00"))
    w.create(
        "A",
        at("10-21", "10:00"),
        severity="SEV1_CRITICAL",
        assigned_team="payments",
        source="prometheus",
        first_signal_at="2026-10-21T09:58:30Z",
        **service("checkout", "total_outage"),
    )
    w.move("A", "ACKNOWLEDGED", at("10-21", "10:04"))
    w.create(
        "B",
        at("10-21", "10:30"),
        severity="SEV2_HIGH",
        assigned_team="payments",
        source="prometheus",
        **service("checkout", "partial_outage"),
    )
    w.move("B", "ACKNOWLEDGED", at("10-21", "10:50"))
    w.move("A", "RESOLVED", at("10-21", "11:00"))
    w.move("B", "RESOLVED", at("10-21", "12:30"))
    w.signal("G", "stopped", at("10-22", "08:00"), observed=at("10-22", "07:59"))
    w.signal("G", "active", at("10-22", "08:30"))
    search = {"assigned_team": "discovery"}
    w.create("F", at("10-24", "22:30"), severity="SEV4_LOW", **search, **service("search", "degraded"))
    w.api.patch(f"/api/v1/incidents/{w.ids['F']}", json={"root_cause": "disk full"})
    w.move("F", "ACKNOWLEDGED", at("10-24", "22:35"))
    w.create("C", at("10-25", "00:30"), severity="SEV3_MEDIUM", **search, **service("search", "degraded"))
    w.api.patch(f"/api/v1/incidents/{w.ids['C']}", json={"root_cause": "Disk full"})
    w.move("C", "ACKNOWLEDGED", at("10-25", "00:40"))
    w.move("C", "RESOLVED", at("10-25", "02:30"))
    w.create("D", at("10-25", "22:30"), severity="SEV4_LOW", **search, **service("search", "partial_outage"))
    w.api.patch(f"/api/v1/incidents/{w.ids['D']}", json={"root_cause": " disk FULL "})
    w.signal("E", "stopped", at("10-25", "23:30"), observed=at("10-25", "23:29", 30))
    w.move("D", "ACKNOWLEDGED", at("10-25", "23:30"))
    w.move("D", "RESOLVED", at("10-26", "00:30"))
    fake_clock.now = NOW
    return w
