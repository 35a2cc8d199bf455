"""SLA deadlines: the policy itself (pure), and breach detection through the API (both databases)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from incident_hub.hub import Hub
from incident_hub.model import Severity, SlaPolicy
from incident_hub.settings import Settings
from incident_hub.store.tables import EventRow, IncidentRow, TimelineRow

DEFAULT_ACK = {
    Severity.SEV1_CRITICAL: timedelta(minutes=5),
    Severity.SEV2_HIGH: timedelta(minutes=15),
    Severity.SEV3_MEDIUM: timedelta(minutes=60),
    Severity.SEV4_LOW: timedelta(minutes=240),
}
DEFAULT_RESOLVE = {
    Severity.SEV1_CRITICAL: timedelta(hours=2),
    Severity.SEV2_HIGH: timedelta(hours=4),
    Severity.SEV3_MEDIUM: timedelta(hours=24),
    Severity.SEV4_LOW: timedelta(hours=72),
}
DETECTED = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> SlaPolicy:
    """The policy the hub builds from its default settings (environment overrides removed)."""
    monkeypatch.delenv("INCIDENT_HUB_SLA_ACK_MINUTES", raising=False)
    monkeypatch.delenv("INCIDENT_HUB_SLA_RESOLVE_MINUTES", raising=False)
    return Settings().sla_policy()


# ---- the policy -----------------------------------------------------------------------------------------


def test_default_policy_has_the_documented_deadlines(policy: SlaPolicy) -> None:
    assert policy.acknowledge == DEFAULT_ACK
    assert policy.resolve == DEFAULT_RESOLVE


@pytest.mark.parametrize("severity", list(Severity))
def test_next_deadline_is_acknowledge_then_resolve_then_none(policy: SlaPolicy, severity: Severity) -> None:
    ack_due = DETECTED + DEFAULT_ACK[severity]
    resolve_due = DETECTED + DEFAULT_RESOLVE[severity]
    assert policy.deadline(severity, DETECTED, None, None) == ("acknowledge", ack_due)
    acked = DETECTED + timedelta(minutes=1)
    assert policy.deadline(severity, DETECTED, acked, None) == ("resolve", resolve_due)
    assert policy.deadline(severity, DETECTED, acked, acked + SECOND) is None


@pytest.mark.parametrize("severity", list(Severity))
def test_acknowledge_deadline_is_missed_only_after_it_passes(policy: SlaPolicy, severity: Severity) -> None:
    ack_due = DETECTED + DEFAULT_ACK[severity]
    # Not acknowledged yet: due at the deadline itself, missed one second after.
    assert policy.missed(severity, DETECTED, None, None, ack_due) is None
    assert policy.missed(severity, DETECTED, None, None, ack_due + SECOND) == "acknowledge"
    # Acknowledged exactly on time stays met, however late `now` is (before the resolve deadline).
    assert policy.missed(severity, DETECTED, ack_due, None, ack_due + timedelta(minutes=1)) is None
    # Acknowledged late is a miss for good, even once resolved.
    late = ack_due + SECOND
    assert policy.missed(severity, DETECTED, late, None, late) == "acknowledge"
    assert policy.missed(severity, DETECTED, late, late + SECOND, late + timedelta(days=30)) == "acknowledge"


@pytest.mark.parametrize("severity", list(Severity))
def test_resolve_deadline_is_missed_only_after_it_passes(policy: SlaPolicy, severity: Severity) -> None:
    acked = DETECTED + timedelta(minutes=1)
    resolve_due = DETECTED + DEFAULT_RESOLVE[severity]
    assert policy.missed(severity, DETECTED, acked, None, resolve_due) is None
    assert policy.missed(severity, DETECTED, acked, None, resolve_due + SECOND) == "resolve"
    # Resolved on time: never missed afterwards.
    assert policy.missed(severity, DETECTED, acked, resolve_due, resolve_due + timedelta(days=30)) is None
    # Resolved late: missed.
    assert policy.missed(severity, DETECTED, acked, resolve_due + SECOND, resolve_due + SECOND) == "resolve"


def test_more_severe_incidents_have_tighter_deadlines(policy: SlaPolicy) -> None:
    order = list(Severity)
    for more, less in itertools.pairwise(order):
        assert policy.acknowledge[more] < policy.acknowledge[less]
        assert policy.resolve[more] < policy.resolve[less]


offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5))


@st.composite
def sla_histories(draw: st.DrawFn) -> tuple[datetime, datetime | None, datetime | None, datetime]:
    """A detection time, an optional acknowledgement, an optional resolution (which implies an
    acknowledgement at or before it, as the lifecycle guarantees) and a `now` no earlier than either."""
    detected = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
    )
    acknowledged = detected + draw(offsets) if draw(st.booleans()) else None
    resolved = None
    if acknowledged is not None and draw(st.booleans()):
        resolved = acknowledged + draw(offsets)
    latest = resolved or acknowledged or detected
    now = latest + draw(offsets)
    return detected, acknowledged, resolved, now


@hypothesis_settings(deadline=None)  # pure and fast; no flaky deadline on a loaded machine
@given(severity=st.sampled_from(Severity), history=sla_histories())
def test_missed_is_none_exactly_when_both_deadlines_are_met(
    severity: Severity, history: tuple[datetime, datetime | None, datetime | None, datetime]
) -> None:
    policy = SlaPolicy(acknowledge=DEFAULT_ACK, resolve=DEFAULT_RESOLVE)
    detected, acknowledged, resolved, now = history
    ack_due = detected + DEFAULT_ACK[severity]
    resolve_due = detected + DEFAULT_RESOLVE[severity]
    ack_met = acknowledged <= ack_due if acknowledged is not None else now <= ack_due
    resolve_met = resolved <= resolve_due if resolved is not None else now <= resolve_due

    missed = policy.missed(severity, detected, acknowledged, resolved, now)

    assert (missed is None) == (ack_met and resolve_met)
    if not ack_met:
        assert missed == "acknowledge"
    elif not resolve_met:
        assert missed == "resolve"


@hypothesis_settings(deadline=None)  # pure and fast; no flaky deadline on a loaded machine
@given(severity=st.sampled_from(Severity), history=sla_histories())
def test_next_deadline_is_the_one_still_to_meet(
    severity: Severity, history: tuple[datetime, datetime | None, datetime | None, datetime]
) -> None:
    policy = SlaPolicy(acknowledge=DEFAULT_ACK, resolve=DEFAULT_RESOLVE)
    detected, acknowledged, resolved, _now = history
    deadline = policy.deadline(severity, detected, acknowledged, resolved)
    if resolved is not None:
        assert deadline is None
    elif acknowledged is None:
        assert deadline == ("acknowledge", detected + DEFAULT_ACK[severity])
    else:
        assert deadline == ("resolve", detected + DEFAULT_RESOLVE[severity])


# ---- breach detection through the API -------------------------------------------------------------------


def _events(hub: Hub, incident_id: str, kind: str) -> list[dict[str, Any]]:
    with hub.db.read() as session:
        rows = session.scalars(
            select(EventRow).where(EventRow.incident_id == incident_id, EventRow.type == kind)
        ).all()
        return [row.payload for row in rows]


def _sla_timeline(hub: Hub, incident_id: str) -> list[str]:
    with hub.db.read() as session:
        return list(
            session.scalars(
                select(TimelineRow.message).where(
                    TimelineRow.incident_id == incident_id, TimelineRow.author == "sla"
                )
            ).all()
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_late_sev1_is_breached_at_creation_and_reported_once(api: TestClient, hub: Hub) -> None:
    detected = datetime.now(UTC) - timedelta(minutes=10)
    created = api.post(
        "/api/v1/incidents",
        json={"title": "Payments down", "severity": "SEV1_CRITICAL", "detected_at": _iso(detected)},
    )
    assert created.status_code == 201, created.text
    incident = created.json()
    assert incident["sla_breached"] is True
    assert datetime.fromisoformat(incident["detected_at"]) == detected
    # The acknowledge deadline (5 minutes after detection) is still the next one to meet.
    assert datetime.fromisoformat(incident["sla_deadline"]) == detected + timedelta(minutes=5)
    incident_id = incident["id"]

    (breach,) = _events(hub, incident_id, "incident_sla_breached")
    assert set(breach) == {"event_id", "timestamp", "incident_sla_breached"}
    body = breach["incident_sla_breached"]
    assert (body["incident_id"], body["id"]) == (incident["incident_id"], incident_id)
    assert body["deadline_kind"] == "acknowledge"
    assert body["severity"] == "SEV1_CRITICAL"
    assert datetime.fromisoformat(body["deadline"]) == detected + timedelta(minutes=5)
    # Created breached: one version, and the created event already says so.
    assert incident["version"] == 1
    (created_event,) = _events(hub, incident_id, "incident_created")
    assert created_event["incident_created"]["sla_breached"] is True

    # Further changes, and the periodic check, never report it again.
    assert (
        api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": "ACKNOWLEDGED"}).status_code == 200
    )
    assert api.patch(f"/api/v1/incidents/{incident_id}", json={"assignee": "alice"}).status_code == 200
    escalated = api.post(
        f"/api/v1/incidents/{incident_id}/escalate", json={"reason": "db team", "target_team": "dba"}
    )
    assert escalated.status_code == 200, escalated.text
    assert hub.incidents.check_sla() == 0
    assert hub.incidents.check_sla() == 0

    after = api.get(f"/api/v1/incidents/{incident_id}").json()
    assert after["sla_breached"] is True
    assert len(_events(hub, incident_id, "incident_sla_breached")) == 1
    assert _sla_timeline(hub, incident_id) == ["SLA breached: acknowledge deadline missed"]


def test_incident_within_its_deadlines_is_not_breached(api: TestClient, hub: Hub) -> None:
    detected = datetime.now(UTC) - timedelta(minutes=10)
    created = api.post(
        "/api/v1/incidents",
        json={"title": "Slow search", "severity": "SEV3_MEDIUM", "detected_at": _iso(detected)},
    ).json()
    assert created["sla_breached"] is False
    assert datetime.fromisoformat(created["sla_deadline"]) == detected + timedelta(minutes=60)
    incident_id = created["id"]

    acked = api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": "ACKNOWLEDGED"}).json()
    assert acked["sla_breached"] is False
    assert datetime.fromisoformat(acked["sla_deadline"]) == detected + timedelta(hours=24)

    resolved = api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": "RESOLVED"}).json()
    assert resolved["sla_deadline"] is None
    assert resolved["sla_breached"] is False
    assert hub.incidents.check_sla() == 0
    assert _events(hub, incident_id, "incident_sla_breached") == []


def test_open_incident_is_breached_by_the_periodic_check_once(api: TestClient, hub: Hub) -> None:
    created = api.post(
        "/api/v1/incidents",
        json={"title": "Queue backlog", "severity": "SEV2_HIGH", "assigned_team": "queues"},
    ).json()
    assert created["sla_breached"] is False
    incident_id = created["id"]
    # Let time pass: move detection 20 minutes back, past SEV2's 15-minute acknowledge deadline,
    # without touching the breach flag (as if the hub had simply not looked since).
    with hub.db.write() as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        row.detected_at -= timedelta(minutes=20)
        assert row.sla_deadline is not None
        row.sla_deadline -= timedelta(minutes=20)

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        hub.incidents.check_sla()  # the hub's own watcher may get there first; either way it is marked
        if api.get(f"/api/v1/incidents/{incident_id}").json()["sla_breached"]:
            break
        time.sleep(0.05)
    incident = api.get(f"/api/v1/incidents/{incident_id}").json()
    assert incident["sla_breached"] is True
    assert incident["version"] == created["version"] + 1
    assert hub.incidents.check_sla() == 0
    (breach,) = _events(hub, incident_id, "incident_sla_breached")
    assert breach["incident_sla_breached"]["deadline_kind"] == "acknowledge"
    assert _sla_timeline(hub, incident_id) == ["SLA breached: acknowledge deadline missed"]
    # Only open incidents are watched: a resolved one with a past deadline is left alone.
    other = api.post("/api/v1/incidents", json={"title": "Done", "severity": "SEV2_HIGH"}).json()
    api.put(f"/api/v1/incidents/{other['id']}/status", json={"status": "RESOLVED"})
    with hub.db.write() as session:
        row = session.get(IncidentRow, other["id"])
        assert row is not None
        row.sla_deadline = datetime.now(UTC) - timedelta(hours=1)
    assert hub.incidents.check_sla() == 0
    assert _events(hub, other["id"], "incident_sla_breached") == []


def test_escalating_severity_tightens_the_deadline(api: TestClient, hub: Hub) -> None:
    detected = datetime.now(UTC) - timedelta(minutes=10)
    created = api.post(
        "/api/v1/incidents",
        json={"title": "Login errors", "severity": "SEV3_MEDIUM", "detected_at": _iso(detected)},
    ).json()
    assert created["sla_breached"] is False
    escalated = api.post(
        f"/api/v1/incidents/{created['id']}/escalate",
        json={"reason": "customers affected", "target_severity": "SEV1_CRITICAL"},
    ).json()["incident"]
    # 10 minutes after detection is past SEV1's 5-minute acknowledge deadline.
    assert datetime.fromisoformat(escalated["sla_deadline"]) == detected + timedelta(minutes=5)
    assert escalated["sla_breached"] is True
    assert len(_events(hub, created["id"], "incident_sla_breached")) == 1
