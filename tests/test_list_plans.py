"""At 100k incidents, every filter of the incident list reads one index range in the list's order and stops
at the page: no scan of the table, no sort of the matching rows, no row read only to be thrown away. Each
search filter that matches few incidents reads them through its own index (GIN and trigram ones on
PostgreSQL), never by scanning the table.

The plans are the databases' own (`EXPLAIN QUERY PLAN` on SQLite, which the hub never ANALYZEs;
`EXPLAIN (ANALYZE, FORMAT JSON)` after ANALYZE on PostgreSQL) for the statement the list endpoint runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, false, insert, literal_column, select, text, update

from incident_hub.incident_pages import IncidentFilters, encode_cursor
from incident_hub.incidents import IncidentService
from incident_hub.settings import Settings
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.tables import ExternalRefRow, IncidentRow, TimelineRow
from tests.conftest import _postgres_schema
from tests.incident_fill import NEWEST_CREATED, SPACING, every_filter, fill_incidents, filter_name

pytestmark = pytest.mark.slow

INCIDENTS = 100_000
FILTERS = list(every_filter())
# The column each filter must find in the index range it reads.
FILTER_COLUMNS = {"status": "status", "severity": "severity", "assigned_team": "assigned_team"}
PAGE = 5
# Rows a walk along (created_at, id) may skip for a page of PAGE (a tenth of the incidents match).
SKIP_BUDGET = 10 * (PAGE + 1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    urls: Iterator[str]
    if request.param == "sqlite":
        urls = iter([f"sqlite:///{tmp_path_factory.mktemp('plans') / 'hub.db'}"])
    else:
        urls = _postgres_schema()
    url = next(urls)
    db = Database(url)
    try:
        migrate.upgrade(db)
        fill_incidents(db, INCIDENTS)
        _mark_needles(db)
        if not db.is_sqlite:
            with db.engine.begin() as connection:
                for table in ("incidents", "timeline_entries", "external_refs"):
                    connection.execute(text(f"ANALYZE {table}"))
        yield db
    finally:
        db.dispose()
        for _ in urls:  # drops the PostgreSQL schema
            pass


# The API's default page. For much smaller pages PostgreSQL may rather walk the list's order from the newest
# and filter, which it estimates cheaper than reading the matches from a GIN index and sorting them.
SEARCH_PAGE = 50
# Every NEEDLE_EVERY-th incident (a tenth of a percent, spread over all of history) is the one each search
# filter looks for.
NEEDLE_EVERY = 1000
WINDOW_START = NEEDLE_CREATED = NEWEST_CREATED - SPACING * (INCIDENTS // 3)
# SQLite has no index for JSON containment or substring search: it walks the list's order from the newest
# and stops at the page (no sort), reading more rows the rarer the match.
WALK = "incidents USING INDEX ix_incidents_created"
# (filters, the index PostgreSQL must read them with, what SQLite's plan must show; None: nothing to check,
# SQLite reads the whole table for `q` to look through it and the timeline with LIKE)
SEARCHES: list[tuple[dict[str, Any], str, str | None]] = [
    ({"affected_service": ["needle-api"]}, "ix_incidents_services", WALK),
    ({"affected_service": ["needle-api", "thread-api"]}, "ix_incidents_services", WALK),
    ({"component": ["needle"]}, "ix_incidents_tags", WALK),
    ({"device": ["needle-cam"], "host": ["needle-host"]}, "ix_incidents_tags", WALK),
    ({"tag": ["needle"]}, "ix_incidents_tags", WALK),
    (
        {"source": ["needle"]},
        "ix_incidents_source_created",
        "SEARCH incidents USING INDEX ix_incidents_source_created",
    ),
    ({"root_cause": "needle valve"}, "ix_incidents_root_cause_trgm", WALK),
    ({"q": "needlework"}, "ix_incidents_text_trgm", None),
    ({"q": "threadbare"}, "ix_timeline_entries_message_trgm", None),
    (
        {"sla_breached": True},
        "ix_incidents_breached_created",
        "SEARCH incidents USING INDEX ix_incidents_breached_created",
    ),
    ({"connector": ["needle"]}, "external_refs", "SEARCH external_refs USING INDEX"),
    (
        {"created_from": WINDOW_START, "created_to": WINDOW_START + timedelta(hours=1)},
        "ix_incidents_created",
        "SEARCH incidents USING INDEX ix_incidents_created",
    ),
    (
        {"detected_from": WINDOW_START, "detected_to": WINDOW_START + timedelta(hours=1)},
        "ix_incidents_detected",
        "SEARCH incidents USING INDEX ix_incidents_detected",
    ),
    (
        {"resolved_from": WINDOW_START, "resolved_to": WINDOW_START + timedelta(hours=1)},
        "ix_incidents_resolved",
        "SEARCH incidents USING INDEX ix_incidents_resolved",
    ),
]


def _mark_needles(db: Database) -> None:
    """Mark every NEEDLE_EVERY-th incident with what each search filter looks for: its services, tags,
    source, root cause, text, SLA breach, a timeline entry and a link to the `needle` connector."""
    numbers = [f"BULK-{n:08d}" for n in range(NEEDLE_EVERY // 2, INCIDENTS, NEEDLE_EVERY)]
    incidents = IncidentRow.__table__
    marked = (
        update(incidents)
        .where(incidents.c.number == bindparam("marked_number"))
        .values(
            affected_services=[{"name": "needle-api", "impact": "degraded"}],
            tags=["needle", "component:needle", "device:needle-cam", "host:needle-host"],
            source="needle",
            root_cause="The needle valve stuck open",
            description="Found by needlework",
            sla_breached=True,
        )
    )
    with db.engine.begin() as connection:
        # Every incident has a timeline entry and a link, as on a hub that syncs: the needles are rare there.
        every = select(
            incidents.c.id,
            literal_column("'STATUS_CHANGE'"),
            literal_column("'Status changed to RESOLVED'"),
            false(),
            incidents.c.created_at,
        )
        connection.execute(
            insert(TimelineRow).from_select(
                ["incident_id", "type", "message", "is_public", "timestamp"], every
            )
        )
        linked = select(incidents.c.id, literal_column("'jira'"), incidents.c.id, literal_column("'{}'"))
        connection.execute(
            insert(ExternalRefRow).from_select(
                ["incident_id", "connector_id", "external_id", "written"], linked
            )
        )
        connection.execute(marked, [{"marked_number": number} for number in numbers])
        ids = (
            connection.execute(select(incidents.c.id).where(incidents.c.number.in_(numbers))).scalars().all()
        )
        entries = [
            {
                "incident_id": incident_id,
                "type": "NOTE",
                "message": "The rope was threadbare",
                "is_public": False,
                "timestamp": NEWEST_CREATED,
            }
            for incident_id in ids
        ]
        connection.execute(insert(TimelineRow), entries)
        refs = [
            {"incident_id": incident_id, "connector_id": "needle", "external_id": incident_id, "written": {}}
            for incident_id in ids
        ]
        connection.execute(insert(ExternalRefRow), refs)


def _list_statement(
    db: Database, filters: dict[str, Any], *, second_page: bool, limit: int = PAGE
) -> tuple[str, Any]:
    """The statement (and its parameters) that lists incidents with these filters: the first page, or the
    one after it."""
    service = IncidentService(db, Settings(database_url=str(db.url)).sla_policy())
    # Half way back through the incidents, just after one of them (ids sort below "z").
    cursor = encode_cursor(NEWEST_CREATED - SPACING * (INCIDENTS // 2), "z") if second_page else None
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        service.search(IncidentFilters(**filters), cursor=cursor, limit=limit)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    # The page itself; the selectin loads of its steps, responses and links follow it.
    return next((statement, parameters) for statement, parameters in seen if "FROM incidents" in statement)


def _sqlite_problems(db: Database, statement: str, parameters: Any, filters: dict[str, Any]) -> list[str]:
    with db.engine.connect() as connection:
        plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    problems = [f"sorts its matches: {line}" for line in plan if "TEMP B-TREE" in line]
    for line in plan:
        if line.startswith("SCAN incidents") and (filters or "ix_incidents_created" not in line):
            problems.append(f"scans the table: {line}")
        if line.startswith("SEARCH incidents"):
            constraint = line.partition("(")[2]
            problems += [
                f"filters {name} outside the index: {line}"
                for name in filters
                if f"{FILTER_COLUMNS[name]}=" not in constraint
            ]
    if not any(line.startswith(("SCAN incidents", "SEARCH incidents")) for line in plan):
        problems.append(f"no read of incidents in {plan}")
    return [f"{p}\n  plan: {plan}" for p in problems]


def _postgresql_problems(db: Database, statement: str, parameters: Any, filters: dict[str, Any]) -> list[str]:
    with db.engine.connect() as connection:
        plan = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        ).scalar_one()
    problems: list[str] = []
    reads = 0
    for node in _nodes(plan[0]["Plan"]):
        kind = node["Node Type"]
        if kind == "Sort":
            problems.append(f"sorts its matches by {node.get('Sort Key')}")
        if node.get("Relation Name") != "incidents":
            continue
        reads += 1
        if kind not in ("Index Scan", "Index Only Scan"):
            problems.append(f"{kind} on incidents")
            continue
        condition = node.get("Index Cond", "")
        outside = [name for name in filters if not re.search(rf"\b{FILTER_COLUMNS[name]}\b", condition)]
        if not outside:
            continue
        # Where the values asked for are most incidents, PostgreSQL may rather walk (created_at, id) back
        # from the cursor, in the heap's own order, and skip the others; or, where one branch of the
        # statuses holds few rows, take a narrower index and filter the rest (ANALYZE samples, so
        # the choice differs from run to run). Either is fine while it skips few rows.
        if node.get("Rows Removed by Filter", 0) > SKIP_BUDGET:
            problems.append(f"filters {outside} outside the index {node['Index Name']}: {node.get('Filter')}")
    if reads == 0:
        problems.append("no read of incidents")
    return [f"{p}\n  plan: {json.dumps(plan)}" for p in problems]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("second_page", [False, True], ids=["first-page", "after-cursor"])
@pytest.mark.parametrize("filters", FILTERS, ids=[filter_name(f) for f in FILTERS])
def test_list_filter_reads_only_its_page_at_100k_incidents(
    filled: Database, filters: dict[str, Any], second_page: bool
) -> None:
    statement, parameters = _list_statement(filled, filters, second_page=second_page)
    if filled.is_sqlite:
        problems = _sqlite_problems(filled, statement, parameters, filters)
    else:
        problems = _postgresql_problems(filled, statement, parameters, filters)
    assert problems == []


def _search_name(search: tuple[dict[str, Any], str, str | None]) -> str:
    filters = search[0]
    return "+".join(f"{name}={value}" for name, value in filters.items())


@pytest.mark.parametrize("second_page", [False, True], ids=["first-page", "after-cursor"])
@pytest.mark.parametrize("search", SEARCHES, ids=[_search_name(s) for s in SEARCHES])
def test_search_filter_reads_its_index_at_100k_incidents(
    filled: Database, search: tuple[dict[str, Any], str, str | None], second_page: bool
) -> None:
    filters, postgresql_index, sqlite_index = search
    statement, parameters = _list_statement(filled, filters, second_page=second_page, limit=SEARCH_PAGE)
    with filled.engine.connect() as connection:
        if filled.is_sqlite:
            if sqlite_index is None:
                pytest.skip("SQLite has no index for substring search")
            plan = [
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            assert any(sqlite_index in line for line in plan), plan
            assert "SCAN incidents" not in plan, plan
            if sqlite_index == WALK:
                assert not any("TEMP B-TREE" in line for line in plan), plan
            return
        document = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        ).scalar_one()
    nodes = list(_nodes(document[0]["Plan"]))
    scans = [
        node for node in nodes if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "incidents"
    ]
    assert scans == [], json.dumps(document)
    if postgresql_index == "external_refs":
        read = [node.get("Index Name", "") for node in nodes if node.get("Relation Name") == "external_refs"]
        assert read and all(name for name in read), json.dumps(document)
    else:
        assert any(node.get("Index Name") == postgresql_index for node in nodes), json.dumps(document)
