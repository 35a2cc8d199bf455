"""Recurrence over the window's seven incidents: E repeats G's dedup key (the same component signal, 3
days earlier); F repeats H's root cause ("disk full", 5 days earlier, before the window); C repeats F's and
D repeats C's (" disk FULL " is the same category). A, B and G repeat nothing: 4 of 7."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from tests.analytics.conftest import NOW, WINDOW, Week, at


def test_recurrence_by_dedup_key_or_root_cause_category(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/recurrence", params=WINDOW).json()

    assert (report["incidents"], report["recurring"], report["lookback_days"]) == (7, 4, 90)
    assert report["recurrence_percent"] == pytest.approx(400 / 7)
    assert report["target_percent"] == 10.0
    # H is outside the window: the category is seen three times in it (F, C, D).
    assert report["categories"] == [
        {
            "category": "disk full",
            "incidents": 3,
            "first_detected_at": "2026-10-24T22:30:00Z",
            "last_detected_at": "2026-10-25T22:30:00Z",
        }
    ]


def test_an_earlier_incident_beyond_ninety_days_is_no_recurrence(week: Week, api: TestClient) -> None:
    # X 07-23 11:00 is 90 days and 1 hour before Y 10-21 12:00: too long ago. Z repeats Y a day later.
    for name, when, cause in (
        ("X", at("07-23", "11:00"), "Network"),
        ("Y", at("10-21", "12:00"), "network"),
        ("Z", at("10-22", "12:00"), "NETWORK"),
    ):
        week.create(name, when)
        week.api.patch(f"/api/v1/incidents/{week.ids[name]}", json={"root_cause": cause})
    week.fake.now = NOW
    window = {"from": "2026-10-21T00:00:00Z", "to": "2026-10-23T00:00:00Z"}
    report = api.get("/api/v1/analytics/recurrence", params=window).json()

    # A, B, G, Y and Z; only Z recurs.
    assert (report["incidents"], report["recurring"], report["recurrence_percent"], report["categories"]) == (
        5,
        1,
        20.0,
        [],
    )


def test_recurrence_csv_lists_the_categories(week: Week, api: TestClient) -> None:
    answer = api.get("/api/v1/analytics/recurrence", params=WINDOW, headers={"Accept": "text/csv"})

    assert list(csv.DictReader(io.StringIO(answer.text))) == [
        {
            "category": "disk full",
            "incidents": "3",
            "first_detected_at": "2026-10-24T22:30:00Z",
            "last_detected_at": "2026-10-25T22:30:00Z",
        }
    ]
