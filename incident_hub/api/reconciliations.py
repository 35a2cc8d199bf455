"""Reconciliation passes: what they found and repaired, and running one now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field

from incident_hub.api.auth import Admin, Reader
from incident_hub.api.params import Cursor, RowId
from incident_hub.hub import Hub
from incident_hub.scheduler.runs import PassKind, ReconciliationRun

router = APIRouter(prefix="/api/v1", tags=["sync"])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


class ReconcileNow(BaseModel):
    connector_id: str = Field(examples=["jira"])
    kind: PassKind = Field(
        default=PassKind.INCREMENTAL,
        description="`incremental`: objects changed since the watermark; `full`: every linked object of "
        "the incidents not CLOSED.",
    )


@router.get("/reconciliations", response_model=list[ReconciliationRun])
def list_reconciliations(
    request: Request,
    _: Reader,
    connector_id: str | None = None,
    kind: PassKind | None = None,
    before_id: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReconciliationRun]:
    """Reconciliation passes, newest first."""
    return _hub(request).reconciler.runs.search(
        connector_id=connector_id, kind=kind, before_id=before_id, limit=limit
    )


@router.get("/reconciliations/{run_id}", response_model=ReconciliationRun)
def get_reconciliation(run_id: RowId, request: Request, _: Reader) -> ReconciliationRun:
    return _hub(request).reconciler.runs.get(run_id)


@router.post(
    "/reconciliations",
    response_model=ReconciliationRun,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No connector with that id"}},
)
async def reconcile_now(order: ReconcileNow, request: Request, _: Admin) -> ReconciliationRun:
    """Run one pass now, on this replica, and answer with its record when it ends. Repairs go through
    the same apply path as webhooks."""
    return await _hub(request).reconciler.run(order.connector_id, order.kind, trigger="api")
