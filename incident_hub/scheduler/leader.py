"""Which replica reconciles: on PostgreSQL, the one holding a session-level advisory lock.

The lock lives on a connection of its own, outside the pool, held for as long as this replica leads: if
the process dies or the connection drops, PostgreSQL releases it and another replica takes it at its
next try. SQLite is one process: it always leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from incident_hub.store.db import Database

log = logging.getLogger(__name__)


class LeaderLock:
    """`hold()` says whether this replica leads now, taking the lock if it is free (blocking calls)."""

    def __init__(self, db: Database, name: str = "incident-hub reconciler") -> None:
        self.db = db
        self.name = name
        self._engine = (
            None if db.is_sqlite else create_engine(db.url, poolclass=NullPool, hide_parameters=True)
        )
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self.db.is_sqlite or self._connection is not None

    def hold(self) -> bool:
        if self._engine is None:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
                return True
            except DBAPIError:
                # The server dropped us, and the lock with us: another replica may lead by now.
                log.warning("reconciler lock connection lost", exc_info=True)
                self._discard()
        connection = self._engine.connect()
        try:
            # Keyed by schema too: hubs sharing a database in separate schemas each have a leader.
            schema = connection.scalar(text("SELECT current_schema()"))
            taken = bool(
                connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key(schema)})
            )
            connection.commit()  # the lock is the session's: it outlives the transaction
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        log.info("this replica now runs the reconciler")
        return True

    def release(self) -> None:
        """Give the lock up (the next replica to try takes it)."""
        if self._connection is None:
            return
        try:
            self._connection.close()  # closing the session ends its advisory locks
        except DBAPIError:
            log.warning("closing the reconciler lock connection failed", exc_info=True)
        self._connection = None
        log.info("this replica no longer runs the reconciler")

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

    def _discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.invalidate()
            self._connection = None

    def _key(self, schema: object) -> int:
        digest = hashlib.blake2b(f"{self.name}:{schema}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)
