"""The incident list's search filters, on SQLite and on PostgreSQL: each alone, several values of one (any
of them), several filters (all of them), each paged one incident at a time through its cursor, and a query
parameter the list does not take refused with 400."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from incident_hub.hub import Hub
from incident_hub.store.tables import ExternalRefRow, IncidentRow, TimelineRow

INCIDENTS = "/api/v1/incidents"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

# Four incidents, newest first, each differing from the others in every filter.
STORED: list[dict[str, Any]] = [
    {
        "number": "S-1",
        "title": "Checkout returning 502s",
        "severity": "SEV1_CRITICAL",
        "status": "RESOLVED",
        "affected_services": [{"name": "checkout-api", "impact": "partial_outage"}],
        "tags": ["customer-facing", "component:ffmpeg", "host:cap-01", "device:cam-07"],
        "source": "prometheus",
        "root_cause": "Connection pool exhausted",
        "sla_breached": True,
        "created_at": NOW - HOUR,
        "detected_at": NOW - HOUR,
        "resolved_at": NOW - HOUR / 2,
        "timeline": ["Rolled back deploy 2026.11.20-3", "Connection pool raised to 200"],
        "connectors": ["jira"],
    },
    {
        "number": "S-2",
        "title": "Refunds slow",
        "severity": "SEV2_HIGH",
        "status": "OPEN",
        "affected_services": [{"name": "payments-db", "impact": "degraded"}],
        "tags": ["component:replication", "host:db-2", "device:nvme0"],
        "source": "signals",
        "summary": {"impact": "All refunds delayed", "root_cause": "Disk full on the replica"},
        "sla_breached": False,
        "created_at": NOW - 2 * HOUR,
        "detected_at": NOW - 2 * HOUR,
        "timeline": ["Replica lag at 900 s"],
        "connectors": ["pagerduty"],
    },
    {
        "number": "S-3",
        "title": "Login errors",
        "description": "Users see 50_percent of logins fail",
        "severity": "SEV3_MEDIUM",
        "status": "RESOLVED",
        "affected_services": [
            {"name": "auth", "impact": "total_outage"},
            {"name": "checkout-api", "impact": "degraded"},
        ],
        "tags": ["customer-facing", "component:ffmpeg", "host:cap-02"],
        "source": "grafana",
        "sla_breached": True,
        "created_at": NOW - 3 * HOUR,
        "detected_at": NOW - 3 * HOUR - HOUR / 6,
        "resolved_at": NOW - 2 * HOUR,
        "timeline": ["Escalated to the identity team", "Connection POOL resized"],
        "connectors": ["jira", "pagerduty"],
    },
    {
        "number": "S-4",
        "title": "Nightly batch late",
        "severity": "SEV4_LOW",
        "status": "OPEN",
        "affected_services": [],
        "tags": [],
        "source": None,
        "sla_breached": False,
        "created_at": NOW - 24 * HOUR,
        "detected_at": NOW - 24 * HOUR,
        "timeline": [],
        "connectors": [],
    },
]


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# (query, the incidents it lists, newest first)
CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["S-1", "S-2", "S-3", "S-4"]),
    ({"affected_service": "checkout-api"}, ["S-1", "S-3"]),
    ({"affected_service": ["auth", "payments-db"]}, ["S-2", "S-3"]),
    ({"affected_service": "check"}, []),
    ({"component": "ffmpeg"}, ["S-1", "S-3"]),
    ({"component": ["replication", "ffmpeg"]}, ["S-1", "S-2", "S-3"]),
    ({"device": "cam-07"}, ["S-1"]),
    ({"host": ["db-2", "cap-02"]}, ["S-2", "S-3"]),
    ({"tag": "customer-facing"}, ["S-1", "S-3"]),
    ({"source": "signals"}, ["S-2"]),
    ({"source": ["prometheus", "grafana"]}, ["S-1", "S-3"]),
    ({"root_cause": "pool EXHAUSTED"}, ["S-1"]),
    ({"root_cause": "disk full"}, ["S-2"]),
    ({"q": "refunds"}, ["S-2"]),
    ({"q": "identity team"}, ["S-3"]),
    ({"q": "connection pool"}, ["S-1", "S-3"]),
    ({"q": "50_percent"}, ["S-3"]),
    ({"q": "50%"}, []),
    ({"q": "lag at 900"}, ["S-2"]),
    ({"created_from": _time(NOW - 3 * HOUR)}, ["S-1", "S-2", "S-3"]),
    ({"created_to": _time(NOW - 3 * HOUR)}, ["S-4"]),
    ({"created_from": _time(NOW - 2 * HOUR), "created_to": _time(NOW - HOUR)}, ["S-2"]),
    ({"detected_from": _time(NOW - 3 * HOUR)}, ["S-1", "S-2"]),
    ({"detected_to": _time(NOW - 2 * HOUR)}, ["S-3", "S-4"]),
    ({"resolved_from": _time(NOW - 2 * HOUR)}, ["S-1", "S-3"]),
    ({"resolved_to": _time(NOW - HOUR)}, ["S-3"]),
    ({"sla_breached": "true"}, ["S-1", "S-3"]),
    ({"sla_breached": "false"}, ["S-2", "S-4"]),
    ({"connector": "pagerduty"}, ["S-2", "S-3"]),
    ({"connector": ["jira", "pagerduty"]}, ["S-1", "S-2", "S-3"]),
    ({"connector": "servicenow"}, []),
    # Several filters: all of them hold.
    ({"component": "ffmpeg", "connector": "pagerduty"}, ["S-3"]),
    ({"affected_service": "checkout-api", "sla_breached": "true", "q": "connection"}, ["S-1", "S-3"]),
    ({"status": "RESOLVED", "tag": "customer-facing", "severity": ["SEV1_CRITICAL", "SEV2_HIGH"]}, ["S-1"]),
    ({"status": "OPEN", "created_from": _time(NOW - 2 * HOUR)}, ["S-2"]),
    ({"assigned_team": "payments", "source": "signals"}, []),
]


@pytest.fixture
def stored(api: TestClient, hub: Hub) -> TestClient:
    incidents, timeline, refs = [], [], []
    for record in STORED:
        incident_id = str(uuid.uuid4())
        fields = {k: v for k, v in record.items() if k not in ("timeline", "connectors")}
        incidents.append({"id": incident_id, "version": 1, "updated_at": record["created_at"], **fields})
        for n, message in enumerate(record["timeline"]):
            timeline.append(
                {
                    "incident_id": incident_id,
                    "type": "NOTE",
                    "message": message,
                    "is_public": False,
                    "timestamp": record["created_at"] + n * timedelta(minutes=5),
                }
            )
        for connector in record["connectors"]:
            refs.append(
                {
                    "incident_id": incident_id,
                    "connector_id": connector,
                    "external_id": f"{connector}-{record['number']}",
                    "written": {},
                }
            )
    with hub.db.engine.begin() as connection:
        for row in incidents:  # rows differ in which optional columns they give
            connection.execute(insert(IncidentRow), [row])
        connection.execute(insert(TimelineRow), timeline)
        connection.execute(insert(ExternalRefRow), refs)
    return api


def _listed(api: TestClient, query: dict[str, Any], **paging: Any) -> tuple[list[str], str | None]:
    response = api.get(INCIDENTS, params={**query, **paging})
    assert response.status_code == 200, response.text
    body = response.json()
    return [item["number"] for item in body["items"]], body["next_cursor"]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[str(query) for query, _ in CASES])
def test_each_filter_lists_exactly_its_matches_newest_first(
    stored: TestClient, query: dict[str, Any], expected: list[str]
) -> None:
    assert _listed(stored, query) == (expected, None)


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[str(query) for query, _ in CASES])
def test_paging_one_at_a_time_keeps_the_filter(
    stored: TestClient, query: dict[str, Any], expected: list[str]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(STORED) + 1):
        page, cursor = _listed(stored, query, limit=1, **({"cursor": cursor} if cursor else {}))
        seen += page
        if cursor is None:
            break
    assert seen == expected


def test_an_unknown_query_parameter_is_refused_naming_it(api: TestClient) -> None:
    response = api.get(INCIDENTS, params={"servce": "checkout-api", "status": "OPEN", "colour": "red"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["unknown_parameters"] == ["colour", "servce"]
    assert "servce" in body["detail"] and "affected_service" in body["detail"]
    # Every list of the API refuses them the same way.
    deliveries = api.get("/api/v1/deliveries", params={"stat": "dead"})
    assert (deliveries.status_code, deliveries.json()["unknown_parameters"]) == (400, ["stat"])


def test_bad_filter_values_are_refused_with_the_parameter_named(api: TestClient) -> None:
    for query, name in (
        ({"created_from": "yesterday"}, "created_from"),
        ({"sla_breached": "maybe"}, "sla_breached"),
        ({"q": ""}, "q"),
        ({"affected_service": "x" * 201}, "affected_service"),
    ):
        response = api.get(INCIDENTS, params=query)
        assert response.status_code == 422, query
        assert name in response.text
