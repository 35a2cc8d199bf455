"""The hub a command works on: the configured database, as `serve` would have it, without its workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from incident_hub.hub import Hub
from incident_hub.settings import get_settings


@contextmanager
def hub_session() -> Iterator[Hub]:
    """The hub on INCIDENT_HUB_DATABASE_URL, schema upgraded and the configuration file loaded, as `serve`
    would have it; no background workers run. Clients and connections are closed after."""
    hub = Hub(get_settings())
    try:
        hub.migrate()
        yield hub
    finally:
        asyncio.run(_close(hub))


async def _close(hub: Hub) -> None:
    await hub.http.aclose()
    await hub.connectors.close()
    hub.db.dispose()
