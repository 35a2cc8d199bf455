"""The hub's only retry layer: every outbound call goes through `RetryPolicy` (tenacity).

Retryable: network errors, timeouts, 408, 425 and 5xx; `Retry-After` on 503 is honoured (capped).
Rate limited: 429 is back-pressure, not a failure: a `RateLimited` carrying the wait the vendor asked for
(each connector reads it from its vendor's headers), which pauses that connector's calls (`sync/throttle.py`)
and spends none of a delivery's attempts.
Permanent: any other 4xx — retrying a request the vendor has refused would only repeat the refusal.

A write whose outcome is unknown (the request may have reached the vendor, and no answer says whether it
was applied: a read timeout, a connection reset after sending, a 5xx) is an `OutcomeUnknown`: the push
that made it looks for the object before it writes again (see `sync/in_doubt.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import requests
import urllib3
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from incident_hub.clock import utcnow

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DeliveryError(Exception):
    """An outbound call failed; `status_code` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetryableDeliveryError(DeliveryError):
    """Worth trying again; `retry_after` is the server's own hint in seconds."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class RateLimited(RetryableDeliveryError):
    """The vendor asked the hub to slow down (a 429), or the connector is still paused after one and the
    call was not sent (`status_code` None). `retry_after` is the vendor's wait in seconds, None when it
    gave none; `resume_at` (UTC) is when the connector's calls start again, once the throttle knows."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        retry_after: float | None = None,
        resume_at: datetime | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)
        self.resume_at = resume_at


HeaderGetter = Callable[[str], str | None]
RateLimitWait = Callable[[HeaderGetter], float | None]
"""Reads the wait a vendor asks for from the headers of its 429 (seconds; None: it gave none)."""


class HeldDelivery(DeliveryError):
    """The target is paused (circuit breaker): stop trying, keep the delivery pending, in its place."""


class PermanentDeliveryError(DeliveryError):
    """Will fail the same way every time until something is fixed: goes straight to the dead letters."""


class OutcomeUnknown(RetryableDeliveryError):
    """A write may have been applied by the vendor without the hub hearing so: repeating it blindly could
    make a second object."""


class InDoubt(DeliveryError):
    """The delivery waits, without spending its retry budget, until `look_at` (UTC): an earlier create's
    outcome is unknown and the vendor is looked at again then."""

    def __init__(self, message: str, *, look_at: datetime) -> None:
        super().__init__(message)
        self.look_at = look_at


# Failures that happen before a request leaves the hub: the vendor cannot have applied it.
_NOT_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.SSLError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.LocationParseError,
)


def may_have_been_sent(error: BaseException) -> bool:
    """Whether a transport failure may have happened after the request reached the server (a read
    timeout, a reset or closed connection), as opposed to before it left (refused, no route, TLS).

    Looks through the exception's causes and the wrapped errors of requests and urllib3
    (`ConnectionError(MaxRetryError(reason=NewConnectionError))`); anything not known to be unsent is
    taken as possibly sent."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NOT_SENT):
            return False
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return True


@contextmanager
def write_outcome() -> Iterator[None]:
    """Around one vendor call that makes an object: a failure that leaves unknown whether the vendor made
    it — a 5xx, or a transport failure after the request may have been sent — leaves as `OutcomeUnknown`.
    A refusal (4xx, 429) or a failure before sending passes through unchanged."""
    try:
        yield
    except (OutcomeUnknown, PermanentDeliveryError):
        raise
    except RetryableDeliveryError as error:
        status = error.status_code
        if (status is not None and status >= 500) or (status is None and may_have_been_sent(error)):
            raise OutcomeUnknown(f"outcome unknown: {error}", status_code=status) from error
        raise
    except (httpx.TransportError, requests.RequestException, urllib3.exceptions.HTTPError) as error:
        if may_have_been_sent(error):
            raise OutcomeUnknown(f"outcome unknown: {type(error).__name__}: {error}") from error
        raise


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return seconds_until(when, now)


def seconds_until(when: datetime, now: datetime | None = None) -> float:
    """Seconds from now (the hub's clock) until `when` (naive: UTC), never less than 0."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def parse_seconds(value: str | None) -> float | None:
    """A header holding a number of seconds ("30", "1.5"), or None."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def retry_after_wait(header: HeaderGetter) -> float | None:
    """The standard reading of a 429: its `Retry-After` (delta-seconds or HTTP-date)."""
    return parse_retry_after(header("retry-after"))


def raise_for_response(response: httpx.Response, rate_limit_wait: RateLimitWait = retry_after_wait) -> None:
    """Turn a non-2xx response into the typed error the retry policy understands."""
    raise_for_status(
        response.status_code, response.text, response.headers.get, response.request.url.host, rate_limit_wait
    )


def raise_for_status(
    status: int,
    text: str,
    header: HeaderGetter,
    host: str = "vendor",
    rate_limit_wait: RateLimitWait = retry_after_wait,
) -> None:
    """The same for any client library's response: its status, body text and a header getter. A 429 is
    `RateLimited`, its wait read by `rate_limit_wait` (the vendor's own headers)."""
    if 200 <= status < 300:
        return
    message = f"HTTP {status} from {host}: {text[:500]}"
    if status == 429:
        raise RateLimited(message, retry_after=rate_limit_wait(header))
    if status in RETRYABLE_STATUS:
        raise RetryableDeliveryError(
            message, status_code=status, retry_after=parse_retry_after(header("retry-after"))
        )
    raise PermanentDeliveryError(message, status_code=status)


def classify_transport_error(error: httpx.HTTPError) -> RetryableDeliveryError:
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    return RetryableDeliveryError(f"request {kind}: {type(error).__name__}: {error}")


class _wait_retry_after_or(wait_base):
    """The server's `Retry-After` when it gave one (capped), else the fallback backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(error, RetryableDeliveryError) and error.retry_after is not None:
            return min(error.retry_after, self.cap)
        return float(self.fallback(retry_state))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (a random pause up to initial * 2^n, capped), `Retry-After`
    honoured, a fixed attempt budget."""

    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    retry_after_cap: float = 300.0

    def retrying(
        self,
        *,
        attempts_made: int = 0,
        before_sleep: Callable[[RetryCallState], Awaitable[None]] | None = None,
    ) -> AsyncRetrying:
        """A tenacity loop for the attempts still left in the budget (earlier runs may have used some)."""
        remaining = max(1, self.max_attempts - attempts_made)
        options: dict[str, Any] = {}
        if before_sleep is not None:
            options["before_sleep"] = before_sleep
        return AsyncRetrying(
            stop=stop_after_attempt(remaining),
            wait=_wait_retry_after_or(
                wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff),
                self.retry_after_cap,
            ),
            retry=retry_if_exception_type(RetryableDeliveryError),
            reraise=True,
            **options,
        )
