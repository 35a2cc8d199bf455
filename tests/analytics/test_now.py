"""What is broken right now, at NOW (2026-10-26 12:00 UTC): E (SEV1, open since 10-25 23:30, never
acknowledged) and F (SEV4, acknowledged, open since 10-24 22:30)."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.analytics.conftest import Week


def test_active_incidents_with_running_durations_most_severe_first(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/now").json()

    assert report["generated_at"] == "2026-10-26T12:00:00Z"
    assert (report["active"], report["unacknowledged"]) == (2, 1)
    listed = [(i["id"], i["severity"], i["status"], i["running_seconds"]) for i in report["incidents"]]
    # E: 10-25 23:30 to 10-26 12:00 = 12.5 h; F: 10-24 22:30 to 10-26 12:00 = 37.5 h. SEV1 before SEV4
    # although F is older.
    assert listed == [
        (week.ids["E"], "SEV1_CRITICAL", "OPEN", 12.5 * 3600),
        (week.ids["F"], "SEV4_LOW", "ACKNOWLEDGED", 37.5 * 3600),
    ]
    assert report["incidents"][0]["component"] == "cam-1/dev0/capture"
    assert report["incidents"][1]["services"] == ["search"]


def test_active_incidents_are_counted_by_severity_team_service_and_component(
    week: Week, api: TestClient
) -> None:
    report = api.get("/api/v1/analytics/now").json()

    def counts(name: str) -> list[tuple[str | None, int, float]]:
        return [(c["key"], c["count"], c["longest_running_seconds"]) for c in report[name]]

    assert counts("by_severity") == [("SEV1_CRITICAL", 1, 45000.0), ("SEV4_LOW", 1, 135000.0)]
    assert counts("by_team") == [("discovery", 1, 135000.0), (None, 1, 45000.0)]
    assert counts("by_service") == [("search", 1, 135000.0)]
    assert counts("by_component") == [("cam-1/dev0/capture", 1, 45000.0)]


def test_now_as_csv_lists_the_same_incidents(week: Week, api: TestClient) -> None:
    answer = api.get("/api/v1/analytics/now", headers={"Accept": "text/csv"})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    incidents = api.get("/api/v1/analytics/now").json()["incidents"]
    assert [(r["id"], r["severity"], float(r["running_seconds"]), r["acknowledged_at"]) for r in rows] == [
        (i["id"], i["severity"], i["running_seconds"], i["acknowledged_at"] or "") for i in incidents
    ]
