"""Alembic environment: the engine comes from the hub (see `store/migrate.py`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from incident_hub.store.migrate import declared_for
from incident_hub.store.tables import Base

engine: Engine = context.config.attributes["engine"]

with engine.connect() as connection:
    if engine.dialect.name == "postgresql":
        # Several replicas may start at once: one migrates, the others wait for it.
        connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        include_object=declared_for(engine.dialect.name),
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
            connection.commit()
