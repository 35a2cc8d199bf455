"""One HTTP exchange at a time (respx): how responses are classified for the retry policy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx
from tenacity import RetryCallState

from incident_hub.sync.dispatcher import ClaimedDelivery
from incident_hub.sync.retry import (
    PermanentDeliveryError,
    RetryableDeliveryError,
    RetryPolicy,
    classify_transport_error,
    parse_retry_after,
    raise_for_response,
)

URL = "https://hooks.example.test/incidents"


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", URL))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    with pytest.raises(RetryableDeliveryError) as raised:
        raise_for_response(_response(status))
    assert raised.value.status_code == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_refusals_are_permanent(status: int) -> None:
    with pytest.raises(PermanentDeliveryError):
        raise_for_response(_response(status))


def test_success_passes() -> None:
    raise_for_response(_response(202))


def test_retry_after_seconds_and_http_date_are_understood() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    with pytest.raises(RetryableDeliveryError) as raised:
        raise_for_response(_response(429, {"Retry-After": "12"}))
    assert raised.value.retry_after == 12.0


def test_network_failures_are_retryable() -> None:
    error = classify_transport_error(httpx.ConnectTimeout("slow", request=httpx.Request("POST", URL)))
    assert "timed out" in str(error)


def _state_after(error: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=RetryPolicy().retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_wait_honours_retry_after_up_to_the_cap() -> None:
    policy = RetryPolicy(retry_after_cap=60.0)
    wait = policy.retrying().wait
    assert wait(_state_after(RetryableDeliveryError("x", retry_after=9.0), 1)) == 9.0
    assert wait(_state_after(RetryableDeliveryError("x", retry_after=900.0), 1)) == 60.0


def test_backoff_grows_and_stays_under_the_maximum() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0)
    wait = policy.retrying().wait
    for attempt in range(1, 12):
        pause = wait(_state_after(RetryableDeliveryError("x"), attempt))
        assert 0.0 <= pause <= 4.0
        assert pause <= 0.5 * 2**attempt


def test_retrying_counts_attempts_made_before_a_restart() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.0, max_backoff=0.0)
    calls = 0

    async def run() -> None:
        nonlocal calls
        async for attempt in policy.retrying(attempts_made=3):
            with attempt:
                calls += 1
                raise RetryableDeliveryError("still down")

    with pytest.raises(RetryableDeliveryError):
        asyncio.run(run())
    assert calls == 2


@respx.mock
def test_subscriber_post_is_signed_and_classified() -> None:
    from incident_hub.sync.subscribers import SubscriberTarget, event_body

    class _Target(SubscriberTarget):
        def _subscription(self, subscription_id: str) -> tuple[str, str] | None:
            return URL, "k" * 16

    route = respx.post(URL).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "3"}), httpx.Response(200)]
    )
    delivery = ClaimedDelivery(
        id=1,
        event_id="e1",
        event_type="incident_created",
        payload={"event_id": "e1", "incident_created": {"title": "t"}},
        target_kind="subscriber",
        target_id="s1",
        ordering_key="i1",
        attempts=0,
    )

    async def run() -> int | None:
        async with httpx.AsyncClient() as client:
            target = _Target(db=None, client=client)  # type: ignore[arg-type]
            with pytest.raises(RetryableDeliveryError) as raised:
                await target.deliver(delivery)
            assert raised.value.retry_after == 3.0
            return await target.deliver(delivery)

    assert asyncio.run(run()) == 200
    sent = route.calls.last.request
    assert sent.content == event_body(delivery.payload)
    assert sent.headers["X-Incident-Hub-Signature"].startswith("sha256=")
    assert sent.headers["X-Incident-Hub-Event-Id"] == "e1"
