"""The overview in a real browser (Debian's headless Chromium): after logging in, an admin lands on it,
sees the week's figures — the same numbers the analytics API gives — the active incidents and three
charts that load and draw; screenshots of the page go to `$INCIDENT_HUB_TEST_ARTIFACTS/admin-ui/...`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from incident_hub.analytics.overview import duration, percent
from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from incident_hub.serving import ServerThread
from tests.analytics.conftest import NOW, FakeClock, build_week
from tests.conftest import Shots, test_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def served(
    database_url: str, tmp_path: Path, fake_clock: FakeClock
) -> Iterator[tuple[str, httpx.Client, str]]:
    app = create_app(test_settings(database_url, tmp_path))
    with ServerThread(app) as server:
        hub: Hub = app.state.hub
        key = hub.api_keys.create("overview", [Scope.ADMIN]).key
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            build_week(api, fake_clock)
            yield server.url, api, key


def test_an_admin_lands_on_the_overview_and_sees_the_apis_figures(
    page: Page, served: tuple[str, httpx.Client, str], shots: Shots
) -> None:
    url, api, key = served
    page.goto(f"{url}/admin")
    page.fill("#api_key", key)
    page.click("form[action='/admin/login'] button[type=submit]")
    expect(page).to_have_url(f"{url}/admin/overview")
    expect(page.locator("#figures .tile")).to_have_count(7)

    window = {"from": (NOW - timedelta(days=7)).isoformat(), "to": NOW.isoformat()}
    times: dict[str, Any] = api.get("/api/v1/analytics/response-times", params=window).json()["overall"]
    reliability = api.get("/api/v1/analytics/reliability", params=window).json()
    now = api.get("/api/v1/analytics/now").json()

    def shown(key: str) -> str:
        return page.locator(f"[data-figure={key}] .value").inner_text().strip()

    assert shown("mtta") == duration(times["mtta"]["mean_seconds"])
    assert shown("mttr") == duration(times["mttr"]["mean_seconds"])
    assert shown("sla_resolve") == percent(times["sla_resolve"]["share_met"] * 100)
    least = min(s["availability_percent"] for s in reliability["services"])
    assert shown("availability") == percent(least, 3)
    assert page.locator("[data-figure=mttr]").get_attribute("data-state") == "bad"
    expect(page.locator("#active tbody tr")).to_have_count(now["active"])
    for service in reliability["services"]:
        row = page.locator(f'#availability tr[data-service="{service["name"]}"]')
        expect(row).to_contain_text(percent(service["availability_percent"], 3))

    for chart in ("#chart-incidents", "#chart-mttr", "#chart-availability"):
        image = page.locator(chart)
        image.scroll_into_view_if_needed()
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    shots.take(page, "overview-7-days")

    page.click("nav.tabs a[href='/admin/overview?days=30']")
    expect(page.locator("nav.tabs a[aria-current=page]")).to_have_text("30 days")
    shots.take(page, "overview-30-days")
