"""Stored, versioned mapping documents: one history per connector, the current version read by the sync
engine (through a short cache, dropped on save), the shipped default stored as version 1 on first use.

Every change is a new version; a rollback stores a copy of the old one as the newest. A stored document
wins over the connector's option-driven tweaks (Jira `statuses`, ...): version 1 is the shipped default
with those tweaks applied, as the connector had them when it was first used.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from incident_hub.clock import utcnow
from incident_hub.connectors.base import Connector, ConnectorError
from incident_hub.connectors.registry import ConnectorRegistry
from incident_hub.errors import InvalidRequest, NotFound
from incident_hub.mapping import preview
from incident_hub.mapping.document import DEFAULTS, MappingDocument, MappingError, parse
from incident_hub.mapping.validation import READ_ONLY, Problem, check, load
from incident_hub.model import Incident
from incident_hub.store.db import Database
from incident_hub.store.tables import MappingVersionRow

log = logging.getLogger(__name__)

SEED_COMMENT = "shipped default"


class MappingVersion(BaseModel):
    """One stored version of a connector's mapping: the YAML as given and the document it means."""

    model_config = ConfigDict(frozen=True)

    connector_id: str
    version: int
    yaml: str
    document: MappingDocument
    author: str | None
    comment: str | None
    created_at: datetime


