"""Paging through the incident list with every filter returns each matching incident once, newest first,
ties in creation time broken by id, on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from incident_hub.incident_pages import IncidentFilters
from incident_hub.incidents import IncidentService
from incident_hub.model import Severity, Status
from incident_hub.settings import Settings
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow
from tests.incident_fill import NEWEST_CREATED, TEAMS, every_filter, filter_name

FILTERS = list(every_filter())


@pytest.fixture
def stored(database_url: str) -> Iterator[tuple[IncidentService, list[dict[str, Any]]]]:
    """Every status, severity and team mixed, two incidents created at each instant."""
    db = Database(database_url)
    migrate.upgrade(db)
    combinations = itertools.cycle(itertools.product(Status, Severity, [TEAMS[2], TEAMS[3]]))
    rows = []
    for n in range(140):
        status, severity, team = next(combinations)
        created = NEWEST_CREATED - timedelta(minutes=n // 2)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "number": f"PAGE-{n:03d}",
                "title": f"Page incident {n}",
                "severity": severity.value,
                "status": status.value,
                "affected_services": [],
                "assigned_team": team,
                "detected_at": created,
                "sla_breached": False,
                "tags": [],
                "version": 1,
                "created_at": created,
                "updated_at": created,
            }
        )
    with db.engine.begin() as connection:
        connection.execute(insert(IncidentRow), rows)
    yield IncidentService(db, Settings(database_url=database_url).sla_policy()), rows
    db.dispose()


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    return (
        row["status"] in filters.get("status", [row["status"]])
        and row["severity"] in filters.get("severity", [row["severity"]])
        and row["assigned_team"] == filters.get("assigned_team", row["assigned_team"])
    )


@pytest.mark.parametrize("filters", FILTERS, ids=[filter_name(f) for f in FILTERS])
def test_paging_with_a_filter_returns_every_match_once_newest_first(
    stored: tuple[IncidentService, list[dict[str, Any]]], filters: dict[str, Any]
) -> None:
    service, rows = stored
    expected = [
        r["id"]
        for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
        if _matches(r, filters)
    ]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(rows)):
        page = service.search(IncidentFilters(**filters), cursor=cursor, limit=3)
        assert len(page.incidents) <= 3
        seen += [str(incident.id) for incident in page.incidents]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert expected
    assert seen == expected
