"""Bad report parameters answer a problem with the reason; reports need the read scope."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from tests.conftest import key_for

REPORTS = ("now", "response-times", "reliability", "trends", "recurrence")


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("response-times", {"from": "2026-10-02T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, "must be before"),
        ("reliability", {"from": "2026-10-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, "must be before"),
        ("response-times", {"group_by": "planet"}, "group_by"),
        ("trends", {"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
        ("trends", {"tz": "../../etc/passwd"}, "unknown time zone"),
        ("trends", {"tz": "localtime"}, "unknown time zone"),
        ("response-times", {"from": "9999-12-31T23:59:00-23:59"}, "must lie between"),
        ("trends", {"bucket": "fortnight"}, "bucket"),
        ("trends", {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "more than 1000 days"),
        ("recurrence", {"from": "0001-01-01T00:00:00Z"}, "must lie between"),
        ("reliability", {"from": "not a time"}, "from"),
        ("reliability", {"from": "2999-01-01T00:00:00Z", "to": "2999-01-02T00:00:00Z"}, "has not started"),
    ],
)
def test_bad_parameters_are_a_problem_with_a_reason(
    api: TestClient, path: str, params: dict[str, str], reason: str
) -> None:
    answer = api.get(f"/api/v1/analytics/{path}", params=params)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert reason in answer.json()["detail"]


@pytest.mark.parametrize("path", REPORTS)
def test_reports_need_an_api_key_and_answer_to_a_read_key(client: TestClient, hub: Hub, path: str) -> None:
    assert client.get(f"/api/v1/analytics/{path}").status_code == 401
    answer = client.get(f"/api/v1/analytics/{path}", headers=key_for(hub, Scope.READ))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"


def test_openapi_declares_each_report_as_json_and_csv(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]

    for path in REPORTS:
        content = paths[f"/api/v1/analytics/{path}"]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv"}
        assert "$ref" in content["application/json"]["schema"]
    parameters = {p["name"] for p in paths["/api/v1/analytics/response-times"]["get"]["parameters"]}
    assert {"from", "to", "group_by"} <= parameters
