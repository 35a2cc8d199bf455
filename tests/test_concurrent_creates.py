"""Concurrent creates through HTTP against a real hub process: none lost, numbers unique, dedup exact.

Many clients post at once, some with dedup keys shared by many requests. Every create must be answered and
stored; every number is unique; each dedup key ends with exactly one open incident, created once (201) and
handed back to every other request for that key (200, `X-Incident-Hub-Deduplicated: true`).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from incident_hub.model import OPEN_STATUSES
from incident_hub.store.db import Database
from incident_hub.store.tables import EventRow, IncidentRow, TimelineRow
from tests.conftest import _postgres_schema
from tests.test_crash_recovery import HubProcess, admin_key

pytestmark = pytest.mark.slow

NUMBER = re.compile(r"^INC-(\d{8})-(\d{3,})$")
DEDUP_HEADER = "x-incident-hub-deduplicated"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (the `database_url` fixture's PostgreSQL half)."""
    yield from _postgres_schema()


@dataclass(frozen=True)
class CreateRequest:
    index: int
    title: str
    dedup_key: str | None


@dataclass(frozen=True)
class CreateResult:
    request: CreateRequest
    status: int
    deduplicated: str | None
    location: str | None
    body: dict[str, Any]


def plan(total: int, dedup_share: float, keys: int, seed: int) -> list[CreateRequest]:
    """`total` creates, shuffled; a `dedup_share` of them carry one of `keys` dedup keys."""
    rng = random.Random(seed)
    with_key = round(total * dedup_share)
    requests = [CreateRequest(i, f"unique incident {i}", None) for i in range(total - with_key)]
    requests += [
        CreateRequest(total - with_key + i, f"alert {i} for key {i % keys}", f"alert/{i % keys}")
        for i in range(with_key)
    ]
    rng.shuffle(requests)
    return requests


async def fire(url: str, key: str, requests: list[CreateRequest], clients: int) -> list[CreateResult]:
    """Post every request through `clients` separate HTTP clients, all starting together."""
    pending = iter(requests)
    results: list[CreateResult] = []
    go = asyncio.Event()

    async def client_loop() -> None:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60.0
        ) as client:
            await go.wait()
            for request in pending:
                body: dict[str, Any] = {"title": request.title, "severity": "SEV3_MEDIUM"}
                if request.dedup_key is not None:
                    body["dedup_key"] = request.dedup_key
                try:
                    response = await client.post("/api/v1/incidents", json=body)
                except httpx.HTTPError as error:
                    # No answer at all (the connection dropped): recorded as status 0, asserted below.
                    results.append(CreateResult(request, 0, None, None, {"error": repr(error)}))
                    continue
                results.append(
                    CreateResult(
                        request,
                        response.status_code,
                        response.headers.get(DEDUP_HEADER),
                        response.headers.get("location"),
                        _json(response),
                    )
                )

    loops = [asyncio.create_task(client_loop()) for _ in range(clients)]
    await asyncio.sleep(0.1)
    go.set()
    await asyncio.gather(*loops)
    return results


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        return {"text": response.text[:500]}
    return body


