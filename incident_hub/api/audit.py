"""The audit log of admin actions (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from incident_hub.api.auth import Admin
from incident_hub.api.params import Cursor
from incident_hub.audit import AuditEntry
from incident_hub.hub import Hub

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit", response_model=list[AuditEntry])
def audit_log(
    request: Request,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Cursor = None,
) -> list[AuditEntry]:
    """Admin actions, newest first: who (API key name and id), what, on which target, when, detail."""
    hub: Hub = request.app.state.hub
    return hub.audit.list(limit, before_id=before_id)
