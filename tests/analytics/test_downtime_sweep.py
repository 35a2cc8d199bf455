"""The down-time statement (one sweep per entity) against the definition, on both databases: an entity's
time line cut at every start and end of its intervals, each piece at the heaviest weight covering it,
failure periods as runs of covered pieces, and the gaps between them."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Float, String, literal, select, union_all

from incident_hub.analytics.reliability import downtime
from incident_hub.store.db import Database

LEVELS = [1.0, 0.5, 0.25]
Interval = tuple[str, int, int, float]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def expected(intervals: list[Interval]) -> dict[str, tuple[int, float, float, float, int]]:
    """(incidents, weighted, impacted, gaps, failures) per entity, by cutting at every point."""
    figures: dict[str, tuple[int, float, float, float, int]] = {}
    for entity in sorted({i[0] for i in intervals}):
        mine = [i for i in intervals if i[0] == entity]
        points = sorted({p for _, s, e, _ in mine for p in (s, e)})
        weighted = impacted = gaps = 0.0
        failures, covered_before = 0, False
        for a, b in pairwise(points):
            cover = [w for _, s, e, w in mine if s <= a and e >= b]
            if cover:
                weighted += (b - a) * max(cover)
                impacted += b - a
                failures += not covered_before
            else:
                gaps += b - a
            covered_before = bool(cover)
        figures[entity] = (len(mine), weighted, impacted, gaps, failures)
    return figures


intervals_strategy = st.lists(
    st.tuples(
        st.sampled_from(["checkout", "search", "api"]),
        st.integers(0, 60),
        st.integers(0, 30),
        st.sampled_from([*LEVELS, 0.0]),
    ).map(lambda t: (t[0], t[1], t[1] + t[2], t[3])),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(intervals=intervals_strategy)
def test_the_sweep_agrees_with_cutting_at_every_point(db: Database, intervals: list[Interval]) -> None:
    # One SELECT of literals per interval (SQLite names no columns of a VALUES list).
    rows = union_all(
        *(
            select(
                literal(entity, String).label("entity"),
                literal(float(s), Float).label("s"),
                literal(float(e), Float).label("e"),
                literal(w, Float).label("w"),
            )
            for entity, s, e, w in intervals
        )
    ).subquery("given")
    with db.read() as session:
        found: dict[str, Any] = {
            row.entity: (row.incidents, row.weighted, row.impacted, row.gaps, row.failures)
            for row in session.execute(downtime(select(rows), LEVELS))
        }
    want = expected(intervals)
    assert sorted(found) == sorted(want)
    for entity, (incidents, weighted, impacted, gaps, failures) in want.items():
        got = found[entity]
        assert (got[0], got[4]) == (incidents, failures), (entity, got, want[entity])
        assert got[1:4] == pytest.approx((weighted, impacted, gaps)), (entity, got, want[entity])
