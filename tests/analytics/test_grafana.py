"""The Grafana dashboard (grafana/dashboards/incident-hub.json) and its provisioning files: the model is a
dashboard Grafana can load, and every panel's SQL, expanded as Grafana expands it, gives on the week's
incidents (tests/analytics/conftest.py) the figures the analytics API gives for the same window.

Grafana reads PostgreSQL only, so these run on PostgreSQL only. By hand, over the window 10-20 00:00 to NOW
(10-26 12:00):
    active E, F (E unacknowledged); detected in the window A B G F C D E (H was detected before it)
    SLA breached  B (acknowledged after 20 min, SEV2 15 min), G (30 min, SEV1 5 min), E (never acknowledged)
    MTTA 7740 / 6 = 1290 s; MTTR 27000 / 5 = 5400 s
    MTTR per UTC day  10-21 (A 3600, B 7200) 5400; 10-22 (G) 1800; 10-25 (C, D) 7200
    availability  checkout 100 * (1 - 165 / 9360), search 100 * (1 - 592.5 / 9360) (test_reliability.py)
Over the last 24 hours (10-25 12:00 to NOW, 1440 min), the availability panel's own range: search only
(checkout had no incident), two incidents: F degraded all along, 1440 * 0.25 = 360, and D partial 10-25
22:30 to 10-26 00:30 raises 120 min to 0.5: 390 min down, 100 * (1 - 390 / 1440) = 72.9167 %.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from incident_hub.settings import Settings
from tests.analytics.conftest import NOW, WINDOW, FakeClock, Week, at
from tests.conftest import _postgres_schema

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "incident-hub.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "incident-hub.yaml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "incident-hub.yaml"
POSTGRES_TYPE = "grafana-postgresql-datasource"
WINDOW_START = at("10-20", "00:00")
IMPACTS = ("total_outage", "partial_outage", "degraded")


@pytest.fixture
def database_url() -> Iterator[str]:
    """PostgreSQL only: the database Grafana reads."""
    yield from _postgres_schema()


# ---- the macros, as Grafana expands them -------------------------------------------------------------
#
# Grafana's PostgreSQL macros, https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/
# ("Macros"):
#   $__timeFilter(dateColumn)  "Will be replaced by a time range filter using the specified column name.
#                              For example, dateColumn BETWEEN '2017-04-21T05:01:17Z' AND
#                              '2017-04-21T05:06:17Z'"
#   $__timeFrom()              "Will be replaced by the start of the currently active time selection.
#                              For example, '2017-04-21T05:01:17Z'"
#   $__timeTo()                "Will be replaced by the end of the currently active time selection.
#                              For example, '2017-04-21T05:06:17Z'"
#   $__timeGroup(dateColumn,'5m')       "Will be replaced by an expression usable in GROUP BY clause."
#   $__timeGroupAlias(dateColumn,'5m')  "Will be replaced identical to $__timeGroup but with an added
#                                       column alias"
# Grafana 10 and 11 write the group as floor(extract(epoch from dateColumn)/300)*300 and the alias as
# AS "time" (pkg/tsdb/grafana-postgresql-datasource/macros.go); instants are UTC in RFC 3339 with the
# fraction of a second only when there is one. A panel's relative time ("timeFrom": "24h") replaces the
# dashboard's range by the last 24 hours before now.
# Template variables are replaced before the macros; ${name:sqlstring} is "a comma-separated string, with
# ' escaped as '' and each value quoted with '"
# (https://grafana.com/docs/grafana/latest/dashboards/variables/variable-syntax/#sqlstring).

_MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}")
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _instant(value: datetime) -> str:
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return f"'{text}Z'"


def _interval_seconds(text: str) -> int:
    found = _INTERVAL.match(text.strip("'"))
    assert found, f"an interval Grafana reads: {text}"
    return int(found.group(1)) * _SECONDS[found.group(2)]


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """The SQL Grafana sends for a panel over [start, end] with the given variable values."""

    def variable(found: re.Match[str]) -> str:
        name, form = found.group(1), found.group(2)
        assert name in variables, f"undefined variable {name}"
        if form == "sqlstring":
            return "'" + variables[name].replace("'", "''") + "'"
        assert form is None, f"a format the expander does not know: {form}"
        return variables[name]

    def macro(found: re.Match[str]) -> str:
        name, args = found.group(1), [arg.strip() for arg in found.group(2).split(",")]
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN {_instant(start)} AND {_instant(end)}"
        if name == "__timeFrom":
            return _instant(start)
        if name == "__timeTo":
            return _instant(end)
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = _interval_seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + ' AS "time"' if name == "__timeGroupAlias" else group
        raise AssertionError(f"a macro the expander does not know: {name}")

    expanded = _MACRO.sub(macro, _VARIABLE.sub(variable, sql))
    assert "$" not in expanded, expanded
    return expanded


def test_expander_follows_grafanas_documented_examples() -> None:
    start, end = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)

    assert expand("WHERE $__timeFilter(dateColumn)", start, end, {}) == (
        "WHERE dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    )
    assert (
        expand("$__timeFrom() $__timeTo()", start, end, {}) == "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17Z'"
    )
    assert expand("SELECT $__timeGroupAlias(dateColumn,'5m')", start, end, {}) == (
        'SELECT floor(extract(epoch from dateColumn)/300)*300 AS "time"'
    )
    assert expand("${w:sqlstring}::numeric", start, end, {"w": "0'5"}) == "'0''5'::numeric"
    half = start.replace(microsecond=500000)
    assert expand("$__timeFrom()", half, end, {}) == "'2017-04-21T05:01:17.5Z'"


# ---- the model ---------------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    model = json.loads(DASHBOARD.read_text())
    assert isinstance(model, dict)
    return model


def _panels() -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in _dashboard()["panels"]}


def _defaults() -> dict[str, str]:
    """Each template variable's default value, as a fresh dashboard opens with it."""
    return {v["name"]: v["current"]["value"] for v in _dashboard()["templating"]["list"]}