class MappingInvalid(InvalidRequest):
    """A mapping document refused, with every problem found (answered 422 with the list)."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0] if problems else Problem(location="$", message="invalid")
        super().__init__(
            f"the mapping has {len(problems)} problem(s); first: {first.location}: {first.message}",
            problems=[p.model_dump() for p in problems],
        )
        self.problems = problems


def to_yaml(document: MappingDocument) -> str:
    """A document as YAML text, without defaults and without the read-only fields."""
    data = document.model_dump(mode="json", exclude_defaults=True, exclude=set(READ_ONLY))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def changed_paths(before: Any, after: Any, path: str = "$") -> list[str]:
    """The JSON-path-like locations where two documents differ (added, removed or changed)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in dict.fromkeys([*before, *after]):
            if key not in before or key not in after:
                found.append(f"{path}.{key}")
            else:
                found += changed_paths(before[key], after[key], f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            p
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for p in changed_paths(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [path]


class MappingStore:
    """The mapping history of every connector (see the module docstring); `hub.mappings`."""

    def __init__(self, db: Database, registry: ConnectorRegistry, *, cache_seconds: float = 1.0) -> None:
        self.db = db
        self.registry = registry
        # Every push and every webhook asks for the current version: one read per `cache_seconds` per
        # connector. A save here drops the entry at once; other replicas see it within `cache_seconds`.
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, MappingVersion]] = {}
        self._lock = threading.Lock()

    # ---- reading ------------------------------------------------------------------------------------

    def current(self, connector_id: str) -> MappingVersion:
        """The version in use (the shipped default is stored as version 1 on first use)."""
        self.registry.state(connector_id)  # NotFound for an unknown connector
        return self._with_state(self._resolve(connector_id))

    def versions(self, connector_id: str) -> list[MappingVersion]:
        """Every version, newest first."""
        self.current(connector_id)
        with self.db.read() as session:
            rows = session.scalars(
                select(MappingVersionRow)
                .where(MappingVersionRow.connector_id == connector_id)
                .order_by(MappingVersionRow.version.desc())
            )
            return [self._with_state(_version(row)) for row in rows]

    def get(self, connector_id: str, version: int) -> MappingVersion:
        self.current(connector_id)
        with self.db.read() as session:
            row = session.scalar(
                select(MappingVersionRow).where(
                    MappingVersionRow.connector_id == connector_id, MappingVersionRow.version == version
                )
            )
            if row is None:
                raise NotFound(f"connector {connector_id} has no mapping version {version}")
            return self._with_state(_version(row))

    def in_use(self, connector: Connector) -> MappingDocument | None:
        """The document `connector` translates with (the registry hands it over on every `get`); None
        when the stored one cannot be read any more (logged: the connector's default is used)."""
        try:
            return self._resolve(connector.id, connector).document
        except (MappingError, ValidationError) as error:
            log.error("stored mapping unusable", extra={"connector": connector.id, "error": str(error)})
            return None

    def _resolve(self, connector_id: str, connector: Connector | None = None) -> MappingVersion:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(connector_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        found = self._latest(connector_id)
        if found is None:
            if connector is None:
                connector = self.registry.get(connector_id)
            found = self._latest(connector_id) or self._seed(connector)
        with self._lock:
            self._cache[connector_id] = (now, found)
        return found

    def _latest(self, connector_id: str) -> MappingVersion | None:
        with self.db.read() as session:
            row = session.scalar(
                select(MappingVersionRow)
                .where(MappingVersionRow.connector_id == connector_id)
                .order_by(MappingVersionRow.version.desc())
                .limit(1)
            )
            return _version(row) if row is not None else None

    def _with_state(self, version: MappingVersion) -> MappingVersion:
        """The version with the circuit breaker's state filled in (read-only fields)."""
        try:
            state = self.registry.state(version.connector_id)
        except NotFound:
            return version
        if not state.paused(utcnow()):
            return version
        document = version.document.model_copy(
            update={"disabled_reason": state.pause_reason, "disabled_until": state.paused_until}
        )
        return version.model_copy(update={"document": document})

    def _seed(self, connector: Connector) -> MappingVersion:
        """Store the connector's default as version 1: the shipped YAML itself when the connector's
        options change nothing, else the default with those changes, as YAML."""
        try:
            document = connector.default_mapping()
        except MappingError:
            document = connector.mapping()  # a third-party connector that overrides `mapping()`
        shipped = DEFAULTS / f"{connector.kind}.yaml"
        if shipped.exists() and parse(shipped.read_text()) == document:
            text = shipped.read_text()
        else:
            text = "# The shipped default with this connector's options applied.\n" + to_yaml(document)
        try:
            return self._insert(connector.id, 1, text, document, None, SEED_COMMENT)
        except IntegrityError:
            found = self._latest(connector.id)  # another replica or thread seeded it first
            if found is None:
                raise
            return found

    def seed_all(self) -> None:
        """Store version 1 now for every configured connector that has none yet (else it is stored on
        first use). Not called at start: it would build every connector before the hub is ready."""
        for state in self.registry.states():
            try:
                self.current(state.config.id)
            except (ConnectorError, MappingError, NotFound) as error:
                log.error("cannot seed mapping", extra={"connector": state.config.id, "error": str(error)})

    # ---- writing ------------------------------------------------------------------------------------

    def validate(self, connector_id: str, text: str) -> list[Problem]:
        """Every problem with this YAML as a mapping for the connector; empty: it can be saved."""
        return self._check(connector_id, text)[1]

    def _check(self, connector_id: str, text: str) -> tuple[MappingDocument | None, list[Problem]]:
        kind = self.registry.state(connector_id).config.kind
        data, problems = load(text)
        if problems:
            return None, problems
        return check(kind, data)

    def save(self, connector_id: str, text: str, author: str | None, comment: str | None) -> MappingVersion:
        """Store `text` as the newest version; raises `MappingInvalid` with every problem found."""
        document, problems = self._check(connector_id, text)
        if document is None:
            raise MappingInvalid(problems)
        self.current(connector_id)  # version 1 first, so history starts from the default
        for _ in range(5):
            with self.db.read() as session:
                latest = session.scalar(
                    select(func.max(MappingVersionRow.version)).where(
                        MappingVersionRow.connector_id == connector_id
                    )
                )
            try:
                saved = self._insert(connector_id, (latest or 0) + 1, text, document, author, comment)
                break
            except IntegrityError:
                continue  # a concurrent save took that number
        else:
            raise InvalidRequest(f"could not store a new mapping version for {connector_id}: try again")
        self.invalidate(connector_id)
        log.info("mapping saved", extra={"connector": connector_id, "version": saved.version})
        return self._with_state(saved)

    def rollback(self, connector_id: str, version: int, author: str | None) -> MappingVersion:
        """A new version equal to `version`."""
        old = self.get(connector_id, version)
        return self.save(connector_id, old.yaml, author, f"rollback to version {version}")

    def invalidate(self, connector_id: str | None = None) -> None:
        with self._lock:
            if connector_id is None:
                self._cache.clear()
            else:
                self._cache.pop(connector_id, None)

    def _insert(
        self,
        connector_id: str,
        number: int,
        text: str,
        document: MappingDocument,
        author: str | None,
        comment: str | None,
    ) -> MappingVersion:
        with self.db.write() as session:
            row = MappingVersionRow(
                connector_id=connector_id,
                version=number,
                document=document.model_dump(mode="json", exclude=set(READ_ONLY)),
                yaml=text,
                author=author,
                comment=comment,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _version(row)

    # ---- comparing and previewing -------------------------------------------------------------------

    def diff(self, connector_id: str, from_version: int, to_version: int) -> str:
        """A unified diff of the two versions' YAML."""
        before, after = self.get(connector_id, from_version), self.get(connector_id, to_version)
        return "".join(
            difflib.unified_diff(
                before.yaml.splitlines(keepends=True),
                after.yaml.splitlines(keepends=True),
                fromfile=f"{connector_id} version {from_version}",
                tofile=f"{connector_id} version {to_version}",
            )
        )

    def changed_paths(self, connector_id: str, from_version: int, to_version: int) -> list[str]:
        """Where the two versions' documents differ, as JSON-path-like locations."""
        before, after = self.get(connector_id, from_version), self.get(connector_id, to_version)
        return changed_paths(
            before.document.model_dump(mode="json", exclude=set(READ_ONLY)),
            after.document.model_dump(mode="json", exclude=set(READ_ONLY)),
        )

    def _draft(self, connector_id: str, text: str | None) -> tuple[MappingDocument, int | None]:
        if text is None:
            current = self.current(connector_id)
            return current.document, current.version
        document, problems = self._check(connector_id, text)
        if document is None:
            raise MappingInvalid(problems)
        return document, None

    def preview_inbound(
        self, connector_id: str, body: bytes, headers: Mapping[str, str], text: str | None = None
    ) -> dict[str, Any]:
        """What this vendor webhook would change, read with the current mapping (or the draft `text`):
        parsed without checking its signature, on a connector that cannot reach the vendor, with nothing
        stored."""
        document, version = self._draft(connector_id, text)
        config = self.registry.state(connector_id).config
        return {"mapping_version": version, **preview.inbound(config, document, body, headers)}

    def preview_outbound(
        self, connector_id: str, incident: Incident, text: str | None = None
    ) -> dict[str, Any]:
        """The vendor fields a push of `incident` would send, with the current mapping (or `text`)."""
        document, version = self._draft(connector_id, text)
        config = self.registry.state(connector_id).config
        return {"mapping_version": version, **preview.outbound(config, document, incident)}


def _version(row: MappingVersionRow) -> MappingVersion:
    return MappingVersion(
        connector_id=row.connector_id,
        version=row.version,
        yaml=row.yaml,
        document=MappingDocument.model_validate(row.document, context={"structure_only": True}),
        author=row.author,
        comment=row.comment,
        created_at=row.created_at,
    )
