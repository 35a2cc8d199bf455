"""`/api/v1/analytics/...`: the incident reports (read scope), as JSON or, with `Accept: text/csv`, CSV."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from incident_hub.analytics import export
from incident_hub.analytics.now import ActiveIncident, NowReport
from incident_hub.analytics.recurrence import Category, RecurrenceReport
from incident_hub.analytics.reliability import EntityReliability, ReliabilityReport
from incident_hub.analytics.reports import Analytics
from incident_hub.analytics.response_times import GroupBy, ResponseTimes, ResponseTimesReport
from incident_hub.analytics.trends import TrendBucket, TrendsReport
from incident_hub.analytics.windows import BucketSize
from incident_hub.api.auth import Reader
from incident_hub.model import Timestamp

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

CSV = "text/csv"
From = Annotated[
    Timestamp | None,
    Query(alias="from", description="Window start (ISO 8601; no offset: UTC). Default: a span before `to`."),
]
To = Annotated[
    Timestamp | None, Query(alias="to", description="Window end, excluded (ISO 8601). Default: now.")
]
Accept = Annotated[str | None, Header(description="`text/csv` for CSV; otherwise JSON.")]
Report = TypeVar("Report", bound=BaseModel)


def _csv_answer(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {CSV: {"schema": {"type": "string"}}}}}


def _analytics(request: Request) -> Analytics:
    analytics: Analytics = request.app.state.analytics
    return analytics


def _wants_csv(accept: str | None) -> bool:
    """CSV when `Accept` names `text/csv` with a higher quality than `application/json` (or without it)."""
    if not accept:
        return False
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    wanted = quality.get(CSV, 0.0)
    return wanted > 0 and wanted > quality.get("application/json", -1.0)


async def _answer(
    compute: Callable[[], Report],
    accept: str | None,
    rows: Callable[[Report], Iterable[BaseModel]],
    model: type[BaseModel],
    name: str,
) -> Response:
    report = await run_in_threadpool(compute)
    if _wants_csv(accept):
        return Response(
            export.table(rows(report), export.columns_of(model)),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return Response(report.model_dump_json(by_alias=True), media_type="application/json")


@router.get("/now", response_model=NowReport, responses=_csv_answer("CSV: one row per active incident."))
async def now(request: Request, _: Reader, accept: Accept = None) -> Response:
    """What is broken right now: active incidents with running durations, by severity, team, service and
    component; most severe first, oldest first within a severity."""
    analytics = _analytics(request)
    return await _answer(analytics.now, accept, lambda r: r.incidents, ActiveIncident, "now")


@router.get(
    "/response-times",
    response_model=ResponseTimesReport,
    responses=_csv_answer("CSV: one row per group (without `group_by`: one row, all incidents)."),
)
async def response_times(
    request: Request,
    _: Reader,
    start: From = None,
    end: To = None,
    group_by: Annotated[
        GroupBy | None, Query(description="Figures per service, team, severity or source.")
    ] = None,
    accept: Accept = None,
) -> Response:
    """MTTD, MTTA and MTTR (mean, p50, p90, p99) and SLA shares of the incidents detected in the window
    (default: the 7 days before `to`)."""
    analytics = _analytics(request)
    return await _answer(
        lambda: analytics.response_times(start, end, group_by),
        accept,
        lambda r: r.groups if r.group_by else [r.overall],
        ResponseTimes,
        "response-times",
    )


@router.get(
    "/reliability",
    response_model=ReliabilityReport,
    responses=_csv_answer("CSV: one row per service, then per component, each most reliable first."),
)
async def reliability(
    request: Request, _: Reader, start: From = None, end: To = None, accept: Accept = None
) -> Response:
    """Availability, weighted downtime and MTBF per service and per component over the window (default: the
    7 days before `to`), banded and ranked."""
    analytics = _analytics(request)
    return await _answer(
        lambda: analytics.reliability(start, end),
        accept,
        lambda r: [*r.services, *r.components],
        EntityReliability,
        "reliability",
    )


@router.get("/trends", response_model=TrendsReport, responses=_csv_answer("CSV: one row per bucket."))
async def trend(
    request: Request,
    _: Reader,
    start: From = None,
    end: To = None,
    tz: Annotated[str, Query(description="IANA time zone of the day boundaries.", max_length=100)] = "UTC",
    bucket: Annotated[BucketSize, Query(description="Local days, or weeks from Monday.")] = BucketSize.DAY,
    accept: Accept = None,
) -> Response:
    """Incidents per local day or week by severity, and each bucket's MTTR (default window: 28 days, or
    12 weeks, before `to`)."""
    analytics = _analytics(request)
    return await _answer(
        lambda: analytics.trends(start, end, tz, bucket), accept, lambda r: r.buckets, TrendBucket, "trends"
    )


@router.get(
    "/recurrence",
    response_model=RecurrenceReport,
    responses=_csv_answer("CSV: one row per root-cause category seen three or more times."),
)
async def recurrence(
    request: Request, _: Reader, start: From = None, end: To = None, accept: Accept = None
) -> Response:
    """Share of the window's incidents whose dedup key or root-cause category occurred in the 90 days
    before them, and the categories seen more than twice (default window: 30 days before `to`)."""
    analytics = _analytics(request)
    return await _answer(
        lambda: analytics.recurrence(start, end), accept, lambda r: r.categories, Category, "recurrence"
    )
