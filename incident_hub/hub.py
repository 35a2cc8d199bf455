"""The running hub: database, services and background workers, built once from `Settings`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from prometheus_client import CollectorRegistry

from incident_hub.api.auth import ApiKeys
from incident_hub.incidents import IncidentService
from incident_hub.metrics import OutboxCollector
from incident_hub.settings import Settings
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.sync.dispatcher import Dispatcher
from incident_hub.sync.outbox import Outbox
from incident_hub.sync.retry import RetryPolicy
from incident_hub.sync.subscribers import SubscriberTarget, Subscriptions

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url())
        self.api_keys = ApiKeys(self.db, settings.api_key_cache_seconds)
        self.http = httpx.AsyncClient(timeout=settings.delivery_timeout_seconds, follow_redirects=False)
        self.retry_policy = RetryPolicy(
            max_attempts=settings.delivery_max_attempts,
            initial_backoff=settings.delivery_backoff_initial_seconds,
            max_backoff=settings.delivery_backoff_max_seconds,
            retry_after_cap=settings.delivery_retry_after_max_seconds,
        )
        self.dispatcher = Dispatcher(
            self.db,
            {"subscriber": SubscriberTarget(self.db, self.http)},
            self.retry_policy,
            batch=settings.dispatch_batch,
            concurrency=settings.dispatch_concurrency,
            lease_seconds=settings.delivery_lease_seconds,
            poll_seconds=settings.dispatch_poll_seconds,
            attempt_timeout=settings.delivery_timeout_seconds,
        )
        self.incidents = IncidentService(self.db, settings.sla_policy(), on_commit=self.dispatcher.wake)
        self.subscriptions = Subscriptions(self.db)
        self.outbox = Outbox(self.db)
        self.metrics_registry = CollectorRegistry(auto_describe=False)
        self.metrics_registry.register(OutboxCollector(self.db))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def migrate(self) -> None:
        migrate.upgrade(self.db)

    async def start(self) -> None:
        """Start the background workers (dispatcher, SLA watch) on the running loop."""
        self._stop = asyncio.Event()
        if self.settings.dispatch_enabled:
            self._tasks.append(asyncio.create_task(self.dispatcher.run(self._stop), name="dispatcher"))
        self._tasks.append(asyncio.create_task(self._watch_sla(), name="sla-watch"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            if task.get_name() == "sla-watch":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.http.aclose()
        self.db.dispose()

    async def _watch_sla(self) -> None:
        while True:
            try:
                breached = await asyncio.to_thread(self.incidents.check_sla)
                if breached:
                    log.info("SLA breaches recorded", extra={"count": breached})
            except Exception:
                log.exception("SLA check failed")
            await asyncio.sleep(self.settings.sla_check_seconds)
