"""How quickly incidents are detected, acknowledged and resolved over a window, per service, team,
severity or source: means and percentiles of the stored lifecycle durations, and the share of incidents
that met each SLA deadline. An incident belongs to the window its detection falls in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, and_, case, func, literal, null, or_, select, true

from incident_hub.analytics import sql
from incident_hub.analytics.percentiles import QUANTILES, percentile_cont
from incident_hub.analytics.windows import Window
from incident_hub.model import Severity, SlaPolicy
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow


class GroupBy(StrEnum):
    SERVICE = "service"
    TEAM = "team"
    SEVERITY = "severity"
    SOURCE = "source"


class Targets(BaseModel):
    mtta_minutes: float
    mttd_minutes: float
    mttr_minutes: float


class Durations(BaseModel):
    """One duration over the incidents that have it (seconds)."""

    count: int = Field(description="Incidents the duration is known for.")
    mean_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None


class SlaShare(BaseModel):
    """One SLA deadline: met, missed, and still running (open incidents whose deadline is ahead)."""

    met: int
    missed: int
    pending: int
    share_met: float | None = Field(description="met / (met + missed); null when nothing is decided yet.")


class ResponseTimes(BaseModel):
    key: str | None = Field(description="The group's service, team, severity or source; null: none given.")
    incidents: int = Field(description="Incidents detected in the window.")
    open: int = Field(description="Of those, not resolved yet: they count here, never as a zero duration.")
    unacknowledged: int
    mttd: Durations = Field(description="First alert or signal to detection (incidents from one).")
    mtta: Durations = Field(description="Detection to acknowledgement.")
    mttr: Durations = Field(description="Detection to resolution.")
    sla_acknowledge: SlaShare
    sla_resolve: SlaShare


class ResponseTimesReport(BaseModel):
    generated_at: datetime
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    group_by: GroupBy | None
    targets: Targets
    overall: ResponseTimes
    groups: list[ResponseTimes] = Field(
        description="One per group, most incidents first (empty: no group_by)."
    )


_DURATIONS = {
    "mttd": IncidentRow.time_to_detect_seconds,
    "mtta": IncidentRow.time_to_acknowledge_seconds,
    "mttr": IncidentRow.time_to_resolve_seconds,
}


def report(
    db: Database,
    span: Window,
    group_by: GroupBy | None,
    *,
    sla: SlaPolicy,
    targets: Targets,
    now: datetime,
) -> ResponseTimesReport:
    """Response times of the incidents detected in `span`, overall and per `group_by`."""
    dialect = db.url.get_backend_name()
    with db.read() as session:
        overall = _figures(session, dialect, span, None, sla, now)
        groups = _figures(session, dialect, span, group_by, sla, now) if group_by else []
    empty = ResponseTimes(
        key=None,
        incidents=0,
        open=0,
        unacknowledged=0,
        **{
            name: Durations(count=0, mean_seconds=None, p50_seconds=None, p90_seconds=None, p99_seconds=None)
            for name in _DURATIONS
        },
        sla_acknowledge=SlaShare(met=0, missed=0, pending=0, share_met=None),
        sla_resolve=SlaShare(met=0, missed=0, pending=0, share_met=None),
    )
    return ResponseTimesReport(
        generated_at=now,
        from_=span.start,
        to=span.end,
        group_by=group_by,
        targets=targets,
        overall=overall[0] if overall else empty,
        groups=sorted(groups, key=lambda g: (-g.incidents, g.key is None, g.key or "")),
    )


def _figures(
    session: Any, dialect: str, span: Window, group_by: GroupBy | None, sla: SlaPolicy, now: datetime
) -> list[ResponseTimes]:
    key, joined = _key(group_by, dialect)
    in_window = and_(IncidentRow.detected_at >= span.start, IncidentRow.detected_at < span.end)
    elapsed = literal(now.timestamp()) - sql.epoch_seconds(IncidentRow.detected_at, dialect)
    ack_limit = _limit(sla.acknowledge)
    resolve_limit = _limit(sla.resolve)
    tta = IncidentRow.time_to_acknowledge_seconds
    ttr = IncidentRow.time_to_resolve_seconds
    columns: list[ColumnElement[Any]] = [
        key.label("key"),
        func.count().label("incidents"),
        func.count(case((IncidentRow.resolved_at.is_(None), 1))).label("open"),
        func.count(case((IncidentRow.acknowledged_at.is_(None), 1))).label("unacknowledged"),
        *_sla_columns("ack", tta, ack_limit, elapsed),
        *_sla_columns("resolve", ttr, resolve_limit, elapsed),
    ]
    for name, column in _DURATIONS.items():
        columns += [func.count(column).label(f"{name}_count"), func.avg(column).label(f"{name}_mean")]
        if dialect != "sqlite":
            columns += [
                func.percentile_cont(q).within_group(column).label(f"{name}_p{_percent(q)}")
                for q in QUANTILES
            ]
    query: Select[Any] = joined(select(*columns).where(in_window))
    if group_by is not None:
        query = query.group_by(key)
    rows = session.execute(query).mappings().all()
    percentiles: dict[Any, dict[str, float | None]] = {}
    if dialect == "sqlite":
        # SQLite has no percentile_cont: the same interpolation, over the durations SQL returns sorted.
        for name, column in _DURATIONS.items():
            durations = session.execute(
                joined(select(key.label("key"), column).where(in_window, column.is_not(None))).order_by(
                    key, column
                )
            ).all()
            by_key: dict[Any, list[float]] = {}
            for group_key, value in durations:
                by_key.setdefault(group_key, []).append(float(value))
            for group_key, values in by_key.items():
                for q in QUANTILES:
                    percentiles.setdefault(group_key, {})[f"{name}_p{_percent(q)}"] = percentile_cont(
                        values, q
                    )
    figures = []
    for row in rows:
        figure: dict[str, Any] = {**row, **percentiles.get(row["key"], {})}
        figures.append(
            ResponseTimes(
                key=None if row["key"] is None else str(row["key"]),
                incidents=row["incidents"],
                open=row["open"],
                unacknowledged=row["unacknowledged"],
                **{name: _durations(name, figure) for name in _DURATIONS},
                sla_acknowledge=_share(figure, "ack"),
                sla_resolve=_share(figure, "resolve"),
            )
        )
    return figures


def _key(group_by: GroupBy | None, dialect: str) -> tuple[sql.Expression, Any]:
    """The grouping expression, and what joins the FROM it needs onto a query."""
    plain = lambda query: query.select_from(IncidentRow)  # noqa: E731
    if group_by is None:
        return null(), plain
    if group_by is GroupBy.SERVICE:
        elements, value = sql.json_elements(IncidentRow.affected_services, dialect)
        name = sql.json_field(value, "name", dialect)
        return name, lambda query: query.select_from(IncidentRow).join(elements, true())
    column = {
        GroupBy.TEAM: IncidentRow.assigned_team,
        GroupBy.SEVERITY: IncidentRow.severity,
        GroupBy.SOURCE: IncidentRow.source,
    }[group_by]
    return column, plain


def _limit(allowed: dict[Severity, Any]) -> ColumnElement[float]:
    """The severity's deadline in seconds, as an SQL expression over the row's severity."""
    return case(
        {severity.value: delta.total_seconds() for severity, delta in allowed.items()},
        value=IncidentRow.severity,
        else_=None,
    )


def _sla_columns(
    name: str, duration: sql.Expression, limit: ColumnElement[float], elapsed: ColumnElement[Any]
) -> Sequence[ColumnElement[Any]]:
    met = func.count(case((duration <= limit, 1)))
    missed = func.count(case((or_(duration > limit, and_(duration.is_(None), elapsed > limit)), 1)))
    return [met.label(f"{name}_met"), missed.label(f"{name}_missed")]


def _share(values: dict[str, Any], name: str) -> SlaShare:
    met, missed = int(values[f"{name}_met"]), int(values[f"{name}_missed"])
    decided = met + missed
    return SlaShare(
        met=met,
        missed=missed,
        pending=int(values["incidents"]) - decided,
        share_met=met / decided if decided else None,
    )


def _durations(name: str, values: dict[str, Any]) -> Durations:
    def number(field: str) -> float | None:
        value = values.get(field)
        return None if value is None else float(value)

    return Durations(
        count=int(values[f"{name}_count"]),
        mean_seconds=number(f"{name}_mean"),
        **{f"p{_percent(q)}_seconds": number(f"{name}_p{_percent(q)}") for q in QUANTILES},
    )


def _percent(quantile: float) -> int:
    return round(quantile * 100)
