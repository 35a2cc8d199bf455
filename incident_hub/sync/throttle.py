"""A connector's pace of vendor calls: a token bucket at its configured rate, paused whenever the vendor
answers 429 for as long as the vendor asked.

A 429 is back-pressure, not a failure: the vendor is healthy and has told the hub how fast it may go. The
pause holds back every call of that connector (the call that got the 429 and those behind it are handed
back as `RateLimited`, to go again once the pause is over), leaves the other connectors alone, and never
reaches the circuit breaker or a delivery's attempt budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from aiolimiter import AsyncLimiter

from incident_hub.clock import utcnow
from incident_hub.metrics import RATE_LIMIT_PAUSES
from incident_hub.sync.retry import RateLimited

T = TypeVar("T")

# Without a wait from the vendor, pauses double from the first up to the longest, and start over after a
# call goes through.
FIRST_UNHINTED_PAUSE = 1.0
LONGEST_UNHINTED_PAUSE = 60.0
# A vendor's wait is honoured up to this long: ServiceNow's hourly windows reset within the hour; a
# longer wait is taken for a bad header.
LONGEST_PAUSE = 3600.0


class Throttle:
    """One connector's calls: at most `rate` a second (bursts of up to one second's worth), none while
    paused after a 429."""

    def __init__(self, connector_id: str, rate: float) -> None:
        self.connector_id = connector_id
        self.rate = rate
        self._bucket = _bucket(rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.resume_at: datetime | None = None
        self._unhinted = 0

    def set_rate(self, rate: float) -> None:
        """Follow a changed configuration; a pause in force stays."""
        if rate != self.rate:
            self.rate, self._bucket = rate, _bucket(rate)

    def paused_until(self) -> datetime | None:
        """When the pause in force ends, or None when calls may go."""
        resume_at = self.resume_at
        return resume_at if resume_at is not None and resume_at > utcnow() else None

    def pause(self, wait: float | None) -> datetime:
        """Hold back every call for `wait` seconds (None: the vendor gave no wait) and return when calls
        start again. Overlapping pauses (several calls in flight answered 429) end at the latest."""
        if wait is None:
            wait = min(FIRST_UNHINTED_PAUSE * 2**self._unhinted, LONGEST_UNHINTED_PAUSE)
            self._unhinted += 1
        until = utcnow() + timedelta(seconds=min(wait, LONGEST_PAUSE))
        if self.paused_until() is None:
            RATE_LIMIT_PAUSES.labels(self.connector_id).inc()
        if self.resume_at is None or until > self.resume_at:
            self.resume_at = until
        return self.resume_at

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run one vendor call when the bucket has a token; while paused, raise `RateLimited` (nothing
        sent) at once rather than wait, so the delivery frees its place until the pause is over."""
        self._hold()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # aiolimiter's waiters belong to one event loop (a hub restarted in the same process, tests).
            self._loop, self._bucket = loop, _bucket(self.rate)
        await self._bucket.acquire()
        self._hold()  # a 429 may have come back while this call waited for its token
        try:
            result = await work()
        except RateLimited as error:
            if error.status_code is not None:
                error.resume_at = self.pause(error.retry_after)
            raise
        self._unhinted = 0
        return result

    def _hold(self) -> None:
        resume_at = self.paused_until()
        if resume_at is not None:
            raise RateLimited(
                f"connector {self.connector_id} is rate limited until {resume_at.isoformat()}",
                status_code=None,
                resume_at=resume_at,
            )


def _bucket(rate: float) -> AsyncLimiter:
    # aiolimiter's leaky bucket needs at least one token of capacity: below one call a second, one call
    # per 1/rate seconds.
    return AsyncLimiter(max(rate, 1.0), time_period=max(rate, 1.0) / rate)
