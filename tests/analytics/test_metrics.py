"""The headline figures on /metrics, at NOW of the fixture week."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.analytics.conftest import Week


def _samples(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = api.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("incident_hub_incidents_")
    }


def test_active_incidents_by_severity_and_last_weeks_means(week: Week, api: TestClient) -> None:
    samples = _samples(api)

    assert {labels[0][1]: value for (name, labels), value in samples.items() if name.endswith("_active")} == {
        "SEV1_CRITICAL": 1.0,
        "SEV2_HIGH": 0.0,
        "SEV3_MEDIUM": 0.0,
        "SEV4_LOW": 1.0,
    }
    # The 7 days before NOW start at 10-19 12:00, H's detection: the window's seven incidents and H
    # (acknowledged in 1800 s, resolved in 46800 s). MTTA (7740 + 1800) / 7, MTTR (27000 + 46800) / 6.
    assert samples[("incident_hub_incidents_mtta_seconds", ())] == pytest.approx((7740 + 1800) / 7)
    assert samples[("incident_hub_incidents_mttr_seconds", ())] == pytest.approx((27000 + 46800) / 6)
    assert samples[("incident_hub_incidents_mttd_seconds", ())] == 60.0
