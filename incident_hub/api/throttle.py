"""Throttling of failed authentication per client address (bad API keys, refused admin logins).

Each address has a bucket of `burst` failures that refills at `per_second`; an address whose bucket is
empty is answered 429 with `Retry-After` until it refills. Keys are 256-bit random, so this is not about
guessing them: it keeps a flood of bad keys from costing a database lookup and a log line each. A key
verified recently (in the verification cache) still works from a throttled address, so clients behind a
shared address or proxy keep working while another client there is refused.

Per process: with several replicas each counts on its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from incident_hub.errors import HubError

log = logging.getLogger(__name__)


class Throttled(HubError):
    status = 429
    title = "Too many failed attempts"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float
    announced: bool = False


class FailureThrottle:
    def __init__(
        self,
        burst: int = 10,
        per_second: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many addresses are tracked."""
        return len(self._buckets)

    def _refilled(self, address: str, now: float) -> _Bucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                # Forget full buckets first (they hold no state worth keeping), then everything.
                full = [a for a, b in self._buckets.items() if b.tokens >= self.burst]
                for forgotten in full or list(self._buckets):
                    del self._buckets[forgotten]
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.announced = False
        return bucket

    def retry_after(self, address: str | None) -> float | None:
        """Seconds until `address` may try again, or None when it may try now."""
        if address is None:
            return None
        with self._lock:
            bucket = self._refilled(address, self.clock())
            if bucket.tokens >= 1:
                return None
            return (1 - bucket.tokens) / self.per_second

    def failed(self, address: str | None, what: str) -> None:
        """Count one failure; logs once when the address starts being throttled."""
        if address is None:
            return
        with self._lock:
            bucket = self._refilled(address, self.clock())
            bucket.tokens = max(0.0, bucket.tokens - 1)
            if bucket.tokens >= 1 or bucket.announced:
                return
            bucket.announced = True
        log.warning("throttling failed attempts", extra={"remote": address, "what": what})

    def refuse(self, address: str | None) -> None:
        """Raise `Throttled` when `address` is out of attempts."""
        wait = self.retry_after(address)
        if wait is not None:
            raise Throttled(
                f"too many failed attempts from {address}; try again in {math.ceil(wait)} s", wait
            )
