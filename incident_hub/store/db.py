"""Engines and transactions for SQLite (embedded default) and PostgreSQL (production, scale-out)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker


class Database:
    """One engine per process; `write()` and `read()` hand out transactions.

    Every engine hides statement parameters from its errors: a failed insert would otherwise put what it
    was writing (a subscription's secret, a webhook body) into the log line that reports it."""

    def __init__(self, url: str, *, pool_size: int = 40) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url)
        else:
            # No pre-ping (a round trip per checkout): a connection the server dropped fails one statement,
            # and SQLAlchemy then replaces the whole pool.
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=10, pool_recycle=1800, hide_parameters=True
            )
        self._read_engine = self.engine.execution_options(sqlite_deferred=True)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others poll (its busy handler), so late
        # arrivals can overtake early ones by seconds. Queue writers here instead, in arrival order.
        self._write_turn = threading.RLock() if self.is_sqlite else None
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        # Why a write failed for want of the database; cleared only by a probe write that succeeds
        # (readiness): any write is not proof, since an update in place succeeds on a full disk.
        self.write_failure: str | None = None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on error. On SQLite it takes the write
        lock up front (BEGIN IMMEDIATE), so read-then-write never fails half way with SQLITE_BUSY."""
        try:
            if self._write_turn is None:
                with self._writer() as session, session.begin():
                    yield session
            else:
                with self._write_turn, self._writer() as session, session.begin():
                    yield session
        except Exception as error:
            self._note_failure(error)
            raise

    def _note_failure(self, error: BaseException) -> None:
        why = unavailable(error)
        if why is not None:
            self.write_failure = why

    def probe_write(self) -> str | None:
        """Whether writes work, by a write that needs new pages of the database (a table created and
        filled with 64 KiB, rolled back: rewriting a row in place would succeed on a full disk); why
        not, or None."""
        try:
            with (
                self._write_turn or contextlib.nullcontext(),
                self.engine.connect() as connection,
                connection.begin() as transaction,
            ):
                connection.exec_driver_sql("CREATE TABLE incident_hub_write_probe (filler TEXT)")
                # Room for a few incidents, not just one page: a full file may still have a page free.
                connection.exec_driver_sql(
                    "INSERT INTO incident_hub_write_probe VALUES (zeroblob(65536))"
                    if self.is_sqlite
                    else "INSERT INTO incident_hub_write_probe VALUES (repeat('x', 65536))"
                )
                transaction.rollback()
        except Exception as error:
            why = unavailable(error) or type(error).__name__
            self.write_failure = why
            return why
        self.write_failure = None
        return None

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for Core statements on hot paths (no ORM session);
        the same write lock as `write()` on SQLite."""
        try:
            with self._write_turn or contextlib.nullcontext(), self.engine.begin() as connection:
                yield connection
        except Exception as error:
            self._note_failure(error)
            raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def unavailable(error: BaseException) -> str | None:
    """Why `error` means the database cannot be used right now (a retry later may succeed), or None for
    errors that are about the statement itself (a constraint, a bug)."""
    if isinstance(error, PoolTimeout):
        return "no database connection free"
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "connection to the database lost"
    if isinstance(error, OperationalError | InterfaceError):
        # The driver's first line names the cause (refused, terminated, disk full, locked); no parameters.
        first = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
        return first[:200]
    return None


class DataDirectoryUnusable(Exception):
    """The SQLite file's directory cannot be created (read-only file system, no permission)."""


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    # A `file:` URI (`?uri=true`, e.g. `mode=ro`) names its file itself; SQLite reports what is wrong.
    if database and database != ":memory:" and not parsed.query.get("uri"):
        directory = Path(database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataDirectoryUnusable(
                f"cannot create the data directory {directory}: {error.strerror or error}"
            ) from error
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=20,
        max_overflow=20,
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        deferred = connection.get_execution_options().get("sqlite_deferred", False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine
