"""incident search: the structured fields become jsonb on PostgreSQL with GIN indexes for containment, and
trigram indexes for substring search where pg_trgm can be created; source and SLA-breach list ranges on both

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_STRUCTURED = ("affected_services", "summary", "tags")
_RANGES = {
    "ix_incidents_source_created": ["source", "created_at", "id"],
    "ix_incidents_breached_created": ["sla_breached", "created_at", "id"],
}
_TEXT = (
    "(((coalesce(title, '') || ' ') || coalesce(description, '')) || ' ') "
    "|| coalesce(CAST(summary AS TEXT), '')"
)
_ROOT_CAUSE = "(coalesce(root_cause, '') || ' ') || coalesce(summary ->> 'root_cause', '')"
# name → (table, indexed expression); the same expressions as `store/tables/` declares.
_TRIGRAM = {
    "ix_incidents_text_trgm": ("incidents", _TEXT),
    "ix_incidents_root_cause_trgm": ("incidents", _ROOT_CAUSE),
    "ix_timeline_entries_message_trgm": ("timeline_entries", "message"),
}


def upgrade() -> None:
    for name, columns in _RANGES.items():
        op.create_index(name, "incidents", columns, unique=False)
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name in _STRUCTURED:
        op.execute(f"ALTER TABLE incidents ALTER COLUMN {name} TYPE jsonb USING {name}::jsonb")
    op.execute("CREATE INDEX ix_incidents_tags ON incidents USING gin (tags jsonb_path_ops)")
    op.execute("CREATE INDEX ix_incidents_services ON incidents USING gin (affected_services jsonb_path_ops)")
    schema = _trigram_schema(bind)
    if schema is None:
        return
    for name, (table, expression) in _TRIGRAM.items():
        op.execute(f'CREATE INDEX {name} ON {table} USING gin (({expression}) "{schema}".gin_trgm_ops)')


def _trigram_schema(bind: sa.Connection) -> str | None:
    """The schema holding pg_trgm, created here if it is not yet; None where this role may not create it
    (the text filters then read without an index). It goes to `public` where it can, so that dropping the
    hub's own schema does not take another schema's indexes with it (one database has one pg_trgm)."""
    failure: DBAPIError | None = None
    for statement in (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    ):
        try:
            with bind.begin_nested():
                bind.exec_driver_sql(statement)
            failure = None
            break
        except DBAPIError as error:
            failure = error
    if failure is not None:
        log.warning("pg_trgm is unavailable, text search runs without trigram indexes: %s", failure.orig)
        return None
    schema: str = bind.exec_driver_sql(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    ).scalar_one()
    return schema.strip('"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        op.drop_index("ix_incidents_services", table_name="incidents")
        op.drop_index("ix_incidents_tags", table_name="incidents")
        for name in _STRUCTURED:
            op.execute(f"ALTER TABLE incidents ALTER COLUMN {name} TYPE json USING {name}::json")
    for name in _RANGES:
        op.drop_index(name, table_name="incidents")
