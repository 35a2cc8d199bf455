"""Many incidents, quickly: bulk Core inserts with the spread a hub that has run for a while holds (the
newest fifty still open, the rest resolved or closed; four teams; the severities evenly, so that every
filter of the list fills a page of twenty already at a thousand incidents).

The table grows back in time: incident `n` is created `n` minutes before `NEWEST_CREATED`, so the newest
thousand are the same at every size and growth only adds history beneath them.

Used by the list-plan test and by `bench/growth.py`."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from incident_hub.model import Severity, Status
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow

TEAMS = [f"team-{n:02d}" for n in range(4)]
NEWEST_CREATED = datetime(2026, 11, 1, tzinfo=UTC)
SPACING = timedelta(minutes=1)
STILL_OPEN = 50
_SEVERITIES = list(Severity)
_OPEN = [s for s in Status if s.is_open]


def fill_incidents(db: Database, count: int, *, start: int = 0, seed: int = 12, batch: int = 5000) -> None:
    """Add incidents `start` … `start + count - 1` (numbered `BULK-n`), each `SPACING` older than the one
    before; the newest `STILL_OPEN` are open."""
    spread = random.Random(seed + start)
    rows: list[dict[str, Any]] = []
    with db.engine.begin() as connection:
        for n in range(start, start + count):
            rows.append(_incident(n, spread))
            if len(rows) == batch:
                connection.execute(insert(IncidentRow), rows)
                rows = []
        if rows:
            connection.execute(insert(IncidentRow), rows)


def _incident(n: int, spread: random.Random) -> dict[str, Any]:
    created = NEWEST_CREATED - n * SPACING
    is_open = n < STILL_OPEN
    closed = Status.RESOLVED if spread.random() < 0.3 else Status.CLOSED
    status = spread.choice(_OPEN) if is_open else closed
    return {
        "id": str(uuid.UUID(int=spread.getrandbits(128), version=4)),
        "number": f"BULK-{n:08d}",
        "title": f"Bulk incident {n}",
        "severity": spread.choice(_SEVERITIES).value,
        "status": status.value,
        "affected_services": [],
        "assigned_team": spread.choice(TEAMS),
        "detected_at": created,
        "resolved_at": None if is_open else created + timedelta(minutes=45),
        "sla_breached": False,
        "source": "bulk",
        "tags": [],
        "version": 1,
        "created_at": created,
        "updated_at": created,
    }


def every_filter() -> Iterator[dict[str, Any]]:
    """Each combination of the list's filters, with one value and with several."""
    team = TEAMS[3]
    yield {}
    yield {"status": [Status.OPEN]}
    yield {"status": [Status.RESOLVED, Status.CLOSED]}
    yield {"severity": [Severity.SEV1_CRITICAL]}
    yield {"severity": [Severity.SEV1_CRITICAL, Severity.SEV2_HIGH]}
    yield {"assigned_team": team}
    yield {"status": [Status.OPEN], "severity": [Severity.SEV1_CRITICAL]}
    yield {"status": [Status.RESOLVED, Status.CLOSED], "severity": [Severity.SEV2_HIGH]}
    yield {"status": [Status.OPEN], "assigned_team": team}
    yield {"severity": [Severity.SEV1_CRITICAL], "assigned_team": team}
    yield {"status": [Status.OPEN], "severity": [Severity.SEV1_CRITICAL], "assigned_team": team}
    yield {
        "status": [Status.RESOLVED, Status.CLOSED],
        "severity": [Severity.SEV1_CRITICAL, Severity.SEV2_HIGH],
        "assigned_team": team,
    }


def filter_name(filters: dict[str, Any]) -> str:
    """`status=OPEN+severity=SEV1_CRITICAL+assigned_team=team-03`, or `none`."""
    parts = []
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        parts.append(f"{name}={','.join(str(v) for v in values)}")
    return "+".join(parts) or "none"
