"""The overview page, the admin UI's landing page: what is broken now, the headline figures of a window
against their targets, and charts of the trends (docs/admin.md, "Overview"; docs/analytics.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from incident_hub.admin import charts
from incident_hub.admin.render import hub_errors, render
from incident_hub.admin.session import Admin
from incident_hub.analytics.overview import duration, overview, percent
from incident_hub.analytics.reliability import Band, ReliabilityReport
from incident_hub.analytics.reports import Analytics
from incident_hub.analytics.trends import TrendsReport
from incident_hub.analytics.windows import BucketSize
from incident_hub.clock import utcnow
from incident_hub.model import Severity

router = APIRouter()

WINDOWS = (1, 7, 30, 90)
DEFAULT_DAYS = 7
TREND_WEEKS = 12
BAND_COLOURS = {Band.EXCELLENT: "#1a7f37", Band.GOOD: "#4caf50", Band.FAIR: "#f9a825", Band.POOR: "#b42318"}
Days = Annotated[int, Query(description="The window: this many days before now.")]


def _analytics(request: Request) -> Analytics:
    analytics: Analytics = request.app.state.analytics
    return analytics


def _days(days: int) -> int:
    # The page's own links only offer these; anything else reads as the default rather than an error.
    return days if days in WINDOWS else DEFAULT_DAYS


@router.get("/overview")
async def overview_page(request: Request, session: Admin, days: Days = DEFAULT_DAYS) -> HTMLResponse:
    days = _days(days)
    with hub_errors():
        view = await run_in_threadpool(overview, _analytics(request), days)
    context = {"view": view, "windows": WINDOWS, "duration": duration, "percent": percent}
    return render(request, "overview.html", session, context)


def _svg(svg: bytes) -> Response:
    return Response(svg, media_type=charts.MEDIA_TYPE, headers=charts.CHART_HEADERS)


@router.get("/overview/incidents-per-week.svg")
async def incidents_per_week(request: Request, session: Admin) -> Response:
    trends = await run_in_threadpool(_weekly, _analytics(request))
    series = {
        severity.value: [getattr(bucket.by_severity, severity.value) for bucket in trends.buckets]
        for severity in Severity
    }
    labels = [bucket.label.isoformat() for bucket in trends.buckets]
    return _svg(
        charts.stacked_bars(
            "Incidents per week, by severity", labels, series, x_title="week of (UTC)", y_title="incidents"
        )
    )


@router.get("/overview/mttr-trend.svg")
async def mttr_trend(request: Request, session: Admin) -> Response:
    analytics = _analytics(request)
    trends = await run_in_threadpool(_weekly, analytics)
    values = [None if b.mttr_seconds is None else round(b.mttr_seconds / 60, 1) for b in trends.buckets]
    return _svg(
        charts.line(
            "MTTR per week",
            [bucket.label.isoformat() for bucket in trends.buckets],
            values,
            name="MTTR",
            y_title="minutes",
            target=analytics.targets.mttr_minutes,
        )
    )


@router.get("/overview/availability.svg")
async def availability(request: Request, session: Admin, days: Days = DEFAULT_DAYS) -> Response:
    analytics = _analytics(request)
    view = await run_in_threadpool(_reliability, analytics, _days(days))
    services = view.services
    lowest = min((s.availability_percent for s in services), default=100.0)
    return _svg(
        charts.ranked_bars(
            f"Availability per service, last {_days(days)} days (target {view.target_percent:g} %)",
            [s.name for s in services] or ["(no incident)"],
            [s.availability_percent for s in services] or [100.0],
            unit="%",
            colours=[BAND_COLOURS[s.band] for s in services] or [BAND_COLOURS[Band.EXCELLENT]],
            floor=_floor(lowest),
        )
    )


def _weekly(analytics: Analytics) -> TrendsReport:
    end = utcnow()
    return analytics.trends(end - timedelta(weeks=TREND_WEEKS), end, size=BucketSize.WEEK)


def _reliability(analytics: Analytics, days: int) -> ReliabilityReport:
    end = utcnow()
    return analytics.reliability(end - timedelta(days=days), end)


def _floor(lowest: float) -> float:
    """Where the availability axis starts: the next 5 % step under the lowest, so 99.2 and 99.9 differ."""
    return max(0.0, min(95.0, (lowest // 5) * 5))
