"""Availability over the window 10-20 00:00 to NOW 10-26 12:00 (9360 minutes; partial outage weight 0.5,
degraded 0.25, target 99 %).

checkout  H total 10-20 00:00 (cut at the window start) to 01:00: 60 min at 1.
          A total 10:00-11:00 and B partial 10:30-12:30 on 10-21 overlap: 10:00-11:00 at 1 (the heavier),
          11:00-12:30 at 0.5 = 60 + 45 = 105 min. Down time 165 min, impacted 210 min, two failure periods
          10 h 01:00 -> 10-21 10:00 = 33 h apart (MTBF 1980 min). 100 * (1 - 165/9360) = 98.2372 %: fair.
search    F degraded 10-24 22:30 to NOW (open) = 2250 min at 0.25 = 562.5; C (degraded) lies inside it at
          the same weight; D partial 10-25 22:30 to 10-26 00:30 raises 120 min from 0.25 to 0.5: + 30.
          Down time 592.5 min, impacted 2250, one failure period. 93.6699 %: poor.
component cam-1/dev0/capture  G (SEV1 signal, total outage) 10-22 08:00-08:30 and E 10-25 23:30 to NOW
          (750 min): 780 min, MTBF 10-22 08:30 -> 10-25 23:30 = 87 h = 5220 min. 91.6667 %: poor.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from incident_hub import clock
from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from tests.analytics.conftest import NOW, WINDOW, WINDOW_MINUTES, Week
from tests.conftest import key_for, test_settings


def _entity(item: dict[str, object]) -> tuple[object, ...]:
    return tuple(
        item[k]
        for k in (
            "rank",
            "name",
            "availability_percent",
            "band",
            "meets_target",
            "downtime_minutes",
            "impacted_minutes",
            "incidents",
            "failures",
            "mtbf_minutes",
        )
    )


def test_availability_counts_overlaps_once_at_the_heaviest_impact(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/reliability", params=WINDOW).json()

    assert report["window_minutes"] == WINDOW_MINUTES == 9360
    assert (report["target_percent"], report["partial_outage_weight"], report["degraded_weight"]) == (
        99.0,
        0.5,
        0.25,
    )
    assert [_entity(s) for s in report["services"]] == [
        (1, "checkout", pytest.approx(100 * (1 - 165 / 9360)), "fair", False, 165.0, 210.0, 3, 2, 1980.0),
        (2, "search", pytest.approx(100 * (1 - 592.5 / 9360)), "poor", False, 592.5, 2250.0, 3, 1, None),
    ]


def test_component_availability_and_mtbf_from_signals(week: Week, api: TestClient) -> None:
    components = api.get("/api/v1/analytics/reliability", params=WINDOW).json()["components"]

    assert [_entity(c) for c in components] == [
        (
            1,
            "cam-1/dev0/capture",
            pytest.approx(100 * (1 - 780 / 9360)),
            "poor",
            False,
            780.0,
            780.0,
            2,
            2,
            5220.0,
        )
    ]


def test_a_window_reaching_past_now_is_cut_at_now(week: Week, api: TestClient) -> None:
    report = api.get(
        "/api/v1/analytics/reliability", params={"from": WINDOW["from"], "to": "2026-11-01T00:00:00Z"}
    ).json()

    assert report["to"] == "2026-10-26T12:00:00Z"
    assert report["services"][0]["downtime_minutes"] == 165.0


def test_a_quiet_window_meets_the_target_in_the_best_band(week: Week, api: TestClient) -> None:
    # 10-22 00:00 to 10-23 00:00 (1440 min): only G, 30 min on its component, no service.
    report = api.get(
        "/api/v1/analytics/reliability", params={"from": "2026-10-22T00:00:00Z", "to": "2026-10-23T00:00:00Z"}
    ).json()

    assert report["services"] == []
    (component,) = report["components"]
    assert component["availability_percent"] == pytest.approx(100 * (1 - 30 / 1440))
    assert (component["band"], component["meets_target"]) == ("fair", False)


def test_weights_and_target_come_from_the_settings(database_url: str, tmp_path: Path) -> None:
    settings = test_settings(
        database_url,
        tmp_path,
        analytics_partial_outage_weight=1.0,
        analytics_degraded_weight=0.0,
        analytics_availability_target=90.0,
    )
    app = create_app(settings)
    with TestClient(app) as api:
        api.headers.update(key_for(app.state.hub, Scope.READ, Scope.WRITE))
        clock.use_clock(lambda: NOW.replace(hour=10))
        try:
            created = api.post(
                "/api/v1/incidents",
                json={
                    "title": "slow search",
                    "affected_services": [
                        {"name": "search", "impact": "partial_outage"},
                        {"name": "images", "impact": "degraded"},
                    ],
                },
            ).json()
            clock.use_clock(lambda: NOW)
            report = api.get(
                "/api/v1/analytics/reliability", params={"from": "2026-10-26T00:00:00Z", "to": WINDOW["to"]}
            ).json()
        finally:
            clock.use_clock(None)
    assert created["status"] == "OPEN"
    # Open 10:00 to NOW 12:00 of a 720-minute window: search at weight 1 loses 120 min, images nothing.
    by_name = {s["name"]: s for s in report["services"]}
    assert by_name["search"]["availability_percent"] == pytest.approx(100 * (1 - 120 / 720))
    assert by_name["search"]["meets_target"] is False
    assert (by_name["images"]["availability_percent"], by_name["images"]["band"]) == (100.0, "excellent")
    assert by_name["images"]["impacted_minutes"] == 120.0
    assert [s["name"] for s in report["services"]] == ["images", "search"]


def test_reliability_csv_round_trip(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/reliability", params=WINDOW).json()
    answer = api.get("/api/v1/analytics/reliability", params=WINDOW, headers={"Accept": "text/csv"})

    rows = list(csv.DictReader(io.StringIO(answer.text)))
    expected = [*report["services"], *report["components"]]
    assert [(r["kind"], r["name"], int(r["rank"])) for r in rows] == [
        (e["kind"], e["name"], e["rank"]) for e in expected
    ]
    for row, entity in zip(rows, expected, strict=True):
        assert float(row["availability_percent"]) == pytest.approx(entity["availability_percent"])
        assert float(row["downtime_minutes"]) == entity["downtime_minutes"]
        assert row["meets_target"] == ("true" if entity["meets_target"] else "false")
        assert (float(row["mtbf_minutes"]) if row["mtbf_minutes"] else None) == entity["mtbf_minutes"]
