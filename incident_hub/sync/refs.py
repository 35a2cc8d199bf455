"""External refs written from two sides at once.

The push that creates a vendor object and the vendor's own webhook announcing that object race to record
the link: on PostgreSQL both may find no ref and both insert. Each side therefore inserts with
`ON CONFLICT DO NOTHING` and, when the other side won, works on the row the other side wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from incident_hub.store.tables import ExternalRefRow


def insert_ref(
    session: Session,
    *,
    incident_id: str,
    connector_id: str,
    external_id: str,
    external_key: str | None,
    url: str | None,
    written: dict[str, Any],
    last_vendor_timestamp: datetime | None,
    last_synced_version: int | None = None,
) -> bool:
    """Insert the link unless either side of it exists already; True when this call made it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    made = session.scalar(
        insert(ExternalRefRow)
        .values(
            incident_id=incident_id,
            connector_id=connector_id,
            external_id=external_id,
            external_key=external_key,
            url=url,
            written=written,
            last_vendor_timestamp=last_vendor_timestamp,
            last_synced_version=last_synced_version,
        )
        .on_conflict_do_nothing()
        .returning(ExternalRefRow.id)
    )
    return made is not None


def ref_for(session: Session, incident_id: str, connector_id: str) -> ExternalRefRow | None:
    return session.scalar(
        select(ExternalRefRow)
        .where(ExternalRefRow.incident_id == incident_id, ExternalRefRow.connector_id == connector_id)
        .with_for_update()
    )
