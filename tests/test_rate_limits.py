"""A 429 is back-pressure, not failure: it pauses that connector for the wait the vendor asks, spends none of
a delivery's attempts and never opens the circuit breaker; a broken vendor (5xx) still does.

Time is a fake clock: the hub's pauses and due times move only when a test advances it, and the dispatcher
is driven by hand (`drain`), so no test waits for a pause to pass.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import respx

from incident_hub import clock
from incident_hub.commands import IncidentDraft, StatusChange
from incident_hub.connectors import jira, opsgenie, pagerduty, servicenow
from incident_hub.hub import Hub
from incident_hub.model import ExternalRef, Status
from incident_hub.sandbox.common import LedgerEntry
from incident_hub.sandbox.world import VENDORS, Side, World, connect
from incident_hub.store.tables import DeliveryRow
from incident_hub.sync.dispatcher import DELIVERED, PENDING
from incident_hub.sync.retry import DeliveryError, RateLimited
from tests.conftest import test_settings


@dataclass
class FakeClock:
    now: datetime

    def read(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock(datetime.now(UTC))
    clock.use_clock(fake.read)
    yield fake
    clock.use_clock(None)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(test_settings(database_url, tmp_path, connector_failure_threshold=5))
    hub.migrate()
    yield hub
    asyncio.run(hub.stop())


def connected(stack: ExitStack, hub: Hub, tmp_path: Path, *vendors: str) -> World:
    # Nothing listens for the sandboxes' webhooks: these tests watch only what the hub pushes.
    return connect(stack, hub, "http://127.0.0.1:9", tmp_path / "sandboxes", vendors)


def drain(hub: Hub) -> None:
    asyncio.run(hub.dispatcher.drain())


def open_incidents(hub: Hub, count: int) -> list[str]:
    return [str(hub.incidents.create(IncidentDraft(title=f"Backlog {n}")).incident.id) for n in range(count)]


def deliveries(hub: Hub, connector_id: str) -> list[DeliveryRow]:
    with hub.db.read() as session:
        rows = session.query(DeliveryRow).filter(DeliveryRow.target_id == connector_id).all()
        session.expunge_all()
    return rows


def creates(side: Side) -> list[LedgerEntry]:
    """The vendor's create calls that made an object."""
    call = side.sandbox.state.create_call
    assert call is not None
    found = side.ledger.entries(direction="in", method=call[0])
    return [e for e in found if re.fullmatch(call[1], e.path) and (e.status or 500) < 400]


@pytest.mark.parametrize("storm", [5, 10])
def test_a_429_storm_pauses_the_connector_and_never_opens_the_breaker(
    storm: int, hub: Hub, tmp_path: Path, fake_clock: FakeClock
) -> None:
    with ExitStack() as stack:
        side = connected(stack, hub, tmp_path, "pagerduty")["pagerduty"]
        knobs = side.sandbox.state.knobs
        knobs.rate_limit_next, knobs.retry_after_seconds = storm, 30
        incidents = open_incidents(hub, 3)

        drain(hub)
        # Paused for the vendor's 30 s: nothing more is sent until the clock gets there.
        assert creates(side) == []
        assert all(d.state == PENDING and d.attempts == 0 for d in deliveries(hub, "pagerduty"))
        paused_until = hub.dispatcher.targets["connector"].rate_limited_until("pagerduty")  # type: ignore[attr-defined]
        assert paused_until == fake_clock.now + timedelta(seconds=30)
        sent = len(side.ledger.entries(direction="in"))
        fake_clock.advance(29)
        drain(hub)
        assert len(side.ledger.entries(direction="in")) == sent

        for _ in range(storm):
            fake_clock.advance(31)
            drain(hub)

        state = hub.connectors.state("pagerduty")
        assert (state.paused_until, state.consecutive_failures) == (None, 0)
        # Every incident made once, and the storm (more 429s than the 4 attempts a delivery has) spent none
        # of any delivery's attempts: the one each counts is the one that went through.
        assert len(creates(side)) == len(incidents) == len(side.refs())
        assert [(d.state, d.attempts) for d in deliveries(hub, "pagerduty")] == [(DELIVERED, 1)] * 3
        assert [e.status for e in side.ledger.entries(direction="in")].count(429) == storm


def test_a_broken_vendor_still_opens_the_breaker(hub: Hub, tmp_path: Path, fake_clock: FakeClock) -> None:
    with ExitStack() as stack:
        side = connected(stack, hub, tmp_path, "pagerduty")["pagerduty"]
        # More 503s than the test can use: no call succeeds (a success would reset the count). Three in a
        # row open it here: with four attempts per delivery, how two deliveries' retries and in-doubt
        # looks interleave decides whether a fifth failure comes before both are dead.
        side.sandbox.state.knobs.fail_next = [503] * 50
        hub.connectors.failure_threshold = 3
        open_incidents(hub, 2)

        # Retries wait out their (jittered) back-off and in-doubt looks their schedule: let the clock run
        # until the fifth failure in a row, not for one round only.
        for _ in range(40):
            drain(hub)
            if hub.connectors.state("pagerduty").paused_until is not None:
                break
            fake_clock.advance(30)

        state = hub.connectors.state("pagerduty")
        assert state.paused_until is not None and "3 failures in a row" in (state.pause_reason or "")
        assert creates(side) == []


