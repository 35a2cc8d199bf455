"""Behaviour of the incident endpoints, on SQLite and on PostgreSQL (through the `api` fixture)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.hub import Hub
from incident_hub.store.tables import EscalationRow, EventRow, IncidentRow

# What TestClient returns (an httpx or httpx2 response, depending on what is installed).
Response = Any

INCIDENTS = "/api/v1/incidents"
DEDUP = "X-Incident-Hub-Deduplicated"
PROBLEM_KEYS = {"type", "title", "status", "detail"}


# ---- helpers ------------------------------------------------------------------------------------------


def create(api: TestClient, title: str = "Checkout API returning 502s", **fields: Any) -> dict[str, Any]:
    response = api.post(INCIDENTS, json={"title": title, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def move(api: TestClient, incident_id: str, status: str, **fields: Any) -> Response:
    response: Response = api.put(f"{INCIDENTS}/{incident_id}/status", json={"status": status, **fields})
    return response


def moved(api: TestClient, incident_id: str, status: str, **fields: Any) -> dict[str, Any]:
    response = move(api, incident_id, status, **fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def timeline(api: TestClient, incident_id: str, visibility: str = "all") -> list[dict[str, Any]]:
    response = api.get(f"{INCIDENTS}/{incident_id}/timeline", params={"visibility": visibility})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def at(value: str | None) -> datetime:
    """A timestamp that must be set."""
    assert value is not None
    return datetime.fromisoformat(value)


def stored(hub: Hub, incident_id: str) -> IncidentRow:
    with hub.db.read() as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        return row


def events(hub: Hub, incident_id: str) -> list[EventRow]:
    with hub.db.read() as session:
        return list(
            session.scalars(
                select(EventRow).where(EventRow.incident_id == incident_id).order_by(EventRow.created_at)
            ).all()
        )


# ---- create ---------------------------------------------------------------------------------------------


def test_create_returns_201_with_location_etag_and_defaults(api: TestClient, hub: Hub) -> None:
    response = api.post(INCIDENTS, json={"title": "Disk full on db-1"})
    assert response.status_code == 201, response.text
    incident = response.json()
    assert response.headers["Location"] == f"{INCIDENTS}/{incident['id']}"
    assert response.headers["ETag"] == '"1"'
    assert response.headers[DEDUP] == "false"

    assert re.fullmatch(r"INC-\d{8}-\d{3}", incident["number"])
    assert incident["number"][4:12] == at(incident["created_at"]).strftime("%Y%m%d")
    assert incident["title"] == "Disk full on db-1"
    assert incident["severity"] == "SEV3_MEDIUM"
    assert incident["status"] == "OPEN"
    assert incident["version"] == 1
    assert incident["affected_services"] == []
    assert incident["tags"] == []
    assert incident["automated_responses"] == []
    assert incident["resolution_steps"] == []
    assert incident["roles"] == {"commander": None, "tech_lead": None, "comms_lead": None}
    for stamp in ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at"):
        assert incident[stamp] is None
    assert incident["sla_breached"] is False
    assert incident["detected_at"] == incident["created_at"]
    assert (at(incident["sla_deadline"]) - at(incident["detected_at"])).total_seconds() == 3600

    row = stored(hub, incident["id"])
    assert row.number == incident["number"]
    assert row.status == "OPEN"
    fetched = api.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json() == incident


def test_create_keeps_every_given_field(api: TestClient) -> None:
    draft: dict[str, Any] = {
        "title": "Checkout API returning 502s",
        "description": "Error rate above 20%",
        "severity": "SEV2_HIGH",
        "affected_services": [{"name": "checkout-api", "impact": "partial_outage"}, {"name": "cart"}],
        "assigned_team": "payments",
        "assignee": "bob",
        "commander": "alice",
        "tech_lead": "bob",
        "comms_lead": "carol",
        "detected_at": "2026-01-02T03:04:05+00:00",
        "dedup_key": "checkout-api/5xx",
        "source": "prometheus",
        "tags": ["eu", "payments"],
    }
    incident = create(api, **draft)
    assert incident["description"] == "Error rate above 20%"
    assert incident["severity"] == "SEV2_HIGH"
    assert incident["affected_services"] == ["checkout-api", "cart"]
    assert incident["service_impacts"] == [
        {"name": "checkout-api", "impact": "partial_outage"},
        {"name": "cart", "impact": "degraded"},
    ]
    assert incident["assigned_team"] == "payments"
    assert incident["assignee"] == "bob"
    assert incident["roles"] == {"commander": "alice", "tech_lead": "bob", "comms_lead": "carol"}
    assert when(incident["detected_at"]) == datetime.fromisoformat("2026-01-02T03:04:05+00:00")
    assert incident["dedup_key"] == "checkout-api/5xx"
    assert incident["source"] == "prometheus"
    assert incident["tags"] == ["eu", "payments"]


def test_incident_numbers_count_up_within_the_day(api: TestClient) -> None:
    incidents = [create(api, f"incident {i}") for i in range(3)]
    per_day: dict[str, list[str]] = {}
    for incident in incidents:
        day = at(incident["created_at"]).strftime("%Y%m%d")  # the UTC day it was opened
        per_day.setdefault(day, []).append(incident["number"])
    # Numbering starts at 001 each UTC day (a run straddling midnight starts over).
    for day, numbers in per_day.items():
        assert numbers == [f"INC-{day}-{n:03d}" for n in range(1, len(numbers) + 1)]
    # A duplicate report does not use up a number.
    keyed = create(api, "keyed", dedup_key="k")["number"]
    assert api.post(INCIDENTS, json={"title": "again", "dedup_key": "k"}).status_code == 200
    last = create(api, "after")["number"]
    if last[4:12] == keyed[4:12]:
        assert int(last[-3:]) == int(keyed[-3:]) + 1
    else:
        assert last[-3:] == "001"


# ---- list -----------------------------------------------------------------------------------------------


def test_list_filters_by_status_severity_and_team(api: TestClient) -> None:
    a = create(api, "a", severity="SEV1_CRITICAL", assigned_team="payments")
    b = create(api, "b", severity="SEV2_HIGH", assigned_team="payments")
    c = create(api, "c", severity="SEV3_MEDIUM", assigned_team="search")
    d = create(api, "d", severity="SEV4_LOW")
    moved(api, b["id"], "ACKNOWLEDGED")
    moved(api, c["id"], "RESOLVED")

    def ids(**params: Any) -> list[str]:
        response = api.get(INCIDENTS, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [d["id"], c["id"], b["id"], a["id"]]
    assert ids(status="OPEN") == [d["id"], a["id"]]
    assert ids(status=["ACKNOWLEDGED", "RESOLVED"]) == [c["id"], b["id"]]
    assert ids(severity="SEV1_CRITICAL") == [a["id"]]
    assert ids(severity=["SEV2_HIGH", "SEV4_LOW"]) == [d["id"], b["id"]]
    assert ids(assigned_team="payments") == [b["id"], a["id"]]
    assert ids(assigned_team="payments", status="OPEN") == [a["id"]]
    assert ids(assigned_team="payments", severity="SEV3_MEDIUM") == []
    assert ids(status="CLOSED") == []


def test_list_pages_through_all_incidents_newest_first_without_gaps(api: TestClient) -> None:
    teams = ["payments", "search"]
    created = [create(api, f"incident {i}", assigned_team=teams[i % 2])["id"] for i in range(7)]

    def collect(**params: Any) -> tuple[list[str], list[int]]:
        seen: list[str] = []
        pages: list[int] = []
        cursor: str | None = None
        while True:
            query = dict(params, **({"cursor": cursor} if cursor is not None else {}))
            response = api.get(INCIDENTS, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(len(page["items"]))
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return seen, pages
            assert len(pages) < 10, "pagination does not end"

    seen, pages = collect(limit=3)
    assert pages == [3, 3, 1]
    assert seen == list(reversed(created))
    assert len(set(seen)) == len(seen)

    # The cursor keeps the filters' order too: payments has incidents 0, 2, 4 and 6.
    seen, pages = collect(limit=2, assigned_team="payments")
    assert pages == [2, 2]
    assert seen == list(reversed(created[0::2]))
    # A page size equal to the remainder ends without an empty extra page.
    seen, pages = collect(limit=7)
    assert pages == [7]


# ---- status ---------------------------------------------------------------------------------------------


def test_status_change_records_message_author_and_timeline(api: TestClient, hub: Hub) -> None:
    incident = create(api)
    response = move(api, incident["id"], "ACKNOWLEDGED", message="Looking", author="alice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ACKNOWLEDGED"
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert stored(hub, incident["id"]).status == "ACKNOWLEDGED"

    last = timeline(api, incident["id"])[-1]
    assert last["type"] == "ACKNOWLEDGED"
    assert last["author"] == "alice"
    assert last["is_public"] is True
    assert last["message"] == "Status changed: OPEN → ACKNOWLEDGED: Looking"

    investigating = moved(api, incident["id"], "INVESTIGATING", author="bob")
    assert investigating["status"] == "INVESTIGATING"
    last = timeline(api, incident["id"])[-1]
    assert last["type"] == "STATUS_CHANGE"
    assert last["author"] == "bob"
    assert last["message"] == "Status changed: ACKNOWLEDGED → INVESTIGATING"


def test_transitions_set_lifecycle_timestamps(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]

    acked = moved(api, iid, "ACKNOWLEDGED")
    ack_at = when(acked["acknowledged_at"])
    assert ack_at is not None
    assert acked["mitigated_at"] is None and acked["resolved_at"] is None and acked["closed_at"] is None

    investigating = moved(api, iid, "INVESTIGATING")
    assert when(investigating["acknowledged_at"]) == ack_at  # not overwritten

    monitoring = moved(api, iid, "MONITORING")
    mitigated_at = when(monitoring["mitigated_at"])
    assert mitigated_at is not None and mitigated_at >= ack_at
    assert monitoring["resolved_at"] is None

    resolved = moved(api, iid, "RESOLVED")
    resolved_at = when(resolved["resolved_at"])
    assert resolved_at is not None and resolved_at >= mitigated_at
    assert when(resolved["acknowledged_at"]) == ack_at
    assert when(resolved["mitigated_at"]) == mitigated_at
    assert resolved["closed_at"] is None

    closed = moved(api, iid, "CLOSED")
    closed_at = when(closed["closed_at"])
    assert closed_at is not None and closed_at >= resolved_at
    assert when(closed["resolved_at"]) == resolved_at
    assert when(closed["acknowledged_at"]) == ack_at
    assert closed["version"] == 6

    # Skipping ACKNOWLEDGED still records when work began; resolving outright stamps both.
    incident = create(api)
    investigating = moved(api, incident["id"], "INVESTIGATING")
    assert investigating["acknowledged_at"] is not None
    resolved = moved(api, create(api, "other")["id"], "RESOLVED")
    assert resolved["acknowledged_at"] is not None
    assert resolved["resolved_at"] is not None


def test_lifecycle_timestamps_cannot_be_set_by_callers(api: TestClient) -> None:
    stamp = "2026-01-01T00:00:00Z"
    created = api.post(INCIDENTS, json={"title": "x", "acknowledged_at": stamp})
    assert "acknowledged_at" in problem(created, 422)["detail"]

    incident = create(api)
    for field in ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at"):
        patched = api.patch(f"{INCIDENTS}/{incident['id']}", json={field: stamp})
        assert field in problem(patched, 422)["detail"]
        status = move(api, incident["id"], "RESOLVED", **{field: stamp})
        assert field in problem(status, 422)["detail"]
    unchanged = api.get(f"{INCIDENTS}/{incident['id']}").json()
    assert unchanged["status"] == "OPEN"
    assert unchanged["version"] == 1
    assert unchanged["acknowledged_at"] is None


def test_resolved_incident_can_be_reopened_and_it_is_recorded(api: TestClient, hub: Hub) -> None:
    incident = create(api)
    iid = incident["id"]
    resolved = moved(api, iid, "RESOLVED", author="alice")
    assert resolved["resolved_at"] is not None

    reopened = moved(api, iid, "INVESTIGATING", message="Errors are back", author="bob")
    assert reopened["status"] == "INVESTIGATING"
    assert reopened["resolved_at"] is None
    assert reopened["closed_at"] is None
    assert reopened["acknowledged_at"] == resolved["acknowledged_at"]

    last = timeline(api, iid)[-1]
    assert last["type"] == "STATUS_CHANGE"
    assert last["author"] == "bob"
    assert last["message"] == "Reopened: RESOLVED → INVESTIGATING: Errors are back"
    status_events = [
        e.payload["incident_status_changed"] for e in events(hub, iid) if e.type == "incident_status_changed"
    ]
    assert [(e["old_status"], e["new_status"], e["reopened"]) for e in status_events] == [
        ("OPEN", "RESOLVED", False),
        ("RESOLVED", "INVESTIGATING", True),
    ]


def test_closed_incident_cannot_move_without_reopen(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]
    moved(api, iid, "RESOLVED")
    closed = moved(api, iid, "CLOSED")

    for target in ("INVESTIGATING", "OPEN", "RESOLVED"):
        body = problem(move(api, iid, target), 409)
        assert body["allowed_statuses"] == []
        assert body["current_status"] == "CLOSED"
        assert "reopen" in body["detail"]
    after = api.get(f"{INCIDENTS}/{iid}").json()
    assert after["status"] == "CLOSED"
    assert after["version"] == closed["version"]

    # Even with reopen, only OPEN and INVESTIGATING are reachable from CLOSED.
    body = problem(move(api, iid, "MONITORING", reopen=True), 409)
    assert body["allowed_statuses"] == ["OPEN", "INVESTIGATING"]


def test_closed_incident_can_be_reopened_explicitly(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]
    moved(api, iid, "ACKNOWLEDGED")
    moved(api, iid, "RESOLVED")
    closed = moved(api, iid, "CLOSED")

    reopened = moved(api, iid, "INVESTIGATING", reopen=True, author="carol")
    assert reopened["status"] == "INVESTIGATING"
    assert reopened["closed_at"] is None
    assert reopened["resolved_at"] is None
    assert reopened["acknowledged_at"] == closed["acknowledged_at"]
    assert timeline(api, iid)[-1]["message"] == "Reopened: CLOSED → INVESTIGATING"

    # Resolved again: a fresh resolution time.
    again = moved(api, iid, "RESOLVED")
    assert at(again["resolved_at"]) > at(closed["resolved_at"])


def test_same_status_or_unlisted_move_is_conflict(api: TestClient) -> None:
    incident = create(api)
    body = problem(move(api, incident["id"], "OPEN"), 409)
    assert body["current_status"] == "OPEN"
    assert "OPEN" not in body["allowed_statuses"]
    moved(api, incident["id"], "ACKNOWLEDGED")
    problem(move(api, incident["id"], "ACKNOWLEDGED"), 409)
    assert api.get(f"{INCIDENTS}/{incident['id']}").json()["version"] == 2

    other = create(api, "other")
    moved(api, other["id"], "IDENTIFIED")
    body = problem(move(api, other["id"], "OPEN"), 409)
    assert body["title"] == "Illegal status change"
    assert body["current_status"] == "IDENTIFIED"
    assert body["allowed_statuses"] == ["INVESTIGATING", "MONITORING", "RESOLVED"]


# ---- escalate -------------------------------------------------------------------------------------------


def test_escalate_by_default_raises_severity_one_level(api: TestClient, hub: Hub) -> None:
    incident = create(api, severity="SEV3_MEDIUM", assigned_team="payments")
    response = api.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "burning", "author": "al"})
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert set(outcome) == {"incident", "escalation", "changes"}
    assert outcome["changes"] == {"severity": {"old": "SEV3_MEDIUM", "new": "SEV2_HIGH"}}
    assert outcome["incident"]["severity"] == "SEV2_HIGH"
    assert outcome["incident"]["assigned_team"] == "payments"
    assert outcome["incident"]["version"] == 2
    assert response.headers["ETag"] == '"2"'
    escalation = outcome["escalation"]
    assert escalation["reason"] == "burning"
    assert escalation["from_severity"] == "SEV3_MEDIUM"
    assert escalation["to_severity"] == "SEV2_HIGH"
    assert escalation["escalated_by"] == "al"

    assert stored(hub, incident["id"]).severity == "SEV2_HIGH"
    with hub.db.read() as session:
        rows = session.scalars(select(EscalationRow).where(EscalationRow.incident_id == incident["id"])).all()
        assert [(r.from_severity, r.to_severity) for r in rows] == [("SEV3_MEDIUM", "SEV2_HIGH")]
    last = timeline(api, incident["id"])[-1]
    assert last["type"] == "ESCALATED"
    assert "burning" in last["message"]

    again = api.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "worse"}).json()
    assert again["changes"] == {"severity": {"old": "SEV2_HIGH", "new": "SEV1_CRITICAL"}}


def test_escalate_to_target_severity_and_team(api: TestClient) -> None:
    incident = create(api, severity="SEV4_LOW", assigned_team="search")
    outcome = api.post(
        f"{INCIDENTS}/{incident['id']}/escalate",
        json={"reason": "db", "target_severity": "SEV2_HIGH", "target_team": "dba"},
    ).json()
    assert outcome["changes"] == {
        "severity": {"old": "SEV4_LOW", "new": "SEV2_HIGH"},
        "assigned_team": {"old": "search", "new": "dba"},
    }
    assert outcome["incident"]["severity"] == "SEV2_HIGH"
    assert outcome["incident"]["assigned_team"] == "dba"
    assert outcome["escalation"]["from_team"] == "search"
    assert outcome["escalation"]["to_team"] == "dba"

    # A team hand-off alone keeps the severity.
    team_only = api.post(
        f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "network", "target_team": "netops"}
    ).json()
    assert team_only["changes"] == {"assigned_team": {"old": "dba", "new": "netops"}}
    assert team_only["incident"]["severity"] == "SEV2_HIGH"


def test_escalation_cannot_lower_severity(api: TestClient) -> None:
    incident = create(api, severity="SEV2_HIGH")
    response = api.post(
        f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "x", "target_severity": "SEV4_LOW"}
    )
    body = problem(response, 422)
    assert "lower" in body["detail"]
    after = api.get(f"{INCIDENTS}/{incident['id']}").json()
    assert after["severity"] == "SEV2_HIGH"
    assert after["version"] == 1


def test_escalating_sev1_without_target_is_conflict(api: TestClient) -> None:
    incident = create(api, severity="SEV1_CRITICAL", assigned_team="payments")
    problem(api.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "x"}), 409)
    # Naming the current team and severity changes nothing either.
    same = api.post(
        f"{INCIDENTS}/{incident['id']}/escalate",
        json={"reason": "x", "target_severity": "SEV1_CRITICAL", "target_team": "payments"},
    )
    problem(same, 409)
    assert api.get(f"{INCIDENTS}/{incident['id']}").json()["version"] == 1


def test_closed_incident_cannot_be_escalated(api: TestClient) -> None:
    incident = create(api, severity="SEV3_MEDIUM")
    moved(api, incident["id"], "RESOLVED")
    problem(api.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "x"}), 409)
    closed = moved(api, incident["id"], "CLOSED")
    body = problem(api.post(f"{INCIDENTS}/{incident['id']}/escalate", json={"reason": "x"}), 409)
    assert "CLOSED" in body["detail"]
    after = api.get(f"{INCIDENTS}/{incident['id']}").json()
    assert after["severity"] == "SEV3_MEDIUM"
    assert after["version"] == closed["version"]


# ---- dedup ----------------------------------------------------------------------------------------------


def test_duplicate_report_returns_the_open_incident(api: TestClient, hub: Hub) -> None:
    first = create(api, "Checkout 502s", dedup_key="checkout/5xx", source="prometheus")
    response = api.post(INCIDENTS, json={"title": "Checkout 502s again", "dedup_key": "checkout/5xx"})
    assert response.status_code == 200, response.text
    assert response.headers[DEDUP] == "true"
    assert "Location" not in response.headers
    duplicate = response.json()
    assert duplicate["id"] == first["id"]
    assert duplicate["number"] == first["number"]
    assert duplicate["title"] == "Checkout 502s"
    assert response.headers["ETag"] == f'"{duplicate["version"]}"'

    entries = timeline(api, first["id"])
    assert [e["type"] for e in entries] == ["DETECTED", "DETECTED"]
    assert entries[1]["message"] == "Duplicate report deduplicated: Checkout 502s again"
    assert entries[1]["is_public"] is False
    with hub.db.read() as session:
        assert session.scalars(select(IncidentRow.id)).all() == [first["id"]]

    # Still deduplicated while being worked on.
    moved(api, first["id"], "INVESTIGATING")
    third = api.post(INCIDENTS, json={"title": "again", "dedup_key": "checkout/5xx"})
    assert third.status_code == 200
    assert third.json()["id"] == first["id"]

    # A different key is a different incident.
    other = api.post(INCIDENTS, json={"title": "other", "dedup_key": "search/5xx"})
    assert other.status_code == 201


def test_resolved_incident_frees_its_dedup_key(api: TestClient) -> None:
    first = create(api, dedup_key="db/disk")
    moved(api, first["id"], "RESOLVED")
    response = api.post(INCIDENTS, json={"title": "Disk again", "dedup_key": "db/disk"})
    assert response.status_code == 201, response.text
    assert response.headers[DEDUP] == "false"
    second = response.json()
    assert second["id"] != first["id"]
    assert second["number"] != first["number"]
    # The new one now holds the key.
    third = api.post(INCIDENTS, json={"title": "Disk yet again", "dedup_key": "db/disk"})
    assert third.status_code == 200
    assert third.json()["id"] == second["id"]


def test_reopening_while_another_incident_holds_the_dedup_key_is_conflict(api: TestClient) -> None:
    first = create(api, dedup_key="db/disk")
    resolved = moved(api, first["id"], "RESOLVED")
    second = create(api, "Disk again", dedup_key="db/disk")
    body = problem(move(api, first["id"], "INVESTIGATING"), 409)
    assert second["number"] in body["detail"]
    after = api.get(f"{INCIDENTS}/{first['id']}").json()
    assert after["status"] == "RESOLVED"
    assert after["version"] == resolved["version"]


# ---- optimistic concurrency -----------------------------------------------------------------------------


def test_etag_equals_version_and_stale_if_match_is_412(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]
    fetched = api.get(f"{INCIDENTS}/{iid}")
    assert fetched.headers["ETag"] == f'"{fetched.json()["version"]}"' == '"1"'
    moved(api, iid, "ACKNOWLEDGED")
    assert api.get(f"{INCIDENTS}/{iid}").headers["ETag"] == '"2"'

    stale = {"If-Match": '"1"'}
    attempts = [
        api.patch(f"{INCIDENTS}/{iid}", json={"title": "new"}, headers=stale),
        api.put(f"{INCIDENTS}/{iid}/status", json={"status": "INVESTIGATING"}, headers=stale),
        api.post(f"{INCIDENTS}/{iid}/escalate", json={"reason": "x"}, headers=stale),
        api.put(f"{INCIDENTS}/{iid}/roles", json={"role": "commander", "person": "al"}, headers=stale),
    ]
    for response in attempts:
        body = problem(response, 412)
        assert body["current_version"] == 2
    after = api.get(f"{INCIDENTS}/{iid}").json()
    assert after["version"] == 2
    assert after["title"] == incident["title"]
    assert after["status"] == "ACKNOWLEDGED"
    assert after["severity"] == incident["severity"]
    assert after["roles"]["commander"] is None


def test_current_and_weak_if_match_are_accepted(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]
    first = api.patch(f"{INCIDENTS}/{iid}", json={"title": "one"}, headers={"If-Match": '"1"'})
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == '"2"'
    weak = api.patch(f"{INCIDENTS}/{iid}", json={"title": "two"}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200, weak.text
    star = api.put(f"{INCIDENTS}/{iid}/status", json={"status": "ACKNOWLEDGED"}, headers={"If-Match": "*"})
    assert star.status_code == 200, star.text
    escalated = api.post(f"{INCIDENTS}/{iid}/escalate", json={"reason": "x"}, headers={"If-Match": '"4"'})
    assert escalated.status_code == 200, escalated.text
    assert escalated.headers["ETag"] == '"5"'
    final = api.get(f"{INCIDENTS}/{iid}").json()
    assert final["title"] == "two"
    assert final["version"] == 5
    problem(
        api.patch(f"{INCIDENTS}/{iid}", json={"title": "x"}, headers={"If-Match": "latest"}), 412
    )  # names no version


# ---- patch ----------------------------------------------------------------------------------------------


def test_patch_changes_fields_and_records_them(api: TestClient, hub: Hub) -> None:
    incident = create(api, severity="SEV3_MEDIUM")
    iid = incident["id"]
    patch = {
        "title": "Checkout 502s (EU only)",
        "assignee": "carol",
        "severity": "SEV2_HIGH",
        "description": "EU region",
        "affected_services": [{"name": "checkout-api", "impact": "total_outage"}],
        "assigned_team": "payments",
        "root_cause": "bad deploy",
        "resolution_notes": "rolled back",
        "summary": {"impact": "12% failed", "affected_services": ["checkout-api"]},
        "tags": ["eu"],
        "author": "dave",
    }
    response = api.patch(f"{INCIDENTS}/{iid}", json=patch)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert response.headers["ETag"] == '"2"'
    assert patched["version"] == 2
    for field, value in patch.items():
        if field not in ("author", "summary", "affected_services"):
            assert patched[field] == value, field
    assert patched["affected_services"] == ["checkout-api"]
    assert patched["service_impacts"] == [{"name": "checkout-api", "impact": "total_outage"}]
    assert patched["summary"]["impact"] == "12% failed"
    assert patched["summary"]["affected_services"] == ["checkout-api"]
    # A severity change moves the SLA deadline (SEV2 acknowledges within 15 minutes).
    deadline = at(patched["sla_deadline"]) - at(patched["detected_at"])
    assert deadline.total_seconds() == 15 * 60
    row = stored(hub, iid)
    assert (row.title, row.assignee, row.severity) == ("Checkout 502s (EU only)", "carol", "SEV2_HIGH")

    note = timeline(api, iid)[-1]
    assert note["type"] == "NOTE"
    assert note["is_public"] is False
    assert note["author"] == "dave"
    assert note["message"].startswith("Updated ")
    assert "title" in note["message"] and "severity" in note["message"]

    (updated,) = [e.payload["incident_updated"] for e in events(hub, iid) if e.type == "incident_updated"]
    assert updated["changes"]["title"] == {"old": incident["title"], "new": "Checkout 502s (EU only)"}
    assert updated["changes"]["severity"] == {"old": "SEV3_MEDIUM", "new": "SEV2_HIGH"}
    assert updated["updated_by"] == "dave"
    assert updated["version"] == 2

    # Patching to the same values changes nothing.
    same = api.patch(f"{INCIDENTS}/{iid}", json={"title": "Checkout 502s (EU only)"})
    assert same.status_code == 200
    assert same.json()["version"] == 2


def test_empty_patch_or_unknown_fields_are_rejected(api: TestClient) -> None:
    incident = create(api)
    for empty in ({}, {"author": "alice"}):
        problem(api.patch(f"{INCIDENTS}/{incident['id']}", json=empty), 422)
    assert api.get(f"{INCIDENTS}/{incident['id']}").json()["version"] == 1

    response = api.patch(f"{INCIDENTS}/{incident['id']}", json={"titel": "typo", "status": "CLOSED"})
    body = problem(response, 422)
    assert "titel" in body["detail"]
    assert "status" in body["detail"]
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "titel"), ("body", "status")}
    after = api.get(f"{INCIDENTS}/{incident['id']}").json()
    assert after["title"] == incident["title"]
    assert after["status"] == "OPEN"


def test_patch_cannot_null_a_required_field(api: TestClient) -> None:
    incident = create(api)
    for field in ("title", "severity", "affected_services"):
        problem(api.patch(f"{INCIDENTS}/{incident['id']}", json={field: None}), 422)
    assert api.get(f"{INCIDENTS}/{incident['id']}").json()["title"] == incident["title"]


# ---- timeline, steps, automated responses, roles --------------------------------------------------------


def test_timeline_notes_are_public_or_internal(api: TestClient) -> None:
    incident = create(api)
    iid = incident["id"]
    public = api.post(f"{INCIDENTS}/{iid}/timeline", json={"message": "We are investigating", "author": "al"})
    assert public.status_code == 201, public.text
    assert public.json()["is_public"] is True
    assert public.json()["type"] == "NOTE"
    internal = api.post(
        f"{INCIDENTS}/{iid}/timeline", json={"message": "db-3 looks bad", "author": "bo", "is_public": False}
    )
    assert internal.status_code == 201
    assert internal.json()["is_public"] is False

    everything = timeline(api, iid)
    assert [e["message"] for e in everything][1:] == ["We are investigating", "db-3 looks bad"]
    public_only = timeline(api, iid, "public")
    internal_only = timeline(api, iid, "internal")
    assert [e["message"] for e in internal_only] == ["db-3 looks bad"]
    assert "We are investigating" in [e["message"] for e in public_only]
    assert all(e["is_public"] for e in public_only)
    assert "db-3 looks bad" not in [e["message"] for e in public_only]
    assert len(public_only) + len(internal_only) == len(everything)
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    problem(api.get(f"{INCIDENTS}/{iid}/timeline", params={"visibility": "secret"}), 422)
    problem(api.post(f"{INCIDENTS}/{iid}/timeline", json={"message": ""}), 422)


def test_resolution_steps_are_numbered_in_order(api: TestClient, hub: Hub) -> None:
    incident = create(api)
    iid = incident["id"]
    actions = ["Paged DBA", "Rolled back to v41", "Flushed CDN"]
    for number, action in enumerate(actions, start=1):
        response = api.post(
            f"{INCIDENTS}/{iid}/resolution-steps", json={"action_taken": action, "performed_by": "bob"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["step_number"] == number
    given = api.post(
        f"{INCIDENTS}/{iid}/resolution-steps",
        json={"action_taken": "Verified", "timestamp": "2026-01-02T03:04:05Z"},
    ).json()
    assert given["step_number"] == 4
    assert when(given["timestamp"]) == datetime.fromisoformat("2026-01-02T03:04:05+00:00")

    steps = api.get(f"{INCIDENTS}/{iid}/resolution-steps").json()
    assert [s["step_number"] for s in steps] == [1, 2, 3, 4]
    assert [s["action_taken"] for s in steps] == [*actions, "Verified"]
    after = api.get(f"{INCIDENTS}/{iid}").json()
    assert [s["step_number"] for s in after["resolution_steps"]] == [1, 2, 3, 4]
    assert after["version"] == 5
    assert [e["message"] for e in timeline(api, iid) if e["type"] == "RESOLUTION_STEP"] == [
        "Step 1: Paged DBA",
        "Step 2: Rolled back to v41",
        "Step 3: Flushed CDN",
        "Step 4: Verified",
    ]
    assert sum(e.type == "incident_resolution_step_added" for e in events(hub, iid)) == 4
    # Callers cannot choose the number.
    problem(
        api.post(f"{INCIDENTS}/{iid}/resolution-steps", json={"action_taken": "x", "step_number": 9}), 422
    )


def test_automated_responses_are_recorded_and_updated_by_id(api: TestClient, hub: Hub) -> None:
    incident = create(
        api,
        automated_responses=[
            {"response_id": "page-1", "action_type": "page_oncall", "details": {"team": "p"}}
        ],
    )
    iid = incident["id"]
    assert [r["response_id"] for r in incident["automated_responses"]] == ["page-1"]
    assert incident["automated_responses"][0]["execution_status"] == "pending"

    recorded = api.post(
        f"{INCIDENTS}/{iid}/automated-responses",
        json={"response_id": "restart-1", "action_type": "restart_service", "execution_status": "running"},
    )
    assert recorded.status_code == 201, recorded.text
    # `running`, this API's word before the seed's `in_progress`, is still read, as `in_progress`.
    assert recorded.json()["execution_status"] == "in_progress"
    updated = api.post(
        f"{INCIDENTS}/{iid}/automated-responses",
        json={
            "response_id": "restart-1",
            "action_type": "restart_service",
            "execution_status": "succeeded",
            "executed_at": "2026-01-02T03:04:05Z",
            "details": {"pods": 3},
        },
    )
    assert updated.status_code in (200, 201), updated.text

    listed = api.get(f"{INCIDENTS}/{iid}/automated-responses").json()
    assert [r["response_id"] for r in listed] == ["page-1", "restart-1"]
    restart = listed[1]
    assert restart["execution_status"] == "succeeded"
    assert restart["details"] == {"pods": 3}
    assert when(restart["executed_at"]) == datetime.fromisoformat("2026-01-02T03:04:05+00:00")
    assert api.get(f"{INCIDENTS}/{iid}").json()["automated_responses"] == listed

    # Without an id, each post is a new response.
    api.post(f"{INCIDENTS}/{iid}/automated-responses", json={"action_type": "scale_up"})
    assert len(api.get(f"{INCIDENTS}/{iid}/automated-responses").json()) == 3
    messages = [e["message"] for e in timeline(api, iid, "internal") if e["type"] == "AUTOMATED_RESPONSE"]
    assert messages == ["restart_service: in_progress", "restart_service: succeeded", "scale_up: pending"]
    problem(
        api.post(
            f"{INCIDENTS}/{iid}/automated-responses", json={"action_type": "x", "execution_status": "done"}
        ),
        422,
    )


def test_roles_are_assigned_and_recorded_in_the_timeline(api: TestClient, hub: Hub) -> None:
    incident = create(api)
    iid = incident["id"]
    for role, person in (("commander", "alice"), ("tech_lead", "bob"), ("comms_lead", "carol")):
        response = api.put(f"{INCIDENTS}/{iid}/roles", json={"role": role, "person": person, "author": "zed"})
        assert response.status_code == 200, response.text
        assert response.json()["roles"][role] == person
    after = api.get(f"{INCIDENTS}/{iid}").json()
    assert after["roles"] == {"commander": "alice", "tech_lead": "bob", "comms_lead": "carol"}
    assert after["version"] == 4
    row = stored(hub, iid)
    assert (row.commander, row.tech_lead, row.comms_lead) == ("alice", "bob", "carol")

    cleared = api.put(f"{INCIDENTS}/{iid}/roles", json={"role": "commander", "person": None})
    assert cleared.json()["roles"]["commander"] is None
    # Assigning the same person again is not a change.
    same = api.put(f"{INCIDENTS}/{iid}/roles", json={"role": "tech_lead", "person": "bob"})
    assert same.json()["version"] == 5

    entries = [e for e in timeline(api, iid) if e["type"] == "ROLE_ASSIGNED"]
    assert [e["message"] for e in entries] == [
        "alice is now commander",
        "bob is now tech lead",
        "carol is now comms lead",
        "commander cleared (was alice)",
    ]
    assert all(e["is_public"] for e in entries)
    assert entries[0]["author"] == "zed"
    role_events = [
        e.payload["incident_role_assigned"] for e in events(hub, iid) if e.type == "incident_role_assigned"
    ]
    assert [(e["role"], e["old"], e["new"]) for e in role_events] == [
        ("commander", None, "alice"),
        ("tech_lead", None, "bob"),
        ("comms_lead", None, "carol"),
        ("commander", "alice", None),
    ]
    problem(api.put(f"{INCIDENTS}/{iid}/roles", json={"role": "scribe", "person": "x"}), 422)


# ---- events ---------------------------------------------------------------------------------------------


def test_changes_write_events_with_the_documented_payload(api: TestClient, hub: Hub) -> None:
    incident = create(
        api,
        severity="SEV3_MEDIUM",
        automated_responses=[{"action_type": "page_oncall", "execution_status": "succeeded"}],
    )
    iid = incident["id"]
    moved(api, iid, "ACKNOWLEDGED", message="on it", author="al")
    api.post(f"{INCIDENTS}/{iid}/escalate", json={"reason": "spreading", "author": "al"})
    moved(api, iid, "RESOLVED", author="bo")

    rows = events(hub, iid)
    assert [r.type for r in rows] == [
        "incident_created",
        "incident_status_changed",
        "incident_escalated",
        "incident_status_changed",
        "incident_resolved",
    ]
    for row in rows:
        assert set(row.payload) == {"event_id", "timestamp", row.type}
        assert row.payload["event_id"] == row.id
        datetime.fromisoformat(row.payload["timestamp"])

    created = rows[0].payload["incident_created"]
    assert created["id"] == iid
    assert created["number"] == incident["number"]
    assert created["status"] == "OPEN"
    assert [r["action_type"] for r in created["automated_responses"]] == ["page_oncall"]
    assert created["automated_responses"][0]["execution_status"] == "succeeded"

    status = rows[1].payload["incident_status_changed"]
    assert (status["incident_id"], status["id"]) == (incident["number"], iid)
    assert (status["old_status"], status["new_status"]) == ("OPEN", "ACKNOWLEDGED")
    assert status["message"] == "on it"
    assert status["changed_by"] == "al"
    assert status["version"] == 2

    escalated = rows[2].payload["incident_escalated"]
    assert (escalated["old_severity"], escalated["new_severity"]) == ("SEV3_MEDIUM", "SEV2_HIGH")
    assert escalated["reason"] == "spreading"
    assert escalated["version"] == 3

    resolved = rows[4].payload["incident_resolved"]
    assert resolved["resolved_by"] == "bo"
    assert resolved["version"] == 4
    assert resolved["time_to_resolve_minutes"] >= 0
