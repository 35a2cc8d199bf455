"""The running hub: database, services and background workers, built once from `Settings`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry

from incident_hub.api.auth import ApiKeys
from incident_hub.api.throttle import FailureThrottle
from incident_hub.audit import AuditLog
from incident_hub.connectors.base import ConnectorError
from incident_hub.connectors.registry import ConnectorRegistry, unreadable_secrets
from incident_hub.incidents import IncidentService
from incident_hub.mapping.store import MappingStore
from incident_hub.metrics import OutboxCollector
from incident_hub.scheduler.leader import LeaderLock
from incident_hub.scheduler.reconciler import Reconciler
from incident_hub.scheduler.schedule import Schedule
from incident_hub.settings import Settings
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.retention import Retention, RetentionPolicy
from incident_hub.sync.apply import Applier
from incident_hub.sync.dispatcher import Dispatcher
from incident_hub.sync.inbox import Inbox
from incident_hub.sync.outbox import Outbox
from incident_hub.sync.push import ConnectorTarget
from incident_hub.sync.retry import RetryPolicy
from incident_hub.sync.subscribers import SubscriberTarget, Subscriptions

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url())
        self.api_keys = ApiKeys(
            self.db,
            settings.api_key_cache_seconds,
            FailureThrottle(settings.auth_failure_burst, settings.auth_failure_refill_per_second),
        )
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
        self.connectors = ConnectorRegistry(
            self.db,
            failure_threshold=settings.connector_failure_threshold,
            cool_down_seconds=settings.connector_cool_down_seconds,
        )
        self.mappings = MappingStore(self.db, self.connectors)
        self.connectors.use_mappings(self.mappings.in_use)
        self.audit = AuditLog(self.db)
        self.dispatcher.targets["connector"] = ConnectorTarget(
            self.db, self.connectors, self.incidents, self.mappings
        )
        self.inbox = Inbox(
            self.db,
            self.connectors,
            Applier(self.incidents, self.connectors.owners),
            timedelta(hours=settings.webhook_max_age_hours),
            mappings=self.mappings,
            batch=settings.inbox_batch,
        )
        self.reconciler = Reconciler(
            self.db,
            self.connectors,
            self.inbox.applier,
            overlap=timedelta(seconds=settings.reconcile_overlap_seconds),
            first_lookback=timedelta(minutes=settings.reconcile_first_lookback_minutes),
            rate_fraction=settings.reconcile_rate_fraction,
            page_size=settings.reconcile_page_size,
        )
        self.schedule = Schedule(
            self.reconciler,
            self.connectors,
            LeaderLock(self.db),
            interval=timedelta(seconds=settings.reconcile_interval_seconds),
            full_every=timedelta(minutes=settings.reconcile_full_minutes),
        )
        self._inbox_wakeups: list[asyncio.Event] = []
        self._next_wakeup = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subscriptions = Subscriptions(self.db)
        self.outbox = Outbox(self.db)
        self.metrics_registry = CollectorRegistry(auto_describe=False)
        self.metrics_registry.register(OutboxCollector(self.db))
        self.retention = Retention(
            self.db,
            RetentionPolicy(
                rejections_days=settings.retention_rejections_days,
                inbox_days=settings.retention_inbox_days,
                deliveries_days=settings.retention_deliveries_days,
            ),
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def migrate(self) -> None:
        migrate.upgrade(self.db)
        if self.settings.config is not None:
            self.connectors.load_file(self.settings.config)

    def inbox_received(self) -> None:
        """A webhook was stored: process it now rather than at the next poll (safe from any thread)."""
        if self._loop is not None and self._inbox_wakeups:
            # One applier per webhook, in turn: waking all of them would send each to claim the same row.
            self._next_wakeup = (self._next_wakeup + 1) % len(self._inbox_wakeups)
            self._loop.call_soon_threadsafe(self._inbox_wakeups[self._next_wakeup].set)

    def log_configured_connectors(self) -> None:
        """Say at start-up which connectors this hub syncs, which of them cannot read a credential, and
        warn when there are none (every change would stay in the hub)."""
        states = self.connectors.states()
        if not states:
            log.warning(
                "no connectors configured: set INCIDENT_HUB_CONFIG to a connectors file "
                "(docs/connectors.md) or add them with PUT /api/v1/connectors/{id}"
            )
            return
        listed = ", ".join(
            f"{s.config.id} ({s.config.kind}{'' if s.config.enabled else ', disabled'})" for s in states
        )
        log.info(f"connectors: {listed}", extra={"connectors": [s.config.id for s in states]})
        for state in states:
            try:
                unreadable = unreadable_secrets(state.config)
            except ConnectorError as error:
                unreadable = str(error)
            if unreadable is not None and state.config.enabled:
                log.warning(
                    "connector cannot read its credentials: its deliveries will fail",
                    extra={"connector": state.config.id, "reason": unreadable},
                )

    async def start(self) -> None:
        """Start the background workers (inbox, dispatcher, SLA watch, reconciler) on the running loop."""
        await asyncio.to_thread(self.log_configured_connectors)
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # Each applier has its own wake-up: one applier clearing a shared event could leave another asleep.
        self._inbox_wakeups = [asyncio.Event() for _ in range(self.settings.resolved_inbox_appliers())]
        for number, wakeup in enumerate(self._inbox_wakeups):
            applier = self.inbox.run(self._stop, wakeup, self.settings.inbox_poll_seconds)
            self._tasks.append(asyncio.create_task(applier, name=f"inbox-{number}"))
        if self.settings.dispatch_enabled:
            self._tasks.append(asyncio.create_task(self.dispatcher.run(self._stop), name="dispatcher"))
        self._tasks.append(asyncio.create_task(self._watch_sla(), name="sla-watch"))
        if self.settings.reconcile_enabled:
            self._tasks.append(asyncio.create_task(self.schedule.run(self._stop), name="reconciler"))
        self._tasks.append(asyncio.create_task(self.retention.run(self._stop), name="retention"))

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
        await self.connectors.close()
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
