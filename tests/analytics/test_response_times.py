"""Response times of the seven incidents detected in the window (H was detected before it).

Durations (seconds), by hand from the fixture:
    time to acknowledge  A 240, B 1200, C 600, D 3600, F 300, G 1800 (a signal resolved unacknowledged is
                         acknowledged at resolution), E none yet
    time to resolve      A 3600, B 7200, C 7200, D 7200, G 1800; E and F open
    time to detect       A 90 (first signal 09:58:30), E 30, G 60
SLA (acknowledge / resolve, minutes): SEV1 5/120, SEV2 15/240, SEV3 60/1440, SEV4 240/4320.
"""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from tests.analytics.conftest import WINDOW, Week


def _figures(item: dict[str, object], name: str) -> tuple[object, ...]:
    figure = item[name]
    assert isinstance(figure, dict)
    return tuple(figure[k] for k in ("count", "mean_seconds", "p50_seconds", "p90_seconds", "p99_seconds"))


def test_overall_means_percentiles_and_open_incidents(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/response-times", params=WINDOW).json()
    overall = report["overall"]

    assert (report["from"], report["to"], report["group_by"]) == (WINDOW["from"], WINDOW["to"], None)
    assert report["groups"] == []
    # E and F are open: counted as open, and absent from the resolve figures (never a zero).
    assert (overall["incidents"], overall["open"], overall["unacknowledged"]) == (7, 2, 1)
    # Sorted 240 300 600 1200 1800 3600: mean 7740/6; p50 at rank 2.5 = 600 + .5 * 600; p90 at 4.5 =
    # 1800 + .5 * 1800; p99 at 4.95 = 1800 + .95 * 1800.
    assert _figures(overall, "mtta") == pytest.approx((6, 1290.0, 900.0, 2700.0, 3510.0))
    # Sorted 1800 3600 7200 7200 7200.
    assert _figures(overall, "mttr") == pytest.approx((5, 5400.0, 7200.0, 7200.0, 7200.0))
    # Sorted 30 60 90: p90 at rank 1.8 = 60 + .8 * 30, p99 at 1.98.
    assert _figures(overall, "mttd") == pytest.approx((3, 60.0, 60.0, 84.0, 89.4))
    assert report["targets"] == {"mtta_minutes": 5.0, "mttd_minutes": 2.0, "mttr_minutes": 30.0}


def test_sla_shares_count_open_incidents_as_missed_or_pending(week: Week, api: TestClient) -> None:
    overall = api.get("/api/v1/analytics/response-times", params=WINDOW).json()["overall"]

    # Acknowledge: met A (240 <= 300), C, D, F; missed B (1200 > 900), G (1800 > 300) and E (never
    # acknowledged, 45000 s old at NOW, deadline 300 s).
    assert overall["sla_acknowledge"] == {
        "met": 4,
        "missed": 3,
        "pending": 0,
        "share_met": pytest.approx(4 / 7),
    }
    # Resolve: met A B C D G; missed E (open 45000 s > 7200); F open 135000 s of its 259200: pending.
    assert overall["sla_resolve"] == {"met": 5, "missed": 1, "pending": 1, "share_met": pytest.approx(5 / 6)}


def test_grouped_by_severity(week: Week, api: TestClient) -> None:
    report = api.get("/api/v1/analytics/response-times", params={**WINDOW, "group_by": "severity"}).json()
    groups = {g["key"]: g for g in report["groups"]}

    assert [g["key"] for g in report["groups"]] == ["SEV1_CRITICAL", "SEV4_LOW", "SEV2_HIGH", "SEV3_MEDIUM"]
    sev1 = groups["SEV1_CRITICAL"]  # A, E, G
    assert (sev1["incidents"], sev1["open"]) == (3, 1)
    # 240 and 1800: p90 = 240 + .9 * 1560.
    assert _figures(sev1, "mtta") == pytest.approx((2, 1020.0, 1020.0, 1644.0, 1784.4))
    assert _figures(sev1, "mttr") == pytest.approx((2, 2700.0, 2700.0, 3420.0, 3582.0))
    assert (sev1["sla_acknowledge"]["met"], sev1["sla_acknowledge"]["missed"]) == (1, 2)
    sev4 = groups["SEV4_LOW"]  # D, F
    assert _figures(sev4, "mttr") == pytest.approx((1, 7200.0, 7200.0, 7200.0, 7200.0))
    assert sev4["sla_resolve"] == {"met": 1, "missed": 0, "pending": 1, "share_met": 1.0}
    assert _figures(groups["SEV2_HIGH"], "mtta")[:2] == (1, 1200.0)


def test_grouped_by_service_team_and_source(week: Week, api: TestClient) -> None:
    def grouped(by: str) -> dict[str | None, tuple[int, float | None]]:
        report = api.get("/api/v1/analytics/response-times", params={**WINDOW, "group_by": by}).json()
        return {g["key"]: (g["incidents"], g["mttr"]["mean_seconds"]) for g in report["groups"]}

    # Incidents naming no service (the signals' E and G) are in no service group.
    assert grouped("service") == {"search": (3, 7200.0), "checkout": (2, 5400.0)}
    assert grouped("team") == {"discovery": (3, 7200.0), "payments": (2, 5400.0), None: (2, 1800.0)}
    assert grouped("source") == {None: (3, 7200.0), "prometheus": (2, 5400.0), "signals": (2, 1800.0)}


def test_an_empty_window_has_no_figures(week: Week, api: TestClient) -> None:
    window = {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}
    overall = api.get("/api/v1/analytics/response-times", params=window).json()["overall"]

    assert (overall["incidents"], overall["mtta"]["count"], overall["mtta"]["mean_seconds"]) == (0, 0, None)
    assert overall["sla_resolve"]["share_met"] is None


def test_response_times_csv_round_trip(week: Week, api: TestClient) -> None:
    params = {**WINDOW, "group_by": "severity"}
    groups = api.get("/api/v1/analytics/response-times", params=params).json()["groups"]
    answer = api.get("/api/v1/analytics/response-times", params=params, headers={"Accept": "text/csv"})

    assert answer.status_code == 200
    assert 'filename="response-times.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["key"] for r in rows] == [g["key"] for g in groups]
    for row, group in zip(rows, groups, strict=True):
        for name in ("mttd", "mtta", "mttr"):
            for figure, value in group[name].items():
                cell = row[f"{name}_{figure}"]
                assert (float(cell) if cell else None) == pytest.approx(value)
        for deadline in ("sla_acknowledge", "sla_resolve"):
            assert int(row[f"{deadline}_met"]) == group[deadline]["met"]
            assert int(row[f"{deadline}_pending"]) == group[deadline]["pending"]
        assert int(row["open"]) == group["open"]
