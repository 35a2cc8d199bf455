"""What an incident is about, as SQL expressions over an incident row: the services it names (each with
its impact) and the component its tags name (`host:`, `device:`, `component:`, as component signals tag
their incidents)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Float, case, exists, func, literal, select

from incident_hub.analytics import sql
from incident_hub.model import Impact, Severity
from incident_hub.store.tables import IncidentRow

_COMPONENT_TAGS = ("host", "device", "component")


class EntityKind(StrEnum):
    SERVICE = "service"
    COMPONENT = "component"


def component_key(dialect: str) -> ColumnElement[str]:
    """`host/device/component` from the row's tags (the parts present, in that order; the first tag of
    each kind); null when the tags name no component."""
    parts = {name: _tag(name, dialect) for name in _COMPONENT_TAGS}
    # `||` with a null is null: a missing host or device drops out with its separator.
    return (
        func.coalesce(parts["host"] + "/", "") + func.coalesce(parts["device"] + "/", "") + parts["component"]
    )


def _tag(name: str, dialect: str) -> ColumnElement[str]:
    tags, value = sql.json_elements(IncidentRow.tags, dialect, text=True)
    prefix = f"{name}:"
    return (
        select(func.substr(value, len(prefix) + 1))
        .select_from(tags)
        .where(func.substr(value, 1, len(prefix)) == prefix, func.length(value) > len(prefix))
        .limit(1)
        .scalar_subquery()
    )


def impact_weight(impact: ColumnElement[Any], partial_outage: float, degraded: float) -> ColumnElement[float]:
    """The share of time an impact counts as down: total outage 1; anything not named, as degraded."""
    return case(
        (impact == Impact.TOTAL_OUTAGE.value, literal(1.0, Float)),
        (impact == Impact.PARTIAL_OUTAGE.value, literal(partial_outage, Float)),
        else_=literal(degraded, Float),
    )


def component_weight(dialect: str, partial_outage: float, degraded: float) -> ColumnElement[float]:
    """The weight of an incident on its component: its worst impact on any service it names, else (a
    component signal names none) a total outage at SEV1 (stopped) and a partial outage below (stuck)."""

    def names(impact: Impact) -> ColumnElement[bool]:
        services, value = sql.json_elements(IncidentRow.affected_services, dialect)
        return exists(
            select(1).select_from(services).where(sql.json_field(value, "impact", dialect) == impact.value)
        )

    return case(
        (names(Impact.TOTAL_OUTAGE), literal(1.0, Float)),
        (names(Impact.PARTIAL_OUTAGE), literal(partial_outage, Float)),
        (names(Impact.DEGRADED), literal(degraded, Float)),
        (IncidentRow.severity == Severity.SEV1_CRITICAL.value, literal(1.0, Float)),
        else_=literal(partial_outage, Float),
    )