def test_dashboard_is_a_grafana_10_or_11_model_every_panel_reading_the_hubs_postgresql() -> None:
    model = _dashboard()

    # Grafana 10.0 writes schema 38, 11.x 39 to 41.
    assert 38 <= model["schemaVersion"] <= 41
    assert (model["uid"], model["title"]) == ("incident-hub", "Incident hub")
    panels = model["panels"]
    assert sorted(p["title"] for p in panels) == [
        "Active incidents",
        "Availability, last 24 hours",
        "MTTA",
        "MTTR",
        "MTTR per day",
        "Recent incidents",
        "Summary",
    ]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys() and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        reference = {"type": POSTGRES_TYPE, "uid": "${datasource}"}
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        for query in panel["targets"]:
            assert query["datasource"] == reference and query["rawQuery"] is True, panel["title"]
            assert query["format"] in ("table", "time_series") and query["rawSql"].strip(), panel["title"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"], source["current"]["value"]) == (
        "datasource",
        POSTGRES_TYPE,
        "incident-hub",
    )
    # The hub's defaults: partial outage 0.5, degraded 0.25, target 99 %.
    assert _defaults() == {
        "datasource": "incident-hub",
        "partial_outage_weight": "0.5",
        "degraded_weight": "0.25",
        "availability_target": "99",
    }
    for name in ("partial_outage_weight", "degraded_weight", "availability_target"):
        assert float(_defaults()[name]) == _setting(f"analytics_{name}")
    for name in ("partial_outage_weight", "degraded_weight", "availability_target"):
        values = [option["value"] for option in variables[name]["options"]]
        assert variables[name]["query"].split(",") == values and variables[name]["current"]["value"] in values


def _setting(name: str) -> float:
    """The default of one of the hub's settings."""
    default = Settings.model_fields[name].default
    assert isinstance(default, float)
    return default


def _steps(field_config: dict[str, Any]) -> list[tuple[Any, str]]:
    return [(step["value"], step["color"]) for step in field_config["thresholds"]["steps"]]


