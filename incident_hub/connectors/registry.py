"""Configured connector instances: from the YAML file (`INCIDENT_HUB_CONFIG`) and the admin API, stored in
the `connectors` table, built into `Connector` objects, paused and resumed by the circuit breaker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select

from incident_hub.clock import as_utc, utcnow
from incident_hub.connectors.base import (
    Connector,
    ConnectorConfig,
    ConnectorError,
    build,
    secret_problems,
)
from incident_hub.errors import InvalidRequest, NotFound
from incident_hub.events import invalidate_targets
from incident_hub.mapping.document import MappingDocument
from incident_hub.store.db import Database
from incident_hub.store.tables import ConnectorRow

log = logging.getLogger(__name__)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connectors: list[ConnectorConfig] = []


def read_config_file(path: Path) -> list[ConnectorConfig]:
    try:
        loaded: Any = yaml.safe_load(path.read_text()) or {}
        return ConfigFile.model_validate(loaded).connectors
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise ConnectorError(f"cannot use {path}: {error}") from error


@dataclass(frozen=True)
class ConnectorState:
    config: ConnectorConfig
    source: str
    paused_until: datetime | None
    pause_reason: str | None
    consecutive_failures: int

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


class ConnectorRegistry:
    """The live set of connectors. Instances are rebuilt when their stored configuration changes."""

    def __init__(
        self,
        db: Database,
        *,
        failure_threshold: int = 5,
        cool_down_seconds: float = 300.0,
        cache_seconds: float = 1.0,
    ) -> None:
        self.db = db
        # Every push and every webhook asks for its connector's state: they share one read of the table
        # per `cache_seconds` (writes through this registry refresh it at once; other replicas' writes
        # are seen within `cache_seconds`).
        self.cache_seconds = cache_seconds
        self._cache: tuple[float, dict[str, ConnectorState]] | None = None
        self.failure_threshold = failure_threshold
        self.cool_down = timedelta(seconds=cool_down_seconds)
        self._instances: dict[str, tuple[dict[str, Any], Connector]] = {}
        # Replaced instances may still be in use by a push in flight: closed at shutdown, not at once.
        self._retired: list[Connector] = []
        self._lock = threading.Lock()
        self._mappings: Callable[[Connector], MappingDocument | None] | None = None

    # ---- configuration ------------------------------------------------------------------------------

    def load_file(self, path: Path) -> None:
        """Store the file's connectors (the file is the source of truth for the ids it names)."""
        for config in read_config_file(path):
            self.upsert(config, source="file")

    def upsert(self, config: ConnectorConfig, *, source: str = "api") -> ConnectorState:
        build(config)  # fails early on an unknown kind or bad options
        now = utcnow()
        stored = config.model_dump(mode="json", exclude={"id"})
        with self.db.write() as session:
            row = session.get(ConnectorRow, config.id)
            if row is None:
                row = ConnectorRow(
                    id=config.id,
                    kind=config.kind,
                    config=stored,
                    source=source,
                    enabled=config.enabled,
                    consecutive_failures=0,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            else:
                if row.source == "file" and source != "file":
                    raise InvalidRequest(f"connector {config.id} is defined in the configuration file")
                row.kind, row.config, row.enabled, row.updated_at = config.kind, stored, config.enabled, now
            state = _state(row)
        self.invalidate()
        return state

    def delete(self, connector_id: str) -> None:
        with self.db.write() as session:
            row = session.get(ConnectorRow, connector_id)
            if row is None:
                raise NotFound(f"no connector {connector_id}")
            if row.source == "file":
                raise InvalidRequest(f"connector {connector_id} is defined in the configuration file")
            session.delete(row)
        self.invalidate()

    def invalidate(self) -> None:
        with self._lock:
            self._cache = None
        invalidate_targets()

    def _snapshot(self) -> dict[str, ConnectorState]:
        now = time.monotonic()
        with self._lock:
            if self._cache is not None and now - self._cache[0] < self.cache_seconds:
                return self._cache[1]
        with self.db.read() as session:
            states = {
                r.id: _state(r) for r in session.scalars(select(ConnectorRow).order_by(ConnectorRow.id))
            }
        with self._lock:
            self._cache = (now, states)
        return states

    def states(self) -> list[ConnectorState]:
        return list(self._snapshot().values())

    def state(self, connector_id: str) -> ConnectorState:
        state = self._snapshot().get(connector_id)
        if state is None:
            raise NotFound(f"no connector {connector_id}")
        return state

    def get(self, connector_id: str) -> Connector:
        """The connector instance, built from its current stored configuration, translating with the
        current stored mapping (see `use_mappings`)."""
        state = self.state(connector_id)
        stored = state.config.model_dump(mode="json")
        with self._lock:
            cached = self._instances.get(connector_id)
            if cached is not None and cached[0] == stored:
                instance = cached[1]
                cached = None
            else:
                instance = build(state.config)
                self._instances[connector_id] = (stored, instance)
        if cached is not None:
            self._retired.append(cached[1])
        # Outside the lock: the source may read the registry's state.
        if self._mappings is not None:
            instance.use_mapping(self._mappings(instance))
        return instance

    def every(self) -> list[Connector]:
        """Every configured connector that can be built (a broken configuration is left out)."""
        found = []
        for state in self.states():
            try:
                found.append(self.get(state.config.id))
            except (NotFound, ConnectorError):
                continue
        return found

    def use_mappings(self, source: Callable[[Connector], MappingDocument | None]) -> None:
        """Hand every connector `get` returns the mapping `source` gives for it (the stored current
        version), so what a connector reads internally (Jira's status names) is what the hub maps with."""
        self._mappings = source

    def owners(self) -> dict[str, str]:
        """Canonical field -> the connector that owns it (per-field ownership, where configured)."""
        return {field: s.config.id for s in self.states() if s.config.enabled for field in s.config.owns}

    def enabled_ids(self) -> list[str]:
        return [s.config.id for s in self.states() if s.config.enabled]

    # ---- circuit breaker ----------------------------------------------------------------------------

    def record_success(self, connector_id: str) -> None:
        known = self._snapshot().get(connector_id)
        if known is not None and not known.consecutive_failures and known.paused_until is None:
            return  # the common case costs no write
        with self.db.write() as session:
            row = session.get(ConnectorRow, connector_id)
            if row is not None and (row.consecutive_failures or row.paused_until):
                row.consecutive_failures = 0
                row.paused_until = None
                row.pause_reason = None
        self.invalidate()

    def record_failure(self, connector_id: str, reason: str) -> bool:
        """Count a failed push; pause the connector after `failure_threshold` in a row. True if paused now."""
        with self.db.write() as session:
            row = session.get(ConnectorRow, connector_id)
            if row is None:
                return False
            row.consecutive_failures += 1
            now = utcnow()
            # After a cool-down the connector is tried again (half open): one more failure pauses it for
            # another cool-down, or a long outage would spend every delivery's attempts and kill them.
            closed = row.paused_until is None or as_utc(row.paused_until) <= now
            if row.consecutive_failures >= self.failure_threshold and closed:
                row.paused_until = now + self.cool_down
                row.pause_reason = f"{row.consecutive_failures} failures in a row; last: {reason[:500]}"
                log.warning("connector paused", extra={"connector": connector_id, "reason": row.pause_reason})
                paused = True
            else:
                paused = False
        self.invalidate()
        return paused

    def resume(self, connector_id: str) -> ConnectorState:
        with self.db.write() as session:
            row = session.get(ConnectorRow, connector_id)
            if row is None:
                raise NotFound(f"no connector {connector_id}")
            row.paused_until, row.pause_reason, row.consecutive_failures = None, None, 0
            state = _state(row)
        self.invalidate()
        return state

    async def close(self) -> None:
        with self._lock:
            instances = [i for _, i in self._instances.values()] + self._retired
            self._instances.clear()
            self._retired = []
        for instance in instances:
            await instance.close()


def unreadable_secrets(config: ConnectorConfig) -> str | None:
    """Which of the connector's credentials cannot be read and why, as one phrase; None if all can."""
    problems = secret_problems(config, build(config).options)
    failing = [f"{name}: {problem}" for name, problem in problems.items() if problem is not None]
    return "; ".join(failing) or None


def _state(row: ConnectorRow) -> ConnectorState:
    return ConnectorState(
        config=ConnectorConfig.model_validate({"id": row.id, **row.config}),
        source=row.source,
        paused_until=row.paused_until,
        pause_reason=row.pause_reason,
        consecutive_failures=row.consecutive_failures,
    )
