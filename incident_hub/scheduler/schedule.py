"""When passes run: every interval, an incremental pass per enabled connector, and a full sweep where the
last one began `full_every` ago — only on the replica holding the leader lock.

Plain asyncio rather than a scheduler library: the schedule's state is the `reconciliation_runs` table
(a replica that takes over the lock sweeps when the previous leader's last sweep says it is due, not
when a timer in a process that died would have fired), connectors come and go through the API, and one
loop that reads both every interval is all the scheduling there is (see docs/reconciliation.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from incident_hub.clock import utcnow
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.scheduler.leader import LeaderLock
from incident_hub.scheduler.reconciler import Reconciler
from incident_hub.scheduler.runs import PassKind

log = logging.getLogger(__name__)


class Schedule:
    def __init__(
        self,
        reconciler: Reconciler,
        registry: ConnectorRegistry,
        lock: LeaderLock,
        *,
        interval: timedelta,
        full_every: timedelta,
    ) -> None:
        self.reconciler = reconciler
        self.registry = registry
        self.lock = lock
        self.interval = interval
        self.full_every = full_every

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every interval (the first after one interval) until `stop` is set; then let the lock go."""
        log.info("reconciler started", extra={"interval_seconds": self.interval.total_seconds()})
        try:
            while not await _stopped(stop, self.interval.total_seconds()):
                try:
                    await self.tick(stop)
                except Exception:
                    log.exception("reconciler tick failed")
        finally:
            await asyncio.to_thread(self.lock.close)
            log.info("reconciler stopped")

    async def tick(self, stop: asyncio.Event | None = None) -> bool:
        """Run what is due if this replica leads; says whether it did."""
        if not await asyncio.to_thread(self.lock.hold):
            return False
        now = utcnow()
        due = [
            state.config.id
            for state in await asyncio.to_thread(self.registry.states)
            if state.config.enabled and not state.paused(now)
        ]
        await asyncio.gather(*(self._connector(connector_id, stop) for connector_id in due))
        return True

    async def _connector(self, connector_id: str, stop: asyncio.Event | None) -> None:
        try:
            await self.reconciler.run(connector_id, PassKind.INCREMENTAL, trigger="schedule", stop=stop)
            last = await asyncio.to_thread(self.reconciler.runs.last_started, connector_id, PassKind.FULL)
            if (stop is None or not stop.is_set()) and (last is None or utcnow() - last >= self.full_every):
                await self.reconciler.run(connector_id, PassKind.FULL, trigger="schedule", stop=stop)
        except Exception:
            log.exception("reconciling a connector failed", extra={"connector": connector_id})


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop` is set; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