def test_thresholds_colour_the_bands_and_the_targets() -> None:
    panels = _panels()

    availability = next(
        o
        for o in panels["Availability, last 24 hours"]["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "Availability"
    )
    thresholds = next(p["value"] for p in availability["properties"] if p["id"] == "thresholds")
    assert [(s["value"], s["color"]) for s in thresholds["steps"]] == [
        (None, "red"),
        (95.0, "orange"),
        (99.0, "green"),
        (99.9, "dark-green"),
    ]
    assert panels["Availability, last 24 hours"]["timeFrom"] == "24h"
    # MTTA < 5 min, MTTR < 30 min (the hub's default targets), in seconds.
    assert _steps(panels["MTTA"]["fieldConfig"]["defaults"]) == [(None, "green"), (300, "red")]
    assert _steps(panels["MTTR"]["fieldConfig"]["defaults"]) == [(None, "green"), (1800, "red")]
    assert (
        60 * _setting("analytics_mtta_target_minutes"),
        60 * _setting("analytics_mttr_target_minutes"),
    ) == (300, 1800)
    assert _steps(panels["MTTR per day"]["fieldConfig"]["defaults"]) == [(None, "green"), (1800, "red")]
    assert (
        panels["MTTA"]["fieldConfig"]["defaults"]["unit"]
        == panels["MTTR"]["fieldConfig"]["defaults"]["unit"]
        == "s"
    )


# ---- provisioning ------------------------------------------------------------------------------------


def test_provisioning_takes_the_connection_from_the_environment_and_loads_the_dashboard() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert (source["type"], source["uid"]) == (POSTGRES_TYPE, _defaults()["datasource"])
    environment = re.compile(r"^\$\{INCIDENT_HUB_GRAFANA_DB_[A-Z]+\}$")
    connection = [
        source["url"],
        source["user"],
        source["jsonData"]["database"],
        source["jsonData"]["sslmode"],
    ]
    assert all(environment.match(value) for value in connection), connection
    # The password comes from the environment, encrypted by Grafana; never written in the repository.
    assert "password" not in source and "password" not in source["jsonData"]
    assert environment.match(source["secureJsonData"]["password"])

    providers = yaml.safe_load(PROVIDERS.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    # docs/analytics.md mounts grafana/dashboards at the provider's path, where Grafana finds the file, and
    # each provisioning file where Grafana reads its kind.
    docs = (ROOT / "docs" / "analytics.md").read_text()
    assert f"./grafana/dashboards:{path}:ro" in docs
    for kind, file in (("datasources", DATASOURCES), ("dashboards", PROVIDERS)):
        assert file.parent.name == kind
        mount = f"./{file.relative_to(ROOT)}:/etc/grafana/provisioning/{kind}/{file.name}:ro"
        assert mount in docs
    assert DASHBOARD.parent.name == "dashboards" and DASHBOARD.name == "incident-hub.json"
    assert sorted(p.name for p in DASHBOARD.parent.iterdir()) == ["incident-hub.json"]


# ---- the panels on the week's incidents ------------------------------------------------------------------


@dataclass
class Result:
    now: datetime
    rows: list[dict[str, Any]]


def _documented_grant() -> str:
    """The `GRANT SELECT` docs/analytics.md gives Grafana's read-only role."""
    docs = (ROOT / "docs" / "analytics.md").read_text()
    (grant,) = re.findall(r"^GRANT SELECT \(.*\) ON incidents TO incident_hub_grafana;$", docs, re.MULTILINE)
    return str(grant)


@pytest.fixture
def run_panel(settings: Settings) -> Iterator[Callable[..., Result]]:
    """Runs a panel's SQL, expanded for a range, on the test's database (with the database's now()), as a
    role holding only the documented grant."""
    assert settings.database_url is not None
    engine = create_engine(settings.database_url)
    role = f"grafana_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
        connection.exec_driver_sql(f'CREATE ROLE "{role}" NOLOGIN')
        connection.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        connection.exec_driver_sql(_documented_grant().replace("incident_hub_grafana", f'"{role}"'))

    def run(
        title: str, start: datetime, end: datetime, *, panel_range: bool = True, **variables: str
    ) -> Result:
        """`panel_range=False` sets a panel's own relative range aside, to run it over [start, end]."""
        panel = _panels()[title]
        if panel_range and "timeFrom" in panel:
            start = end - timedelta(seconds=_interval_seconds(panel["timeFrom"]))
        (query,) = panel["targets"]
        sql = expand(query["rawSql"], start, end, {**_defaults(), **variables})
        with engine.connect() as connection:
            # One transaction: now() is the same instant in both statements.
            connection.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            now = connection.exec_driver_sql("SELECT now()").scalar_one()
            cursor = connection.exec_driver_sql(sql)
            rows = [dict(row._mapping) for row in cursor]
        return Result(now, rows)

    yield run
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
        connection.exec_driver_sql(f'DROP ROLE "{role}"')
    engine.dispose()


def _wait_for_breach(api: TestClient, incident_id: str) -> None:
    """E misses its deadline while open: the SLA watch records it, a moment after the clock reaches it."""
    deadline = time.monotonic() + 30
    while not api.get(f"/api/v1/incidents/{incident_id}").json()["sla_breached"]:
        assert time.monotonic() < deadline, "the SLA watch did not record E's breach"
        time.sleep(0.1)


def test_summary_mtta_mttr_and_mttr_per_day_equal_the_api(
    week: Week, api: TestClient, run_panel: Callable[..., Result]
) -> None:
    _wait_for_breach(api, week.ids["E"])
    now_report = api.get("/api/v1/analytics/now").json()
    overall = api.get("/api/v1/analytics/response-times", params=WINDOW).json()["overall"]

    (summary,) = run_panel("Summary", WINDOW_START, NOW).rows
    assert summary == {"Active": 2, "Unacknowledged": 1, "Incidents in range": 7, "SLA breached": 3}
    assert (summary["Active"], summary["Unacknowledged"]) == (
        now_report["active"],
        now_report["unacknowledged"],
    )
    assert summary["Incidents in range"] == overall["incidents"]
    # The breaches are all of acknowledgement (B, G, E); no incident missed only its resolve deadline.
    assert summary["SLA breached"] == overall["sla_acknowledge"]["missed"]

    (mtta,) = run_panel("MTTA", WINDOW_START, NOW).rows
    (mttr,) = run_panel("MTTR", WINDOW_START, NOW).rows
    assert float(mtta["MTTA"]) == pytest.approx(overall["mtta"]["mean_seconds"]) == pytest.approx(1290.0)
    assert float(mttr["MTTR"]) == pytest.approx(overall["mttr"]["mean_seconds"]) == pytest.approx(5400.0)

    daily = run_panel("MTTR per day", WINDOW_START, NOW).rows
    series = [(datetime.fromtimestamp(float(r["time"]), UTC), float(r["MTTR"])) for r in daily]
    assert series == [
        (at("10-21", "00:00"), 5400.0),
        (at("10-22", "00:00"), 1800.0),
        (at("10-25", "00:00"), 7200.0),
    ]
    trend = api.get("/api/v1/analytics/trends", params={**WINDOW, "tz": "UTC", "bucket": "day"}).json()
    assert series == [
        (datetime.fromisoformat(b["start"]), b["mttr_seconds"])
        for b in trend["buckets"]
        if b["mttr_seconds"] is not None
    ]


def test_an_empty_range_has_no_mean_and_no_mttr_point(week: Week, run_panel: Callable[..., Result]) -> None:
    quiet = (at("10-23", "00:00"), at("10-24", "00:00"))

    assert run_panel("MTTA", *quiet).rows == [{"MTTA": None}]
    assert run_panel("MTTR", *quiet).rows == [{"MTTR": None}]
    assert run_panel("MTTR per day", *quiet).rows == []
    (summary,) = run_panel("Summary", *quiet).rows
    assert (summary["Incidents in range"], summary["SLA breached"]) == (0, 0)


def _availability(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["Service"],
            float(r["Availability"]),
            r["Band"],
            r["Meets target"],
            float(r["Down time"]),
            float(r["Impacted"]),
            r["Incidents"],
        )
        for r in rows
    ]


def _api_availability(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            s["name"],
            pytest.approx(s["availability_percent"]),
            s["band"],
            s["meets_target"],
            pytest.approx(s["downtime_minutes"]),
            pytest.approx(s["impacted_minutes"]),
            s["incidents"],
        )
        for s in report["services"]
    ]


