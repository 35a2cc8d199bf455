"""seed contract: automated responses `running` -> the seed's `in_progress`

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:00:00.000000

The human id that the API now also calls `incident_id` is `incidents.number`, already unique (and so
indexed) since 0001; affected services keep their stored `{name, impact}` form. Only the stored execution
status changes word.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_responses = sa.table("automated_responses", sa.column("execution_status", sa.String(16)))


def _rename(old: str, new: str) -> None:
    op.execute(
        _responses.update()
        .where(_responses.c.execution_status == op.inline_literal(old))
        .values(execution_status=op.inline_literal(new))
    )


def upgrade() -> None:
    _rename("running", "in_progress")


def downgrade() -> None:
    _rename("in_progress", "running")