def test_other_connectors_keep_delivering_while_one_is_rate_limited(
    hub: Hub, tmp_path: Path, fake_clock: FakeClock
) -> None:
    with ExitStack() as stack:
        world = connected(stack, hub, tmp_path, "pagerduty", "jira")
        pd, jira_side = world["pagerduty"], world["jira"]
        knobs = pd.sandbox.state.knobs
        knobs.rate_limit_next, knobs.retry_after_seconds = 100, 600
        incidents = open_incidents(hub, 4)

        drain(hub)

        assert len(creates(jira_side)) == len(incidents)
        assert creates(pd) == []
        # Only the calls already on their way when the first 429 came back reached PagerDuty.
        in_flight = hub.connectors.get("pagerduty").config.max_concurrency
        assert len(pd.ledger.entries(direction="in")) <= in_flight
        knobs.rate_limit_next = 0
        fake_clock.advance(601)
        drain(hub)
        assert len(creates(pd)) == len(incidents)
        assert {d.state for d in deliveries(hub, "pagerduty") + deliveries(hub, "jira")} == {DELIVERED}


def test_a_delivery_rate_limited_goes_again_before_the_later_changes_of_its_incident(
    hub: Hub, tmp_path: Path, fake_clock: FakeClock
) -> None:
    with ExitStack() as stack:
        side = connected(stack, hub, tmp_path, "pagerduty")["pagerduty"]
        side.sandbox.state.knobs.rate_limit_next = 1
        (incident,) = open_incidents(hub, 1)
        drain(hub)
        hub.incidents.change_status(incident, StatusChange(status=Status.RESOLVED))
        drain(hub)
        assert creates(side) == []

        fake_clock.advance(2)
        drain(hub)

        calls = [(e.method, e.status) for e in side.ledger.entries(direction="in")]
        assert calls[0][1] == 429
        # Made with the incident as it is now, then resolved: in order, once each.
        assert [call for call in calls[1:] if call[0] != "GET"] == [("POST", 201), ("PUT", 200)]
        assert [d.state for d in deliveries(hub, "pagerduty")] == [DELIVERED, DELIVERED]


# ---- each vendor's 429, as its sandbox answers it when it enforces a limit -------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_connector_reads_its_vendors_wait_from_an_enforced_limit(
    vendor: str, tmp_path: Path, fake_clock: FakeClock
) -> None:
    hub = Hub(test_settings(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path))
    hub.migrate()
    with ExitStack() as stack:
        side = connected(stack, hub, tmp_path, vendor)[vendor]
        knobs = side.sandbox.state.knobs
        # One request a minute: the next one is refused for about a minute.
        knobs.rate_limit, knobs.rate_limit_period_seconds = 1, 60.0
        connector = hub.connectors.get(vendor)
        ref = ExternalRef(connector_id=vendor, external_id="no-such-object")

        with pytest.raises(RateLimited) as limited:
            for _ in range(3):
                try:
                    asyncio.run(connector.fetch(ref))
                except RateLimited:
                    raise
                except DeliveryError:
                    continue

    assert limited.value.status_code == 429
    assert limited.value.retry_after == pytest.approx(60, abs=1)
    refused = [e for e in side.ledger.entries(direction="in") if e.status == 429]
    assert [e.note for e in refused] == ["rate limited"]
    asyncio.run(hub.stop())


def _headers(values: dict[str, str]) -> pagerduty.HeaderGetter:
    lowered = {k.lower(): v for k, v in values.items()}
    return lambda name: lowered.get(name.lower())


def test_each_vendors_reset_header_gives_the_wait_without_a_retry_after(fake_clock: FakeClock) -> None:
    in_90s = fake_clock.now + timedelta(seconds=90)
    assert pagerduty.rate_limit_wait(_headers({"ratelimit-reset": "12"})) == 12
    assert jira.rate_limit_wait(
        _headers({"X-RateLimit-Reset": in_90s.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%MZ")})
    ) == pytest.approx(90 - in_90s.second - in_90s.microsecond / 1e6, abs=0.01)
    assert servicenow.rate_limit_wait(
        _headers({"X-RateLimit-Reset": str(in_90s.timestamp())})
    ) == pytest.approx(90)
    assert opsgenie.rate_limit_wait(_headers({"X-RateLimit-Period-In-Sec": "60"})) == 60
    # Retry-After wins where the vendor sends both.
    assert jira.rate_limit_wait(_headers({"Retry-After": "5", "X-RateLimit-Reset": "2099-01-01T00:00Z"})) == 5
    for reads in (pagerduty, jira, servicenow, opsgenie):
        assert reads.rate_limit_wait(_headers({})) is None


@respx.mock
def test_retry_after_as_an_http_date_pauses_the_connector_until_that_date(
    hub: Hub, tmp_path: Path, fake_clock: FakeClock
) -> None:
    until = (fake_clock.now + timedelta(seconds=45)).replace(microsecond=0)
    with ExitStack() as stack:
        side = connected(stack, hub, tmp_path, "servicenow")["servicenow"]
        respx.post(url__startswith=f"{side.sandbox.url}/api/now/table/incident").mock(
            return_value=httpx.Response(
                429, headers={"Retry-After": format_datetime(until, usegmt=True)}, json={"error": {}}
            )
        )
        respx.route(host="127.0.0.1").pass_through()
        open_incidents(hub, 1)

        drain(hub)

        (delivery,) = deliveries(hub, "servicenow")
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == (PENDING, 0, 429)
        assert clock.as_utc(delivery.next_attempt_at) == until
        assert hub.dispatcher.targets["connector"].rate_limited_until("servicenow") == until  # type: ignore[attr-defined]
