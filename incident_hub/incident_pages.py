"""One page of the incident list, newest first, and the cursor that continues it.

Every filter reads only the page it returns, however many incidents the hub holds: each filter
combination is a range of one index that ends in `(created_at, id)` (see `IncidentRow`'s indexes), read
backwards from the cursor. A list of several values (`status=RESOLVED&status=CLOSED`) is one such range
per value, merged in order by the database (SQLite's MERGE of a compound SELECT, PostgreSQL's Merge
Append), so no filter sorts all of its matches.

The search filters (services, tags, components, source, text, time ranges, SLA breach, linked connector)
are predicates the database answers from their own indexes (GIN containment and trigrams on PostgreSQL,
plain ones on both), then orders the matches: the list is then one statement, not one range per value.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select, tuple_, type_coerce, union, union_all
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from incident_hub.clock import as_utc
from incident_hub.errors import InvalidRequest
from incident_hub.model import Severity, Status
from incident_hub.store.tables import (
    INCIDENT_ROOT_CAUSE,
    INCIDENT_TEXT,
    ExternalRefRow,
    IncidentRow,
    TimelineRow,
)

_NEWEST_FIRST = (IncidentRow.created_at.desc(), IncidentRow.id.desc())


@dataclass(frozen=True)
class IncidentFilters:
    """What the incident list is narrowed to: every filter given must hold; several values of one filter
    match any of them. Time ranges include their start and exclude their end. Text matches case-insensitive
    substrings."""

    status: Sequence[Status] = ()
    severity: Sequence[Severity] = ()
    assigned_team: str | None = None
    affected_service: Sequence[str] = ()
    component: Sequence[str] = ()
    device: Sequence[str] = ()
    host: Sequence[str] = ()
    tag: Sequence[str] = ()
    source: Sequence[str] = ()
    root_cause: str | None = None
    q: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    detected_from: datetime | None = None
    detected_to: datetime | None = None
    resolved_from: datetime | None = None
    resolved_to: datetime | None = None
    sla_breached: bool | None = None
    connector: Sequence[str] = ()

    def searches(self) -> bool:
        """Whether any filter beyond status, severity, team and creation time is given."""
        return bool(
            self.affected_service
            or self.component
            or self.device
            or self.host
            or self.tag
            or self.source
            or self.root_cause
            or self.q
            or self.detected_from
            or self.detected_to
            or self.resolved_from
            or self.resolved_to
            or self.sla_breached is not None
            or self.connector
        )


NO_FILTERS = IncidentFilters()


def list_query(
    filters: IncidentFilters = NO_FILTERS,
    *,
    cursor: str | None = None,
    limit: int = 50,
    options: Sequence[ORMOption] = (),
    dialect: str = "sqlite",
) -> ExecutableReturnsRows:
    """The incidents matching every filter, newest first, after `cursor`: at most `limit` of them, as a
    statement for `dialect` (`sqlite` or `postgresql`)."""
    after = _after(cursor) if cursor else None
    created = _created_range(filters)
    if filters.searches():
        # One statement: the database picks the most selective index among the filters and sorts what it
        # matched (a GIN or trigram index returns matches in no order).
        query = _range(None, None, filters.assigned_team, after).where(*created, *_search(filters, dialect))
        if filters.status:
            query = query.where(IncidentRow.status.in_([s.value for s in filters.status]))
        if filters.severity:
            query = query.where(IncidentRow.severity.in_([s.value for s in filters.severity]))
        return query.options(*options).order_by(*_NEWEST_FIRST).limit(limit)
    arms = [
        _range(st, sev, filters.assigned_team, after).where(*created)
        for st, sev in _ranges(filters.status, filters.severity)
    ]
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


def _created_range(filters: IncidentFilters) -> list[ColumnElement[bool]]:
    # Creation time is the list's own order: a range of it narrows every index range the list reads.
    return _between(IncidentRow.created_at, filters.created_from, filters.created_to)


def _between(column: Any, start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    bounds: list[ColumnElement[bool]] = []
    if start is not None:
        bounds.append(column >= as_utc(start))
    if end is not None:
        bounds.append(column < as_utc(end))
    return bounds


def _search(filters: IncidentFilters, dialect: str) -> list[ColumnElement[bool]]:
    """The predicates of the search filters, in the forms each database has indexes for."""
    found: list[ColumnElement[bool]] = []
    if filters.affected_service:
        found.append(_any_service(filters.affected_service, dialect))
    for prefix, values in (
        ("component", filters.component),
        ("device", filters.device),
        ("host", filters.host),
    ):
        if values:
            # Components, devices and hosts are recorded as `kind:name` tags (see `signals`).
            found.append(_any_tag([f"{prefix}:{value}" for value in values], dialect))
    if filters.tag:
        found.append(_any_tag(filters.tag, dialect))
    if filters.source:
        found.append(IncidentRow.source.in_(sorted(set(filters.source))))
    if filters.root_cause:
        found.append(_contains_text(INCIDENT_ROOT_CAUSE, filters.root_cause))
    if filters.q:
        found.append(_mentions(filters.q))
    found += _between(IncidentRow.detected_at, filters.detected_from, filters.detected_to)
    found += _between(IncidentRow.resolved_at, filters.resolved_from, filters.resolved_to)
    if filters.sla_breached is not None:
        found.append(IncidentRow.sla_breached.is_(filters.sla_breached))
    if filters.connector:
        # Read from the links' (connector_id, external_id) index, not once per incident.
        linked = select(ExternalRefRow.incident_id).where(
            ExternalRefRow.connector_id.in_(sorted(set(filters.connector)))
        )
        found.append(IncidentRow.id.in_(linked))
    return found


def _any_tag(values: Sequence[str], dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        tags = type_coerce(IncidentRow.tags, JSONB)
        return or_(*(tags.contains([value]) for value in sorted(set(values))))
    each = func.json_each(IncidentRow.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value.in_(sorted(set(values)))))


def _any_service(names: Sequence[str], dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        services = type_coerce(IncidentRow.affected_services, JSONB)
        return or_(*(services.contains([{"name": name}]) for name in sorted(set(names))))
    each = func.json_each(IncidentRow.affected_services).table_valued("value")
    name = func.json_extract(each.c.value, "$.name")
    return exists(select(1).select_from(each).where(name.in_(sorted(set(names)))))


def _pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains_text(
    expression: ColumnElement[str] | InstrumentedAttribute[str], text: str
) -> ColumnElement[bool]:
    return expression.ilike(_pattern(text), escape="\\")


def _mentions(text: str) -> ColumnElement[bool]:
    """Title, description or summary, or any timeline entry, contains `text`. A union of the two look-ups,
    so each is read from its own index."""
    in_incident = select(IncidentRow.id).where(_contains_text(INCIDENT_TEXT, text))
    in_timeline = select(TimelineRow.incident_id).where(_contains_text(TimelineRow.message, text))
    return IncidentRow.id.in_(union(in_incident, in_timeline))
