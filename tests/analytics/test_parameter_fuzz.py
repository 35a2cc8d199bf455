"""Any window and time zone a client may send is answered with a report or a 422 problem, never a 500."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets),
    st.datetimes(min_value=datetime(1969, 12, 1), max_value=datetime(1970, 2, 1), timezones=offsets),
)
zones = st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "America/St_Johns", "Nope/Zone", ""])
reports = st.sampled_from(["response-times", "reliability", "trends", "recurrence"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=reports, start=instants, end=instants, tz=zones, bucket=st.sampled_from(["day", "week"]))
def test_any_window_is_a_report_or_a_problem(
    api: TestClient, path: str, start: datetime | None, end: datetime | None, tz: str, bucket: str
) -> None:
    params = {"tz": tz, "bucket": bucket} if path == "trends" else {}
    if start is not None:
        params["from"] = start.isoformat()
    if end is not None:
        params["to"] = end.isoformat()
    answer = api.get(f"/api/v1/analytics/{path}", params=params)

    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"]
