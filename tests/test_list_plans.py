"""At 100k incidents, every filter of the incident list reads one index range in the list's order and stops
at the page: no scan of the table, no sort of the matching rows, no row read only to be thrown away.

The plans are the databases' own (`EXPLAIN QUERY PLAN` on SQLite, which the hub never ANALYZEs;
`EXPLAIN (ANALYZE, FORMAT JSON)` after ANALYZE on PostgreSQL) for the statement the list endpoint runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from incident_hub.incident_pages import IncidentFilters, encode_cursor
from incident_hub.incidents import IncidentService
from incident_hub.settings import Settings
from incident_hub.store import migrate
from incident_hub.store.db import Database
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
        if not db.is_sqlite:
            with db.engine.begin() as connection:
                connection.execute(text("ANALYZE incidents"))
        yield db
    finally:
        db.dispose()
        for _ in urls:  # drops the PostgreSQL schema
            pass


def _list_statement(db: Database, filters: dict[str, Any], *, second_page: bool) -> tuple[str, Any]:
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
        service.search(IncidentFilters(**filters), cursor=cursor, limit=PAGE)
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
        # from the cursor, in the heap's own order, and skip the others: fine while it skips few.
        from_cursor = node["Index Name"] == "ix_incidents_created" and "created_at" in condition
        if not from_cursor or node.get("Rows Removed by Filter", 0) > SKIP_BUDGET:
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