def test_availability_equals_the_api_over_the_last_24_hours_and_over_the_week(
    week: Week, api: TestClient, run_panel: Callable[..., Result]
) -> None:
    last_day = run_panel("Availability, last 24 hours", WINDOW_START, NOW).rows
    assert _availability(last_day) == [
        ("search", pytest.approx(100 * (1 - 390 / 1440)), "poor", False, 390.0, 1440.0, 2)
    ]
    report = api.get(
        "/api/v1/analytics/reliability",
        params={"from": (NOW - timedelta(hours=24)).isoformat(), "to": WINDOW["to"]},
    ).json()
    assert _availability(last_day) == _api_availability(report)

    # The same SQL over the whole week (overlaps on checkout at the heaviest weight, F open to now): the
    # panel's relative range set aside, as Grafana does with the dashboard's range when it has none.
    week_rows = run_panel("Availability, last 24 hours", WINDOW_START, NOW, panel_range=False).rows
    assert _availability(week_rows) == [
        ("checkout", pytest.approx(100 * (1 - 165 / 9360)), "fair", False, 165.0, 210.0, 3),
        ("search", pytest.approx(100 * (1 - 592.5 / 9360)), "poor", False, 592.5, 2250.0, 3),
    ]
    assert _availability(week_rows) == _api_availability(
        api.get("/api/v1/analytics/reliability", params=WINDOW).json()
    )


