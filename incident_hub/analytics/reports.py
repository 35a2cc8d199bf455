"""Every report behind one object holding the database and the settings: what the API, a page or a
metrics collector call. Windows and time zones are checked here (bad ones raise `InvalidRequest`)."""

from __future__ import annotations

from datetime import datetime

from incident_hub.analytics import now as now_report
from incident_hub.analytics import recurrence, reliability, response_times, trends
from incident_hub.analytics.recurrence import RecurrenceReport
from incident_hub.analytics.reliability import ReliabilityReport, Weights
from incident_hub.analytics.response_times import GroupBy, ResponseTimesReport, Targets
from incident_hub.analytics.trends import TrendsReport
from incident_hub.analytics.windows import BucketSize, buckets, window, zone
from incident_hub.clock import utcnow
from incident_hub.settings import Settings
from incident_hub.store.db import Database


class Analytics:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @property
    def targets(self) -> Targets:
        return Targets(
            mtta_minutes=self.settings.analytics_mtta_target_minutes,
            mttd_minutes=self.settings.analytics_mttd_target_minutes,
            mttr_minutes=self.settings.analytics_mttr_target_minutes,
        )

    def now(self) -> now_report.NowReport:
        return now_report.report(self.db, utcnow())

    def response_times(
        self, start: datetime | None = None, end: datetime | None = None, group_by: GroupBy | None = None
    ) -> ResponseTimesReport:
        at = utcnow()
        return response_times.report(
            self.db,
            window(start, end, at),
            group_by,
            sla=self.settings.sla_policy(),
            targets=self.targets,
            now=at,
        )

    def reliability(self, start: datetime | None = None, end: datetime | None = None) -> ReliabilityReport:
        at = utcnow()
        return reliability.report(
            self.db,
            window(start, end, at),
            weights=Weights(
                partial_outage=self.settings.analytics_partial_outage_weight,
                degraded=self.settings.analytics_degraded_weight,
            ),
            target=self.settings.analytics_availability_target,
            now=at,
        )

    def trends(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        tz: str = "UTC",
        size: BucketSize = BucketSize.DAY,
    ) -> TrendsReport:
        at = utcnow()
        local = zone(tz)
        span = window(start, end, at, days=28 if size is BucketSize.DAY else 84)
        return trends.report(self.db, span, buckets(span, local, size), tz=tz, size=size, now=at)

    def recurrence(self, start: datetime | None = None, end: datetime | None = None) -> RecurrenceReport:
        at = utcnow()
        return recurrence.report(
            self.db,
            window(start, end, at, days=30),
            target=self.settings.analytics_recurrence_target_percent,
            now=at,
        )
