"""Incidents per local day and week. In Europe/Berlin the clocks go back at 01:00 UTC on 2026-10-25, so
that local day runs from 10-24 22:00 UTC (midnight CEST) to 10-25 23:00 UTC (midnight CET): 25 hours.

    F 10-24 22:30 UTC: Berlin 10-25 00:30 CEST (UTC day 10-24)
    C 10-25 00:30 UTC: Berlin 10-25 02:30 CEST
    D 10-25 22:30 UTC: Berlin 10-25 23:30 CET
    E 10-25 23:30 UTC: Berlin 10-26 00:30 CET (UTC day 10-25)
"""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.analytics.conftest import WINDOW, Week

BERLIN_DAYS = {"from": "2026-10-23T22:00:00Z", "to": "2026-10-26T23:00:00Z", "tz": "Europe/Berlin"}


def _days(report: dict[str, object]) -> list[tuple[object, ...]]:
    buckets = report["buckets"]
    assert isinstance(buckets, list)
    return [
        (
            b["label"],
            b["start"],
            b["end"],
            b["hours"],
            b["incidents"],
            b["resolved"],
            b["open"],
            b["mttr_seconds"],
        )
        for b in buckets
    ]


def test_days_in_berlin_follow_the_clock_change(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/trends", params=BERLIN_DAYS).json()

    assert (report["tz"], report["bucket"]) == ("Europe/Berlin", "day")
    assert _days(report) == [
        ("2026-10-24", "2026-10-23T22:00:00Z", "2026-10-24T22:00:00Z", 24.0, 0, 0, 0, None),
        # F, C, D; C and D resolved in 7200 s each; F open.
        ("2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", 25.0, 3, 2, 1, 7200.0),
        ("2026-10-26", "2026-10-25T23:00:00Z", "2026-10-26T23:00:00Z", 24.0, 1, 0, 1, None),
    ]
    severities = [b["by_severity"] for b in report["buckets"]]
    assert severities[1] == {"SEV1_CRITICAL": 0, "SEV2_HIGH": 0, "SEV3_MEDIUM": 1, "SEV4_LOW": 2}
    assert severities[2] == {"SEV1_CRITICAL": 1, "SEV2_HIGH": 0, "SEV3_MEDIUM": 0, "SEV4_LOW": 0}


def test_the_same_incidents_fall_on_other_days_in_utc(week: Week, api: TestClient) -> None:
    params = {"from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z", "tz": "UTC"}
    report = api.get("/api/v1/analytics/trends", params=params).json()

    # F on 10-24; C, D and E on 10-25 (E open, so MTTR is C's and D's).
    assert [(b["label"], b["hours"], b["incidents"], b["mttr_seconds"]) for b in report["buckets"]] == [
        ("2026-10-24", 24.0, 1, None),
        ("2026-10-25", 24.0, 3, 7200.0),
        ("2026-10-26", 24.0, 0, None),
    ]


def test_weeks_start_on_local_mondays_and_are_cut_to_the_window(week: Week, api: TestClient) -> None:
    params = {**WINDOW, "tz": "Europe/Berlin", "bucket": "week"}
    report = api.get("/api/v1/analytics/trends", params=params).json()

    # The week of Monday 10-19 (cut to start at 10-20 00:00 UTC) ends at Berlin's Monday 10-26 00:00 CET:
    # A, B, G, F, C, D; the next holds E. MTTR of the first: A 3600, B 7200, G 1800, C 7200, D 7200.
    assert [(b["label"], b["start"], b["end"], b["incidents"], b["open"]) for b in report["buckets"]] == [
        ("2026-10-19", "2026-10-20T00:00:00Z", "2026-10-25T23:00:00Z", 6, 1),
        ("2026-10-26", "2026-10-25T23:00:00Z", "2026-10-26T12:00:00Z", 1, 1),
    ]
    assert report["buckets"][0]["mttr_seconds"] == 27000 / 5
    assert report["buckets"][0]["by_severity"] == {
        "SEV1_CRITICAL": 2,
        "SEV2_HIGH": 1,
        "SEV3_MEDIUM": 1,
        "SEV4_LOW": 2,
    }


def test_trends_csv_round_trip(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/trends", params=BERLIN_DAYS).json()
    answer = api.get("/api/v1/analytics/trends", params=BERLIN_DAYS, headers={"Accept": "text/csv"})

    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [
        (r["label"], float(r["hours"]), int(r["incidents"]), int(r["by_severity_SEV4_LOW"])) for r in rows
    ] == [(b["label"], b["hours"], b["incidents"], b["by_severity"]["SEV4_LOW"]) for b in report["buckets"]]
