"""list indexes: every incident list filter is one index range ending in (created_at, id); detection and
resolution times for windowed reports; an incident's timeline in order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 00:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# name → columns; the single-column indexes they replace are each a prefix of one of them.
_INCIDENT_INDEXES = {
    "ix_incidents_team_created": ["assigned_team", "created_at", "id"],
    "ix_incidents_status_severity_created": ["status", "severity", "created_at", "id"],
    "ix_incidents_team_status_severity_created": ["assigned_team", "status", "severity", "created_at", "id"],
    "ix_incidents_detected": ["detected_at"],
    "ix_incidents_resolved": ["resolved_at"],
}
_REPLACED = {
    "ix_incidents_assigned_team": ["assigned_team"],
    "ix_incidents_severity": ["severity"],
    "ix_incidents_status": ["status"],
}


def upgrade() -> None:
    for name, columns in _INCIDENT_INDEXES.items():
        op.create_index(name, "incidents", columns, unique=False)
    op.create_index("ix_timeline_entries_incident", "timeline_entries", ["incident_id", "id"], unique=False)
    for name in _REPLACED:
        op.drop_index(name, table_name="incidents")
    op.drop_index("ix_timeline_entries_incident_id", table_name="timeline_entries")


def downgrade() -> None:
    op.create_index("ix_timeline_entries_incident_id", "timeline_entries", ["incident_id"], unique=False)
    for name, columns in _REPLACED.items():
        op.create_index(name, "incidents", columns, unique=False)
    op.drop_index("ix_timeline_entries_incident", table_name="timeline_entries")
    for name in _INCIDENT_INDEXES:
        op.drop_index(name, table_name="incidents")
