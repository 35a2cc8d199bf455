"""incidents keep their lifecycle durations (detection to acknowledgement and to resolution, acknowledgement
to resolution, first signal to detection), backfilled from the timestamps already stored

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_DURATIONS = {
    "time_to_acknowledge_seconds": ("detected_at", "acknowledged_at"),
    "acknowledge_to_resolve_seconds": ("acknowledged_at", "resolved_at"),
    "time_to_resolve_seconds": ("detected_at", "resolved_at"),
}


def _seconds(start: str, end: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        # julianday() reads the stored text; a day of 86400 s, rounded to the millisecond it can resolve.
        return f"round((julianday({end}) - julianday({start})) * 86400.0, 3)"
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_signal_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("time_to_detect_seconds", sa.Float(), nullable=True))
        for name in _DURATIONS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
    for name, (start, end) in _DURATIONS.items():
        # Column names from this module, no input.
        statement = f"UPDATE incidents SET {name} = {_seconds(start, end)} "  # noqa: S608
        op.execute(statement + f"WHERE {start} IS NOT NULL AND {end} IS NOT NULL")


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `incidents` would drop the old
    # table, and with foreign keys on, its cascades would empty the tables that point at it.
    for name in [*reversed(list(_DURATIONS)), "time_to_detect_seconds", "first_signal_at"]:
        op.drop_column("incidents", name)
