"""One page of the incident list, newest first, and the cursor that continues it.

Every filter reads only the page it returns, however many incidents the hub holds: each filter
combination is a range of one index that ends in `(created_at, id)` (see `IncidentRow`'s indexes), read
backwards from the cursor. A list of several values (`status=RESOLVED&status=CLOSED`) is one such range
per value, merged in order by the database (SQLite's MERGE of a compound SELECT, PostgreSQL's Merge
Append), so no filter sorts all of its matches.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select, tuple_, union_all
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from incident_hub.clock import as_utc
from incident_hub.errors import InvalidRequest
from incident_hub.model import Severity, Status
from incident_hub.store.tables import IncidentRow

_NEWEST_FIRST = (IncidentRow.created_at.desc(), IncidentRow.id.desc())


def list_query(
    *,
    status: Sequence[Status] = (),
    severity: Sequence[Severity] = (),
    assigned_team: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    options: Sequence[ORMOption] = (),
    dialect: str = "sqlite",
) -> ExecutableReturnsRows:
    """The incidents matching every filter (any of the values given for one), newest first, after
    `cursor`: at most `limit` of them, as a statement for `dialect` (`sqlite` or `postgresql`)."""
    after = _after(cursor) if cursor else None
    arms = [_range(st, sev, assigned_team, after) for st, sev in _ranges(status, severity)]
    if len(arms) == 1:
        return arms[0].options(*options).order_by(*_NEWEST_FIRST).limit(limit)
    if dialect == "postgresql":
        # PostgreSQL merges the ranges (Merge Append) only when each is an ordered, limited subquery; SQLite
        # merges plain ones (a MERGE of the compound SELECT) and would sort each limited one again.
        arms = [arm.order_by(*_NEWEST_FIRST).limit(limit) for arm in arms]
    merged = union_all(*arms)
    columns = merged.selected_columns
    newest_first = merged.order_by(columns.created_at.desc(), columns.id.desc()).limit(limit)
    return select(IncidentRow).from_statement(newest_first).options(*options)


def encode_cursor(created_at: datetime, incident_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{incident_id}".encode()).decode()


def _after(cursor: str) -> ColumnElement[bool]:
    try:
        created, incident_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at = as_utc(datetime.fromisoformat(created))
    except ValueError:
        raise InvalidRequest("cursor is not one this API handed out") from None
    # A row value, not `a < x OR (a = x AND b < y)`: both databases turn it into the index range itself.
    return tuple_(IncidentRow.created_at, IncidentRow.id) < tuple_(created_at, incident_id)


def _ranges(status: Sequence[Status], severity: Sequence[Severity]) -> list[tuple[str | None, str | None]]:
    """The `(status, severity)` pairs to read one index range each for. The index is `(status, severity,
    created_at, id)`, so a status alone is read as one range per severity, and the other way round."""
    if not status and not severity:
        return [(None, None)]
    statuses = sorted(set(status)) or list(Status)
    severities = sorted(set(severity)) or list(Severity)
    return [(st.value, sev.value) for st, sev in itertools.product(statuses, severities)]


def _range(
    status: str | None, severity: str | None, assigned_team: str | None, after: ColumnElement[bool] | None
) -> Select[IncidentRow]:
    query = select(IncidentRow)
    if assigned_team is not None:
        query = query.where(IncidentRow.assigned_team == assigned_team)
    if status is not None:
        query = query.where(IncidentRow.status == status)
    if severity is not None:
        query = query.where(IncidentRow.severity == severity)
    if after is not None:
        query = query.where(after)
    return query
