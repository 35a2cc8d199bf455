"""Report windows and calendar buckets. A window is half-open, [start, end), in UTC; day and week buckets
are local calendar days (weeks from Monday) in an IANA time zone, so a bucket lasts 23 or 25 hours on the
days the clocks change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from incident_hub.clock import as_utc
from incident_hub.errors import InvalidRequest

DEFAULT_DAYS = 7
# Beyond these the arithmetic of the reports (90 days back, a day forward) would leave what datetimes hold.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 1000


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def until(self, now: datetime) -> Window:
        """The part of the window that has happened by `now` (availability is not known beyond it)."""
        return Window(self.start, min(self.end, max(now, self.start)))


def window(
    start: datetime | None, end: datetime | None, now: datetime, *, days: int = DEFAULT_DAYS
) -> Window:
    """The window a report asked for: `end` defaults to now, `start` to `days` before `end`."""
    try:
        end = as_utc(end) if end is not None else now
        start = as_utc(start) if start is not None else None
    except OverflowError as error:  # 9999-12-31T23:59-23:59 is past what a datetime holds in UTC
        raise InvalidRequest(
            f"`from` and `to` must lie between {EARLIEST.date()} and {LATEST.date()}"
        ) from error
    for name, value in (("from", start), ("to", end)):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise InvalidRequest(f"`{name}` must lie between {EARLIEST.date()} and {LATEST.date()}")
    if start is None:
        start = max(end - timedelta(days=days), EARLIEST)
    if start >= end:
        raise InvalidRequest(f"`from` ({start.isoformat()}) must be before `to` ({end.isoformat()})")
    return Window(start, end)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. `Europe/Berlin`): only names of the time zone database, never a
    path or a file such as `localtime`."""
    unknown = InvalidRequest(f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin")
    if name not in _zone_names():
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise unknown from error


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # `localtime` and `posixrules` are files some systems keep beside the database, not zone names.
    return frozenset((available_timezones() | {"UTC"}) - {"localtime", "posixrules"})


class BucketSize(StrEnum):
    DAY = "day"
    WEEK = "week"


@dataclass(frozen=True)
class Bucket:
    """One local day or week: `label` is its first local date; `start`/`end` the UTC instants of its
    local midnights, cut to the report's window."""

    label: date
    start: datetime
    end: datetime


def buckets(span: Window, tz: ZoneInfo, size: BucketSize) -> list[Bucket]:
    """The local days (or Monday-started weeks) that `span` touches, in order."""
    step = timedelta(days=7 if size is BucketSize.WEEK else 1)
    first = span.start.astimezone(tz).date()
    if size is BucketSize.WEEK:
        first -= timedelta(days=first.weekday())
    found: list[Bucket] = []
    day = first
    while True:
        start = _midnight(day, tz)
        if start >= span.end:
            return found
        if len(found) == MAX_BUCKETS:
            raise InvalidRequest(f"the window spans more than {MAX_BUCKETS} {size.value}s: narrow it")
        end = _midnight(day + step, tz)
        found.append(Bucket(day, max(start, span.start), min(end, span.end)))
        day += step


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant of `day`'s local midnight (where midnight is skipped, the first instant after)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
