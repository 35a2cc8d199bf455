"""The floor the hub's create is measured against: a bare FastAPI app whose POST /incidents does one INSERT.

Built the way the hub is, so the difference is what the hub does per create and not the stack: a sync
`def` endpoint (run in Starlette's thread pool), a pydantic request and response model, one SQLAlchemy
engine with a pool (20 + 20 overflow, like `incident_hub.store.db.Database`), an ORM session per request;
on SQLite the same WAL + synchronous=NORMAL + BEGIN IMMEDIATE set-up as the hub.

    BENCH_DATABASE_URL=sqlite:////tmp/b.db uvicorn --app-dir bench baseline_app:app --port 8001
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, status
from pydantic import BaseModel, Field
from sqlalchemy import DateTime, Engine, String, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class BenchIncidentRow(Base):
    __tablename__ = "bench_incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Draft(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    severity: str = "SEV3_MEDIUM"
    source: str | None = None


class Created(BaseModel):
    id: str
    title: str
    severity: str
    source: str | None
    created_at: datetime


def make_engine(url: str) -> Engine:
    """The hub's engine set-up (see `incident_hub.store.db`), for SQLite or PostgreSQL."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=20, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


engine = make_engine(os.environ.get("BENCH_DATABASE_URL", "sqlite:///baseline.db"))
Session = sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    Base.metadata.create_all(engine)
    try:
        yield
    finally:
        engine.dispose()


app = FastAPI(title="baseline", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/incidents", status_code=status.HTTP_201_CREATED, response_model=Created)
def create_incident(draft: Draft) -> Created:
    row = BenchIncidentRow(
        id=str(uuid.uuid4()),
        title=draft.title,
        severity=draft.severity,
        source=draft.source,
        created_at=datetime.now(UTC),
    )
    with Session() as session, session.begin():
        session.add(row)
    return Created(
        id=row.id, title=row.title, severity=row.severity, source=row.source, created_at=row.created_at
    )