def listed_incidents(url: str, key: str) -> list[dict[str, Any]]:
    """Every incident, through the paginated list endpoint."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0) as client:
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/incidents", params=params)
            assert page.status_code == 200, page.text
            found += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found


def check_concurrent_creates(
    database_url: str,
    data_dir: Path,
    *,
    total: int,
    dedup_share: float,
    keys: int,
    clients: int,
    workers: int,
) -> None:
    db = Database(database_url)
    try:
        key = admin_key(db)
        requests = plan(total, dedup_share, keys, seed=total)
        with HubProcess(database_url, data_dir, workers=workers) as hub:
            hub.start(INCIDENT_HUB_LOG_LEVEL="WARNING")
            day_before = datetime.now(UTC).strftime("%Y%m%d")
            results = asyncio.run(fire(hub.url, key, requests, clients))
            day_after = datetime.now(UTC).strftime("%Y%m%d")
            listed = listed_incidents(hub.url, key)

            # Every request was answered, and only with 201 (created) or 200 (deduplicated).
            assert len(results) == total
            statuses = Counter(r.status for r in results)
            failures = [r for r in results if r.status not in (200, 201)]
            assert not failures, f"answers {dict(statuses)}; e.g. {failures[0].status} {failures[0].body}"

            plain = [r for r in results if r.request.dedup_key is None]
            by_key: dict[str, list[CreateResult]] = defaultdict(list)
            for result in results:
                if result.request.dedup_key is not None:
                    by_key[result.request.dedup_key].append(result)
            assert len(by_key) == keys

            # Creates without a dedup key: each one is a new incident.
            for result in plain:
                assert result.status == 201, result.body
                assert result.deduplicated == "false"
                assert result.body["title"] == result.request.title
                assert result.location == f"/api/v1/incidents/{result.body['id']}"
            assert len({r.body["id"] for r in plain}) == len(plain)

            # Per dedup key: exactly one 201, every other request a 200 flagged deduplicated, all one id.
            for dedup_key, answers in by_key.items():
                created = [r for r in answers if r.status == 201]
                assert len(created) == 1, f"{dedup_key}: {len(created)} creates answered 201"
                assert created[0].deduplicated == "false"
                for result in answers:
                    if result is not created[0]:
                        assert result.status == 200 and result.deduplicated == "true", (dedup_key, result)
                assert {r.body["id"] for r in answers} == {created[0].body["id"]}
                assert {r.body["number"] for r in answers} == {created[0].body["number"]}
                assert all(r.body["dedup_key"] == dedup_key for r in answers)

            created_ids = {r.body["id"] for r in results if r.status == 201}
            assert len(created_ids) == len(plain) + keys

            # Numbers: unique, INC-YYYYMMDD-NNN for today's UTC date.
            numbers = {r.body["id"]: r.body["number"] for r in results if r.status == 201}
            assert len(set(numbers.values())) == len(numbers), "two incidents share a number"
            for number in numbers.values():
                match = NUMBER.match(number)
                assert match, number
                assert match.group(1) in {day_before, day_after}

            # The API lists exactly the incidents created, with the numbers it answered.
            assert len(listed) == len(created_ids)
            assert {i["id"]: i["number"] for i in listed} == numbers

        # What is stored: no lost or extra incident, one open incident per key, one created event each,
        # and one timeline entry per deduplicated report.
        with db.read() as session:
            rows = session.execute(select(IncidentRow.id, IncidentRow.number, IncidentRow.dedup_key)).all()
            assert {row.id: row.number for row in rows} == numbers
            open_per_key = dict(
                session.execute(
                    select(IncidentRow.dedup_key, func.count())
                    .where(IncidentRow.dedup_key.is_not(None), IncidentRow.status.in_(OPEN_STATUSES))
                    .group_by(IncidentRow.dedup_key)
                ).all()
            )
            assert open_per_key == dict.fromkeys(by_key, 1)
            created_events = Counter(
                session.scalars(select(EventRow.incident_id).where(EventRow.type == "incident_created"))
            )
            assert created_events == Counter(created_ids)
            for dedup_key, answers in by_key.items():
                duplicates = session.scalar(
                    select(func.count())
                    .select_from(TimelineRow)
                    .where(
                        TimelineRow.incident_id == answers[0].body["id"],
                        TimelineRow.message.like("Duplicate report deduplicated:%"),
                    )
                )
                assert duplicates == len(answers) - 1, dedup_key
    finally:
        db.dispose()


def test_a_thousand_concurrent_creates_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """1,000 creates from 48 clients, 40% of them over 20 dedup keys, against two worker processes."""
    check_concurrent_creates(
        postgres_url, tmp_path, total=1000, dedup_share=0.4, keys=20, clients=48, workers=2
    )


def test_concurrent_creates_on_sqlite(tmp_path: Path) -> None:
    """200 creates from 32 clients, 40% of them over 8 dedup keys, on the embedded database."""
    check_concurrent_creates(
        f"sqlite:///{tmp_path / 'hub.db'}",
        tmp_path,
        total=200,
        dedup_share=0.4,
        keys=8,
        clients=32,
        workers=1,
    )
