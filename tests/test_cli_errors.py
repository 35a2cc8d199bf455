"""Ordinary mistakes print one line, `incident-hub: <reason>`, and exit 1; never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from incident_hub.cli import app
from incident_hub.console.errors import ordinary_reason
from incident_hub.serving import free_port
from incident_hub.settings import get_settings
from tests.cli_support import Cli, arranged, cli

__all__ = ["arranged", "cli"]  # fixtures

SERVE = "from incident_hub.cli import main; main()"


def _one_line(result: Result, reason: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("incident-hub: "), result.stderr
    assert reason in result.stderr, result.stderr


def _run(env: dict[str, str], *args: str) -> Result:
    """The CLI with exactly these INCIDENT_HUB_* settings."""
    clean = {k: None for k in os.environ if k.startswith("INCIDENT_HUB_")}
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env={**clean, **env})
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "args",
    [
        ("connectors", "check", "nope"),
        ("connectors", "health", "nope"),
        ("mappings", "export", "nope"),
        ("reconcile", "now", "nope"),
    ],
)
def test_unknown_connector_is_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    _one_line(cli(*args), "incident-hub: no connector nope")


def test_unreachable_database_is_one_line() -> None:
    url = f"postgresql+psycopg://hub:s3cret-pw@127.0.0.1:{free_port()}/hub"
    result = _run({"INCIDENT_HUB_DATABASE_URL": url}, "deliveries", "list")
    _one_line(result, "database unreachable")
    assert "s3cret-pw" not in result.output


def test_read_only_sqlite_database_is_one_line(tmp_path: Path) -> None:
    # A database SQLite may only read (as in a read-only data directory, which root would not see as such).
    with sqlite3.connect(tmp_path / "hub.db") as connection:
        connection.execute("CREATE TABLE unrelated (id INTEGER)")
    url = f"sqlite:///file:{tmp_path / 'hub.db'}?mode=ro&uri=true"
    _one_line(_run({"INCIDENT_HUB_DATABASE_URL": url}, "connectors", "list"), "is read-only")


def test_data_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _run({"INCIDENT_HUB_DATA_DIR": str(blocker / "data")}, "apikey", "list")
    _one_line(result, f"cannot create the data directory {blocker / 'data'}")


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    result = _run({"INCIDENT_HUB_DATA_DIR": str(tmp_path), "INCIDENT_HUB_PORT": "eighty"}, "db", "current")
    _one_line(result, "INCIDENT_HUB_PORT: Input should be a valid integer")


def test_missing_configuration_file_is_one_line(tmp_path: Path) -> None:
    env = {"INCIDENT_HUB_DATA_DIR": str(tmp_path), "INCIDENT_HUB_CONFIG": str(tmp_path / "nope.yaml")}
    _one_line(_run(env, "connectors", "list"), f"cannot use {tmp_path / 'nope.yaml'}")


def test_unexpected_errors_are_not_shortened() -> None:
    assert ordinary_reason(RuntimeError("a bug")) is None
    assert ordinary_reason(KeyError("x")) is None


def test_serve_on_a_read_only_database_exits_with_one_line(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "hub.db") as connection:
        connection.execute("CREATE TABLE unrelated (id INTEGER)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_")}
    env["INCIDENT_HUB_DATABASE_URL"] = f"sqlite:///file:{tmp_path / 'hub.db'}?mode=ro&uri=true"
    done = subprocess.run(
        [sys.executable, "-c", SERVE, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("incident-hub: the SQLite database"), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
