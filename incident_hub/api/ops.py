"""Liveness, readiness and Prometheus metrics (no API key: for orchestrators and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import text

from incident_hub.api.problems import problem
from incident_hub.hub import Hub
from incident_hub.metrics import exposition
from incident_hub.store import migrate

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, str] = Field(examples=[{"database": "ok", "migrations": "ok"}])


@router.get("/readyz", response_model=None, responses={200: {"model": Readiness}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers, its schema is at the current migration, and writes work: after a
    write failed for want of the database (disk full, connection lost), a probe write decides. Not ready:
    503, a problem whose `checks` say which failed."""
    hub: Hub = request.app.state.hub
    checks: dict[str, str] = {}
    try:
        with hub.db.read() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if migrate.is_current(hub.db) else "behind"
        if hub.db.write_failure is not None:
            failing = hub.db.probe_write()
            checks["writes"] = "ok" if failing is None else f"failing: {failing}"
    except Exception as error:  # the probe reports any failure rather than raising it
        checks["database"] = f"unreachable: {type(error).__name__}"
    failing = "; ".join(f"{name}: {state}" for name, state in checks.items() if state != "ok")
    if failing:
        return problem(503, "Not ready", failing, request, checks=checks)
    return JSONResponse(Readiness(status="ready", checks=checks).model_dump())


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    hub: Hub = request.app.state.hub
    return Response(exposition(hub.metrics_registry), media_type=CONTENT_TYPE_LATEST)
