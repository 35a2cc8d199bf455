"""Which failed creates leave their outcome unknown: only those that may have reached the vendor."""

from __future__ import annotations

import httpx
import pytest
import requests
import urllib3

from incident_hub.sync.retry import (
    OutcomeUnknown,
    PermanentDeliveryError,
    RetryableDeliveryError,
    classify_transport_error,
    write_outcome,
)

REQUEST = httpx.Request("POST", "https://instance.example/api/now/table/incident")
POOL = urllib3.HTTPSConnectionPool("instance.example")


def _through(error: BaseException) -> BaseException:
    try:
        with write_outcome():
            raise error
    except BaseException as raised:
        return raised
    raise AssertionError("write_outcome swallowed the error")


def _typed(error: Exception) -> RetryableDeliveryError:
    """As a connector types a library failure: the library's exception kept as the cause."""
    try:
        raise RetryableDeliveryError(f"unreachable: {error}") from error
    except RetryableDeliveryError as typed:
        return typed


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out", request=REQUEST),
        httpx.RemoteProtocolError("server disconnected", request=REQUEST),
        classify_transport_error(httpx.ReadError("connection reset", request=REQUEST)),
        _typed(requests.exceptions.ReadTimeout("read timed out")),
        _typed(requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted."))),
        _typed(urllib3.exceptions.ReadTimeoutError(POOL, "/v2/alerts", "read timed out")),
        RetryableDeliveryError("HTTP 503 from instance", status_code=503),
        RetryableDeliveryError("HTTP 500 from instance", status_code=500),
    ],
    ids=str,
)
def test_a_create_that_may_have_reached_the_vendor_has_an_unknown_outcome(error: BaseException) -> None:
    assert isinstance(_through(error), OutcomeUnknown)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused", request=REQUEST),
        httpx.ConnectTimeout("connect timed out", request=REQUEST),
        _typed(
            requests.exceptions.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    POOL, "/rest/api/3/issue", urllib3.exceptions.NewConnectionError(POOL, "refused")
                )
            )
        ),
        _typed(requests.exceptions.ConnectTimeout("connect timed out")),
        RetryableDeliveryError("HTTP 429 from instance", status_code=429, retry_after=1),
        PermanentDeliveryError("HTTP 400 from instance", status_code=400),
    ],
    ids=str,
)
def test_a_create_refused_or_never_sent_is_known_not_applied(error: BaseException) -> None:
    raised = _through(error)
    assert raised is error
    assert not isinstance(raised, OutcomeUnknown)
