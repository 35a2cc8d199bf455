"""Fixtures of the chaos tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.chaos.proxy import Proxy
from tests.conftest import POSTGRES_URL


@pytest.fixture
def proxied_postgres() -> Iterator[tuple[str, Proxy]]:
    """A fresh schema reached through a proxy that the test can cut (cutting it stands for a PostgreSQL
    restart: connections dropped, new ones refused; the shared server itself is never touched)."""
    url = make_url(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432)).start()
    through = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield through.render_as_string(hide_password=False), proxy
    finally:
        proxy.cut()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
