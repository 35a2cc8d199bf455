"""Time is UTC and timezone-aware everywhere in the hub."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _system() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _system


def utcnow() -> datetime:
    return _source()


def use_clock(source: Callable[[], datetime] | None) -> None:
    """Read the time from `source` from now on (a test's fake clock); None: the system clock again."""
    global _source
    _source = source if source is not None else _system


def as_utc(value: datetime) -> datetime:
    """Naive values are taken as UTC (SQLite hands them back naive); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
