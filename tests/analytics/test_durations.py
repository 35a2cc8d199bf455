"""Incidents keep their lifecycle durations, set by the transitions and backfilled by migration 0010."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import JSON, column, select, table

from incident_hub.hub import Hub
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow
from tests.analytics.conftest import FakeClock, at

DURATIONS = (
    "time_to_detect_seconds",
    "time_to_acknowledge_seconds",
    "acknowledge_to_resolve_seconds",
    "time_to_resolve_seconds",
)


def _stored(hub: Hub, incident_id: str) -> tuple[float | None, ...]:
    with hub.db.read() as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        return tuple(getattr(row, name) for name in DURATIONS)


def test_transitions_keep_the_durations_and_a_reopen_clears_the_resolution_ones(
    api: TestClient, hub: Hub, fake_clock: FakeClock
) -> None:
    fake_clock.now = at("11-02", "09:00")
    incident = api.post(
        "/api/v1/incidents", json={"title": "queue stuck", "first_signal_at": "2026-11-02T08:58:00Z"}
    ).json()
    status = f"/api/v1/incidents/{incident['id']}/status"
    assert _stored(hub, incident["id"]) == (120.0, None, None, None)

    fake_clock.now = at("11-02", "09:07", 30)
    api.put(status, json={"status": "INVESTIGATING"})
    assert _stored(hub, incident["id"]) == (120.0, 450.0, None, None)

    fake_clock.now = at("11-02", "10:00")
    api.put(status, json={"status": "RESOLVED"})
    assert _stored(hub, incident["id"]) == (120.0, 450.0, 3150.0, 3600.0)

    fake_clock.now = at("11-02", "10:30")
    assert api.put(status, json={"status": "INVESTIGATING"}).status_code == 200
    assert _stored(hub, incident["id"]) == (120.0, 450.0, None, None)

    fake_clock.now = at("11-02", "11:00")
    assert api.put(status, json={"status": "RESOLVED"}).status_code == 200
    assert _stored(hub, incident["id"]) == (120.0, 450.0, 6750.0, 7200.0)


def test_a_signal_starts_the_time_to_detect_at_the_monitors_sighting(
    api: TestClient, hub: Hub, fake_clock: FakeClock
) -> None:
    fake_clock.now = at("11-02", "09:00")
    signal = {"host": "h", "device": "d", "component": "c", "status": "stuck"}
    late = api.post("/api/v1/signals", json={**signal, "observed_at": "2026-11-02T08:57:00Z"}).json()
    # A monitor whose clock runs ahead of the hub's does not make a negative time.
    ahead = api.post(
        "/api/v1/signals", json={**signal, "component": "e", "observed_at": "2026-11-02T09:01:00Z"}
    ).json()
    unstated = api.post("/api/v1/signals", json={**signal, "component": "f"}).json()

    assert _stored(hub, late["id"])[0] == 180.0
    assert _stored(hub, ahead["id"])[0] == 0.0
    assert _stored(hub, unstated["id"])[0] == 0.0


def test_migration_backfills_the_durations_of_existing_incidents(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db, "0009")
        incidents = table(
            "incidents",
            *(column(c) for c in ("id", "number", "title", "severity", "status", "sla_breached", "version")),
            *(
                column(c)
                for c in ("detected_at", "acknowledged_at", "resolved_at", "created_at", "updated_at")
            ),
            column("affected_services", JSON),
            column("tags", JSON),
        )
        detected = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
        stamps = {
            "resolved": (detected + timedelta(minutes=4, seconds=30), detected + timedelta(hours=2)),
            "acknowledged": (detected + timedelta(seconds=90), None),
            "open": (None, None),
        }
        ids = {}
        with db.engine.begin() as connection:
            for number, (name, (acknowledged, resolved)) in enumerate(stamps.items(), start=1):
                ids[name] = str(uuid.uuid4())
                connection.execute(
                    incidents.insert().values(
                        id=ids[name],
                        number=f"INC-20260601-00{number}",
                        title=name,
                        severity="SEV2_HIGH",
                        status="OPEN",
                        sla_breached=False,
                        version=1,
                        # Stored as the ORM stores them (UTC; SQLite keeps naive text).
                        detected_at=_plain(detected, db),
                        acknowledged_at=_plain(acknowledged, db),
                        resolved_at=_plain(resolved, db),
                        created_at=_plain(detected, db),
                        updated_at=_plain(detected, db),
                        affected_services=[],
                        tags=[],
                    )
                )
        migrate.upgrade(db)
        with db.read() as session:
            stored = {
                row.title: tuple(getattr(row, name) for name in DURATIONS)
                for row in session.scalars(select(IncidentRow))
            }
        assert stored["resolved"] == pytest.approx((None, 270.0, 6930.0, 7200.0))
        assert stored["acknowledged"] == pytest.approx((None, 90.0, None, None))
        assert stored["open"] == (None, None, None, None)
        command.downgrade(migrate.alembic_config(db), "0009")
        with db.engine.connect() as connection:
            assert connection.execute(select(incidents.c.title).order_by("number")).scalars().all() == [
                "resolved",
                "acknowledged",
                "open",
            ]
    finally:
        db.dispose()


def _plain(value: datetime | None, db: Database) -> datetime | None:
    if value is None or not db.is_sqlite:
        return value
    return value.replace(tzinfo=None)
