"""The record of reconciliation passes (`reconciliation_runs`) and the per-connector watermarks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from incident_hub.clock import utcnow
from incident_hub.errors import NotFound
from incident_hub.store.db import Database
from incident_hub.store.tables import ReconciliationRunRow, ReconciliationWatermarkRow


class PassKind(StrEnum):
    INCREMENTAL = "incremental"  # objects changed since the watermark
    FULL = "full"  # every linked object of an incident not CLOSED


class RunState(StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"  # some objects could not be read or applied; the watermark stays
    FAILED = "failed"  # the pass could not go on (vendor unreachable, connector misconfigured)
    INTERRUPTED = "interrupted"  # the hub stopped during the pass


class ReconciliationRun(BaseModel):
    """One pass over one connector, as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    connector_id: str
    kind: PassKind
    trigger: str
    state: RunState
    started_at: datetime
    ended_at: datetime | None
    window_start: datetime | None
    examined: int
    drift_found: int
    drift_repaired: int
    errors: str | None


class Runs:
    """Reads and writes runs and watermarks (each call its own transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, connector_id: str, kind: PassKind, trigger: str) -> ReconciliationRun:
        with self.db.write() as session:
            row = ReconciliationRunRow(
                connector_id=connector_id,
                kind=kind.value,
                trigger=trigger,
                state=RunState.RUNNING.value,
                started_at=utcnow(),
                examined=0,
                drift_found=0,
                drift_repaired=0,
            )
            session.add(row)
            session.flush()
            return ReconciliationRun.model_validate(row)

    def finish(self, run: ReconciliationRun) -> ReconciliationRun:
        with self.db.write() as session:
            row = session.get(ReconciliationRunRow, run.id)
            if row is None:
                raise NotFound(f"no reconciliation run {run.id}")
            row.state = run.state.value
            row.ended_at = run.ended_at or utcnow()
            row.window_start = run.window_start
            row.examined, row.drift_found, row.drift_repaired = (
                run.examined,
                run.drift_found,
                run.drift_repaired,
            )
            row.errors = run.errors[:20_000] if run.errors else None
            session.flush()
            return ReconciliationRun.model_validate(row)

    def get(self, run_id: int) -> ReconciliationRun:
        with self.db.read() as session:
            row = session.get(ReconciliationRunRow, run_id)
            if row is None:
                raise NotFound(f"no reconciliation run {run_id}")
            return ReconciliationRun.model_validate(row)

    def search(
        self,
        *,
        connector_id: str | None = None,
        kind: PassKind | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[ReconciliationRun]:
        """Newest first; `before_id` is the cursor (the last id of the previous page)."""
        query = select(ReconciliationRunRow).order_by(ReconciliationRunRow.id.desc()).limit(limit)
        if connector_id is not None:
            query = query.where(ReconciliationRunRow.connector_id == connector_id)
        if kind is not None:
            query = query.where(ReconciliationRunRow.kind == kind.value)
        if before_id is not None:
            query = query.where(ReconciliationRunRow.id < before_id)
        with self.db.read() as session:
            return [ReconciliationRun.model_validate(r) for r in session.scalars(query)]

    def last_started(self, connector_id: str, kind: PassKind) -> datetime | None:
        """When the latest pass of this kind began (any outcome): the schedule counts from it."""
        with self.db.read() as session:
            return session.scalar(
                select(ReconciliationRunRow.started_at)
                .where(ReconciliationRunRow.connector_id == connector_id, ReconciliationRunRow.kind == kind)
                .order_by(ReconciliationRunRow.id.desc())
                .limit(1)
            )

    def watermark(self, connector_id: str) -> datetime | None:
        with self.db.read() as session:
            row = session.get(ReconciliationWatermarkRow, connector_id)
            return row.watermark if row is not None else None

    def advance_watermark(self, connector_id: str, to: datetime) -> None:
        """Move the watermark forward (never back: a slower pass finishing late cannot undo a later one)."""
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        now = utcnow()
        statement = insert(ReconciliationWatermarkRow).values(
            connector_id=connector_id, watermark=to, updated_at=now
        )
        with self.db.write() as session:
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["connector_id"],
                    set_={"watermark": to, "updated_at": now},
                    where=ReconciliationWatermarkRow.watermark < to,
                )
            )
