"""deliveries in doubt after a create with an unknown outcome, vendor duplicates

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_doubt_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("in_doubt_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("in_doubt_looks", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("in_doubt_outcome", sa.String(length=32), nullable=True))
    op.create_table(
        "vendor_duplicates",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("connector_id", sa.String(length=100), nullable=False),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("external_key", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("kept_external_id", sa.String(length=200), nullable=False),
        sa.Column("vendor_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("found_by", sa.String(length=32), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connector_id", "external_id"),
    )
    with op.batch_alter_table("vendor_duplicates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vendor_duplicates_incident_id"), ["incident_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vendor_duplicates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vendor_duplicates_incident_id"))
    op.drop_table("vendor_duplicates")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("in_doubt_outcome")
        batch_op.drop_column("in_doubt_looks")
        batch_op.drop_column("in_doubt_until")
        batch_op.drop_column("in_doubt_since")
