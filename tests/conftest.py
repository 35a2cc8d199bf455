"""Fixtures: every storage test runs on SQLite and on PostgreSQL (each test in its own schema)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
