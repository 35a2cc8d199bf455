"""Fixtures: every storage test runs on SQLite and on PostgreSQL (each test in its own schema)."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import create_engine, text

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from incident_hub.settings import Settings
from tests.support import Receiver

pytest_plugins = ["tests.security.secret_watch"]

POSTGRES_URL = os.environ.get("INCIDENT_HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_schema() -> Iterator[str]:
    """A fresh schema for one test; the test fails (never skips) when PostgreSQL is unreachable."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {error}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        yield from _postgres_schema()


def test_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": tmp_path,
        "dispatch_poll_seconds": 0.05,
        "delivery_backoff_initial_seconds": 0.01,
        "delivery_backoff_max_seconds": 0.05,
        "delivery_max_attempts": 4,
        "delivery_timeout_seconds": 2.0,
        "delivery_lease_seconds": 2.0,
        "sla_check_seconds": 0.2,
        "log_json": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return test_settings(database_url, tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def hub(app: FastAPI) -> Hub:
    hub: Hub = app.state.hub
    return hub


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app with its lifespan running (migrations, dispatcher), no API key set."""
    with TestClient(app) as test_client:
        yield test_client


def key_for(hub: Hub, *scopes: Scope) -> dict[str, str]:
    issued = hub.api_keys.create("test", list(scopes))
    return {"Authorization": f"Bearer {issued.key}"}


@pytest.fixture
def api(client: TestClient, hub: Hub) -> TestClient:
    """The running app, authenticated with an admin key."""
    client.headers.update(key_for(hub, Scope.ADMIN))
    return client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (CI does)")


# Files whose tests run minutes each: a second run would not fit the CI budget, and their faults are
# the point, so a failure there stands.
NO_RERUN = ("tests/chaos/", "tests/security/test_schema.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A slow test drives servers and sandboxes over loopback on a shared two-core machine, where a
    # starved thread can miss a deadline now and then: it gets one more run (pytest-rerunfailures), and
    # the run's summary names every test that needed it (`R`), for mending.
    for item in items:
        if item.get_closest_marker("slow") and not item.nodeid.startswith(NO_RERUN):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# ---- a real browser (Debian's headless Chromium through Playwright), for the admin UI tests ----------

CHROMIUM = "/usr/bin/chromium"
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Shots:
    """Numbered full-page screenshots of one test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def take(self, page: Page, name: str) -> None:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
        except Exception as error:  # an artifact, not an assertion
            log.warning("screenshot %s not written: %s", path, error)


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Shots:
    root = os.environ.get("INCIDENT_HUB_TEST_ARTIFACTS")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return Shots(Path(root) / "admin-ui" / name if root else tmp_path / "screenshots")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "Content Security" in message.text else None,
    )
    page.on("pageerror", lambda error: refused.append(str(error)))
    yield page
    context.close()
    # htmx and the pages run under the strict Content-Security-Policy without a script error.
    assert refused == []