def test_availability_follows_the_weight_and_target_variables(
    week: Week, run_panel: Callable[..., Result]
) -> None:
    rows = run_panel(
        "Availability, last 24 hours",
        WINDOW_START,
        NOW,
        panel_range=False,
        partial_outage_weight="1",
        degraded_weight="0",
        availability_target="98",
    ).rows

    # checkout: H 60 min, then A and B 10:00-12:30 all at 1: 210 min. search: only D's 120 min count;
    # F and C are still impacted time, at weight 0.
    assert _availability(rows) == [
        ("search", pytest.approx(100 * (1 - 120 / 9360)), "fair", True, 120.0, 2250.0, 3),
        ("checkout", pytest.approx(100 * (1 - 210 / 9360)), "fair", False, 210.0, 210.0, 3),
    ]


def test_active_incidents_are_the_apis_with_their_running_durations(
    week: Week, api: TestClient, run_panel: Callable[..., Result]
) -> None:
    result = run_panel("Active incidents", WINDOW_START, NOW)
    active = api.get("/api/v1/analytics/now").json()["incidents"]

    # E (SEV1, 10-25 23:30) before F (SEV4, 10-24 22:30): most severe first.
    assert [r["Number"] for r in result.rows] == [a["number"] for a in active]
    assert [a["id"] for a in active] == [week.ids["E"], week.ids["F"]]
    assert [(r["Title"], r["Severity"], r["Status"], r["Team"], r["Detected"]) for r in result.rows] == [
        (a["title"], a["severity"], a["status"], a["assigned_team"], datetime.fromisoformat(a["detected_at"]))
        for a in active
    ]
    # The API runs them to the hub's clock (NOW), the panel to the database's now(): the same durations,
    # each longer by exactly the difference between the two.
    offset = (result.now - NOW).total_seconds()
    assert [float(r["Running"]) - offset for r in result.rows] == pytest.approx(
        [a["running_seconds"] for a in active]
    )
    assert [a["running_seconds"] for a in active] == [12.5 * 3600, 37.5 * 3600]


