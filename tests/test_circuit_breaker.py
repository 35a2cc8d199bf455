"""The circuit breaker: failures in a row pause a connector; after the cool-down it is tried again, and one
more failure pauses it again (half open) until a call succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from incident_hub import clock
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, SERVICE_ID
from incident_hub.store import migrate
from incident_hub.store.db import Database

PAGERDUTY = ConnectorConfig(
    id="pagerduty",
    kind="pagerduty",
    base_url="https://api.pagerduty.example",
    options={"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
)


@pytest.fixture
def registry(database_url: str) -> Iterator[ConnectorRegistry]:
    db = Database(database_url)
    migrate.upgrade(db)
    registry = ConnectorRegistry(db, failure_threshold=3, cool_down_seconds=60)
    registry.upsert(PAGERDUTY)
    yield registry
    db.dispose()


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    current = [datetime(2026, 12, 7, 4, 0, tzinfo=UTC)]
    clock.use_clock(lambda: current[0])
    yield current
    clock.use_clock(None)


def test_a_failure_after_the_cool_down_pauses_the_connector_again(
    registry: ConnectorRegistry, now: list[datetime]
) -> None:
    assert [registry.record_failure("pagerduty", "HTTP 503") for _ in range(3)] == [False, False, True]
    assert registry.state("pagerduty").paused(now[0])

    # The vendor is still down when the cool-down ends: the first failed try pauses it for another one.
    now[0] += timedelta(seconds=61)
    assert not registry.state("pagerduty").paused(now[0])
    assert registry.record_failure("pagerduty", "HTTP 503") is True
    state = registry.state("pagerduty")
    assert state.paused(now[0]) and state.paused_until is not None
    assert clock.as_utc(state.paused_until) == now[0] + timedelta(seconds=60)

    # Back up: a success closes it.
    now[0] += timedelta(seconds=61)
    registry.record_success("pagerduty")
    state = registry.state("pagerduty")
    assert state.paused_until is None and state.consecutive_failures == 0
    assert registry.record_failure("pagerduty", "HTTP 503") is False


def test_failures_while_paused_do_not_extend_the_pause(
    registry: ConnectorRegistry, now: list[datetime]
) -> None:
    for _ in range(3):
        registry.record_failure("pagerduty", "HTTP 503")
    until = registry.state("pagerduty").paused_until
    now[0] += timedelta(seconds=30)
    assert registry.record_failure("pagerduty", "HTTP 503") is False
    assert registry.state("pagerduty").paused_until == until
