"""A throw-away database for one benchmark run (a SQLite file in a temporary directory, or a fresh
PostgreSQL schema dropped afterwards), and a hub served in process over it."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from incident_hub.api.auth import Scope
    from incident_hub.hub import Hub

DEFAULT_POSTGRES = os.environ.get(
    "INCIDENT_HUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def database(kind: str, postgres_url: str = DEFAULT_POSTGRES) -> Iterator[str]:
    """The URL of an empty database of `kind` (`sqlite` or `postgresql`) for the block."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def running_hub(url: str, scope: Scope) -> Iterator[tuple[TestClient, Hub]]:
    """The hub's app on `url`, in process (FastAPI's TestClient: routing, validation, SQL, JSON), with a
    key of `scope` on every request; quiet logs."""
    from fastapi.testclient import TestClient

    from incident_hub.api.app import create_app
    from incident_hub.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.model_validate(
            {"database_url": url, "data_dir": Path(data_dir), "log_json": False, "log_level": "WARNING"}
        )
        app = create_app(settings)
        with TestClient(app) as client:
            hub: Hub = app.state.hub
            client.headers["Authorization"] = f"Bearer {hub.api_keys.create('bench', [scope]).key}"
            yield client, hub
