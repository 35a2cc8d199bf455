"""Incidents per local day or week by severity, and the MTTR of each bucket's incidents.

The buckets' UTC bounds are worked out here from the time zone (so a day is 23 or 25 hours long where the
clocks change); SQL counts the incidents detected in each, joined against the buckets as a table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Integer, and_, func, literal, select, union_all

from incident_hub.analytics.windows import Bucket, BucketSize, Window
from incident_hub.model import Severity
from incident_hub.store.db import Database
from incident_hub.store.tables import IncidentRow, UtcDateTime


class SeverityCounts(BaseModel):
    SEV1_CRITICAL: int = 0
    SEV2_HIGH: int = 0
    SEV3_MEDIUM: int = 0
    SEV4_LOW: int = 0


class TrendBucket(BaseModel):
    label: date = Field(description="The bucket's first local date (a week's Monday).")
    start: datetime = Field(description="Its local midnight in UTC (cut to the window).")
    end: datetime
    hours: float = Field(description="Its length: 23 or 25 on a day the clocks change.")
    incidents: int
    by_severity: SeverityCounts
    resolved: int = Field(description="Of its incidents, resolved by now.")
    open: int
    mttr_seconds: float | None = Field(description="Mean detection to resolution of its resolved incidents.")


class TrendsReport(BaseModel):
    generated_at: datetime
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    tz: str
    bucket: BucketSize
    buckets: list[TrendBucket]


def report(
    db: Database, span: Window, buckets: list[Bucket], *, tz: str, size: BucketSize, now: datetime
) -> TrendsReport:
    """Per bucket, the incidents detected in it by severity, and their MTTR."""
    found: dict[tuple[int, str], Any] = {}
    if buckets:
        table = union_all(
            *(
                select(
                    literal(index, Integer).label("idx"),
                    literal(bucket.start, UtcDateTime()).label("start"),
                    literal(bucket.end, UtcDateTime()).label("stop"),
                )
                for index, bucket in enumerate(buckets)
            )
        ).cte("buckets")
        query = (
            select(
                table.c.idx,
                IncidentRow.severity,
                func.count().label("incidents"),
                func.count(IncidentRow.resolved_at).label("resolved"),
                func.sum(IncidentRow.time_to_resolve_seconds).label("resolve_seconds"),
            )
            .select_from(table)
            .join(
                IncidentRow,
                and_(IncidentRow.detected_at >= table.c.start, IncidentRow.detected_at < table.c.stop),
            )
            .group_by(table.c.idx, IncidentRow.severity)
        )
        with db.read() as session:
            for row in session.execute(query).mappings():
                found[(int(row["idx"]), row["severity"])] = row
    results = []
    for index, bucket in enumerate(buckets):
        counts: dict[str, int] = {}
        resolved = 0
        resolve_seconds = 0.0
        for severity in Severity:
            counted = found.get((index, severity.value))
            if counted is not None:
                counts[severity.value] = int(counted["incidents"])
                resolved += int(counted["resolved"])
                resolve_seconds += float(counted["resolve_seconds"] or 0.0)
        total = sum(counts.values())
        results.append(
            TrendBucket(
                label=bucket.label,
                start=bucket.start,
                end=bucket.end,
                hours=(bucket.end - bucket.start).total_seconds() / 3600,
                incidents=total,
                by_severity=SeverityCounts(**counts),
                resolved=resolved,
                open=total - resolved,
                mttr_seconds=resolve_seconds / resolved if resolved else None,
            )
        )
    return TrendsReport(generated_at=now, from_=span.start, to=span.end, tz=tz, bucket=size, buckets=results)
