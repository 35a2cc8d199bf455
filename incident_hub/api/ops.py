"""Liveness, readiness and Prometheus metrics (no API key: for orchestrators and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from incident_hub.hub import Hub
from incident_hub.metrics import exposition
from incident_hub.store import migrate

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers, its schema is at the current migration, and writes work: after a
    write failed for want of the database (disk full, connection lost), a probe write decides."""
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
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    hub: Hub = request.app.state.hub
    return Response(exposition(hub.metrics_registry), media_type=CONTENT_TYPE_LATEST)
