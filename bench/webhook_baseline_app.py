"""The floor the hub's webhook ingest is measured against: a bare FastAPI app whose POST /webhooks/{id}
stores the body with one INSERT of the inbox's row shape and answers 202.

Built the way the hub's route is: an `async def` endpoint reading the raw body, the database work in
Starlette's thread pool, the same engine set-up as `incident_hub.store.db.Database` (pool sizes; on SQLite
WAL + synchronous=NORMAL + BEGIN IMMEDIATE), the statement built once, `ON CONFLICT DO NOTHING RETURNING`.
No signature check, no parsing, no echo check: what is left is the framework and the one write.

    BENCH_DATABASE_URL=sqlite:////tmp/b.db uvicorn --app-dir bench webhook_baseline_app:app --port 8001
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from baseline_app import make_engine
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

metadata = MetaData()
inbox = Table(
    "bench_inbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("connector_id", String(64), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    UniqueConstraint("connector_id", "dedup_key"),
)

engine = make_engine(os.environ.get("BENCH_DATABASE_URL", "sqlite:///baseline.db"))
_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
store = (
    _insert(inbox).on_conflict_do_nothing(index_elements=["connector_id", "dedup_key"]).returning(inbox.c.id)
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    metadata.create_all(engine)
    try:
        yield
    finally:
        engine.dispose()


app = FastAPI(title="webhook baseline", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _store(row: dict[str, Any]) -> int | None:
    with engine.begin() as connection:
        inbox_id: int | None = connection.execute(store, row).scalar()
        return inbox_id


@app.post("/webhooks/{connector_id}", status_code=202)
async def receive(connector_id: str, request: Request) -> JSONResponse:
    body = await request.body()
    row = {
        "connector_id": connector_id,
        "dedup_key": f"sha256:{hashlib.sha256(body).hexdigest()}",
        "received_at": datetime.now(UTC),
        "headers": {"content-type": request.headers.get("content-type", "")},
        "body": body.decode("utf-8", errors="replace"),
        "state": "pending",
        "attempts": 0,
    }
    inbox_id = await asyncio.to_thread(_store, row)
    return JSONResponse({"status": "accepted", "inbox_id": inbox_id}, status_code=202)