def test_recent_incidents_are_the_last_20_detected_in_the_range(
    week: Week, api: TestClient, run_panel: Callable[..., Result]
) -> None:
    for index in range(16):
        week.create(f"R{index}", at("10-26", "06:00") + timedelta(minutes=index), severity="SEV4_LOW")
    week.fake.now = NOW
    rows = run_panel("Recent incidents", WINDOW_START, NOW).rows

    listed = api.get("/api/v1/incidents", params={"limit": 200}).json()["items"]
    detected = [i for i in listed if WINDOW_START <= datetime.fromisoformat(i["detected_at"]) <= NOW]
    detected.sort(key=lambda i: (i["detected_at"], i["number"]), reverse=True)

    def seconds(start: str, end: str | None) -> float | None:
        return (
            None
            if end is None
            else (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        )

    # 23 detected in the window (A B G F C D E and the 16 R), the newest 20: R15 to R0, E, D, C, F.
    assert len(detected) == 23 and len(rows) == 20
    assert [r["Number"] for r in rows] == [i["number"] for i in detected[:20]]
    numbers = {i["id"]: i["number"] for i in listed}
    assert [r["Number"] for r in rows[-4:]] == [numbers[week.ids[name]] for name in "EDCF"]
    assert [
        (
            r["Severity"],
            r["Status"],
            r["Team"],
            r["Detected"],
            r["Resolved"],
            r["Time to acknowledge"],
            r["Time to resolve"],
            r["SLA breached"],
        )
        for r in rows
    ] == [
        (
            i["severity"],
            i["status"],
            i["assigned_team"],
            datetime.fromisoformat(i["detected_at"]),
            None if i["resolved_at"] is None else datetime.fromisoformat(i["resolved_at"]),
            seconds(i["detected_at"], i["acknowledged_at"]),
            seconds(i["detected_at"], i["resolved_at"]),
            i["sla_breached"],
        )
        for i in detected[:20]
    ]


def test_availability_equals_the_api_on_random_overlapping_incidents(
    api: TestClient, fake_clock: FakeClock, run_panel: Callable[..., Result]
) -> None:
    """Overlaps of every impact, incidents starting where others end, resolved at detection, open, and
    started before the window: 40 incidents on three services, the same each run."""
    rng = random.Random(14)
    start, end = at("11-02", "00:00"), at("11-03", "00:00")
    moves: list[tuple[datetime, int, str, dict[str, Any] | None]] = []
    for index in range(40):
        detected = start + timedelta(minutes=15 * rng.randrange(-16, 96))
        minutes = rng.choice((0, 15, 30, 60, 240, None))
        if index < 2:
            # Two that began before the window and run into it: one still open, one resolved in it.
            detected, minutes = start - timedelta(hours=2 - index), (None, 240)[index]
        names = rng.sample(["service-0", "service-1", "service-2"], rng.choice((1, 1, 2)))
        services = [{"name": name, "impact": rng.choice(IMPACTS)} for name in names]
        moves.append(
            (detected, index, "create", {"title": f"incident {index}", "affected_services": services})
        )
        if minutes is not None and detected + timedelta(minutes=minutes) < end:
            moves.append((detected + timedelta(minutes=minutes), index, "resolve", None))
    ids: dict[int, str] = {}
    for when, index, move, draft in sorted(moves, key=lambda m: (m[0], m[2] == "resolve", m[1])):
        fake_clock.now = when
        if move == "create":
            answer = api.post("/api/v1/incidents", json=draft)
            assert answer.status_code == 201, answer.text
            ids[index] = answer.json()["id"]
        else:
            answer = api.put(f"/api/v1/incidents/{ids[index]}/status", json={"status": "RESOLVED"})
            assert answer.status_code == 200, answer.text
    fake_clock.now = end

    rows = run_panel("Availability, last 24 hours", start, end).rows
    report = api.get(
        "/api/v1/analytics/reliability", params={"from": start.isoformat(), "to": end.isoformat()}
    ).json()
    assert len(rows) == 3
    assert _availability(rows) == _api_availability(report)
