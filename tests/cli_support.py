"""Fixtures for the command-line tests: the CLI in-process on the test database, and a hub beside it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from incident_hub.cli import app
from incident_hub.hub import Hub
from incident_hub.settings import get_settings
from tests.conftest import test_settings

Cli = Callable[..., Result]


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """`incident-hub ARGS...` on the test database; stdout and stderr apart."""
    monkeypatch.setenv("INCIDENT_HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("INCIDENT_HUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("INCIDENT_HUB_CONFIG", raising=False)

    def run(*args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args), input=input)

    yield run
    get_settings.cache_clear()


@pytest.fixture
def arranged(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """A hub on the same database, to arrange what the commands then find."""
    hub = Hub(test_settings(database_url, tmp_path))
    hub.migrate()
    yield hub
    asyncio.run(hub.stop())
