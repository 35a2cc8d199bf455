"""Migrations build exactly the schema the tables declare, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, TableClause, column, select, table

from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.tables import Base


def test_migrations_match_the_declared_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        assert migrate.is_current(db)
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": migrate.declared_for(db.engine.dialect.name)}
            )
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        db.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision(db)
    finally:
        db.dispose()


def _lightweight(name: str, *columns: str, json: tuple[str, ...] = ()) -> TableClause:
    """A table as a migration sees it: only the columns a test writes (JSON ones typed)."""
    return table(name, *(column(c) for c in columns), *(column(c, JSON) for c in json))


def test_seed_contract_migration_renames_running_responses_and_leaves_sent_events_alone(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db, "0004")
        now = datetime.now(UTC)
        incident_id = str(uuid.uuid4())
        sent = {
            "event_id": "e-1",
            "timestamp": now.isoformat(),
            "incident_resolved": {"incident_id": incident_id},
        }
        incidents = _lightweight(
            "incidents",
            *("id", "number", "title", "severity", "status", "detected_at", "sla_breached", "version"),
            *("created_at", "updated_at"),
            json=("affected_services", "tags"),
        )
        responses = _lightweight(
            "automated_responses",
            "response_id",
            "incident_id",
            "action_type",
            "execution_status",
            json=("details",),
        )
        events = _lightweight("events", "id", "incident_id", "type", "created_at", json=("payload",))
        with db.engine.begin() as connection:
            connection.execute(
                incidents.insert().values(
                    id=incident_id,
                    number="INC-20261206-001",
                    title="Valuation delayed",
                    severity="SEV3_MEDIUM",
                    status="OPEN",
                    affected_services=[{"name": "portfolio_management_service", "impact": "degraded"}],
                    detected_at=now,
                    sla_breached=False,
                    tags=[],
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            for response_id, status in (("r1", "running"), ("r2", "succeeded")):
                connection.execute(
                    responses.insert().values(
                        response_id=response_id,
                        incident_id=incident_id,
                        action_type="restart_service",
                        details={},
                        execution_status=status,
                    )
                )
            connection.execute(
                events.insert().values(
                    id="e-1", incident_id=incident_id, type="incident_resolved", payload=sent, created_at=now
                )
            )

        def stored() -> tuple[list[tuple[Any, ...]], Any]:
            with db.engine.connect() as connection:
                statuses = connection.execute(
                    select(responses.c.response_id, responses.c.execution_status).order_by("response_id")
                ).all()
                payload = connection.execute(select(events.c.payload)).scalar_one()
            return [tuple(row) for row in statuses], payload

        migrate.upgrade(db)
        assert stored() == ([("r1", "in_progress"), ("r2", "succeeded")], sent)
        command.downgrade(migrate.alembic_config(db), "0004")
        assert stored() == ([("r1", "running"), ("r2", "succeeded")], sent)
    finally:
        db.dispose()
