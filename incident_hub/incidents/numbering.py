"""Human incident numbers, `INC-YYYYMMDD-NNN`: one counter row per UTC day, bumped by an
`INSERT … ON CONFLICT DO UPDATE … RETURNING` in the transaction that creates the incident, so two creates
never share a number and a create that rolls back gives its number back."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Connection, String, Table, bindparam, func, literal
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite

from incident_hub.store.tables import IncidentCounterRow

COUNTERS = cast(Table, IncidentCounterRow.__table__)

# Statements built once, per dialect; `day` is their one parameter.
BUMP_POSTGRESQL = (
    postgresql.insert(COUNTERS)
    .values(day=bindparam("day"), last=1)
    .on_conflict_do_update(index_elements=[COUNTERS.c.day], set_={"last": COUNTERS.c.last + 1})
    .returning(COUNTERS.c.last)
)
BUMP_SQLITE = (
    sqlite.insert(COUNTERS)
    .values(day=bindparam("day"), last=1)
    .on_conflict_do_update(index_elements=[COUNTERS.c.day], set_={"last": COUNTERS.c.last + 1})
    .returning(COUNTERS.c.last)
)


def day_of(now: datetime) -> str:
    """The counter a number taken at `now` (UTC) comes from."""
    return now.strftime("%Y%m%d")


def number(day: str, last: int) -> str:
    return f"INC-{day}-{last:03d}"


def allocate(connection: Connection, day: str) -> str:
    """The next number of `day`, taken in `connection`'s transaction: the day's counter row stays locked
    until that transaction ends (on SQLite the write lock the transaction holds anyway)."""
    bump = BUMP_SQLITE if connection.dialect.name == "sqlite" else BUMP_POSTGRESQL
    last: int = connection.execute(bump, {"day": day}).scalar_one()
    return number(day, last)


def number_sql(day: ColumnElement[str], last: ColumnElement[int]) -> ColumnElement[str]:
    """`number(day, last)` computed by PostgreSQL, for a statement that bumps the counter and uses the
    number in one go."""
    digits = sql_cast(last, String)
    padded = func.lpad(digits, func.greatest(3, func.length(digits)), "0", type_=String)
    return literal("INC-", String) + day + literal("-", String) + padded
