"""Incident endpoints: the seed's four exactly, and the operations around them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from incident_hub.api.auth import Reader, Writer
from incident_hub.api.params import refuse_unknown_query
from incident_hub.commands import (
    EscalationRequest,
    IncidentDraft,
    IncidentPatch,
    NoteDraft,
    ResolutionStepDraft,
    RoleAssignment,
    StatusChange,
)
from incident_hub.errors import VersionMismatch
from incident_hub.incident_pages import IncidentFilters
from incident_hub.incidents import IncidentService
from incident_hub.model import (
    AutomatedResponse,
    Escalation,
    Incident,
    ResolutionStep,
    Severity,
    Status,
    TimelineEntry,
    Timestamp,
)

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

DEDUP_HEADER = "X-Incident-Hub-Deduplicated"
IncidentId = Annotated[
    str,
    Path(
        description="The incident's human id (`INC-20250621-001`, its `incident_id`) or its uuid (`id`).",
        examples=["INC-20261124-001"],
    ),
]
IfMatch = Annotated[str | None, Header(description="Version from the ETag; a stale one is a 412.")]


class IncidentPage(BaseModel):
    items: list[Incident]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EscalationOutcome(BaseModel):
    incident: Incident
    escalation: Escalation
    changes: dict[str, dict[str, Any]] = Field(
        description="What changed, field → {old, new}.",
        examples=[{"severity": {"old": "SEV2_HIGH", "new": "SEV1_CRITICAL"}}],
    )


def _service(request: Request) -> IncidentService:
    service: IncidentService = request.app.state.hub.incidents
    return service


def _etag(response: Response, incident: Incident) -> Incident:
    response.headers["ETag"] = f'"{incident.version}"'
    return incident


def parse_if_match(value: str | None) -> int | None:
    """`"3"`, `W/"3"` or `3` → 3; absent or `*` → no precondition."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        # RFC 9110: an entity tag that names no current version fails the precondition (412), whatever
        # it looks like.
        raise VersionMismatch(f"If-Match {value!r} names no version of this incident; read it again")
    return int(text)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Incident,
    responses={
        200: {
            "description": f"Deduplicated: the open incident with this dedup key "
            f"(header {DEDUP_HEADER}: true)",
            "model": Incident,
        }
    },
)
async def create_incident(draft: IncidentDraft, request: Request, _: Writer) -> Response:
    """Open an incident. With the `dedup_key` of an open incident, returns that incident instead (200)."""
    # The one hop into the thread pool; the answer is serialised here, not validated again by FastAPI.
    created = await run_in_threadpool(_service(request).create, draft)
    incident = created.incident
    headers = {"ETag": f'"{incident.version}"'}
    if created.deduplicated:
        headers[DEDUP_HEADER] = "true"
    else:
        headers[DEDUP_HEADER] = "false"
        headers["Location"] = f"/api/v1/incidents/{incident.id}"
    return Response(
        incident.model_dump_json(),
        status_code=status.HTTP_200_OK if created.deduplicated else status.HTTP_201_CREATED,
        headers=headers,
        media_type="application/json",
    )


Several = Query(description="Repeat for several: any of them matches.")
Name = Annotated[str, Query(min_length=1, max_length=200)]
Text = Annotated[str | None, Query(min_length=1, max_length=200)]
Since = Annotated[Timestamp | None, Query(description="From this time, included (RFC 3339).")]
Until = Annotated[Timestamp | None, Query(description="Until this time, excluded (RFC 3339).")]


@router.get(
    "",
    response_model=IncidentPage,
    dependencies=[Depends(refuse_unknown_query)],
)
def list_incidents(
    request: Request,
    _: Reader,
    status_: Annotated[list[Status] | None, Query(alias="status", description="Repeat for several.")] = None,
    severity: Annotated[list[Severity] | None, Query(description="Repeat for several.")] = None,
    assigned_team: str | None = None,
    affected_service: Annotated[list[Name] | None, Several] = None,
    component: Annotated[list[Name] | None, Several] = None,
    device: Annotated[list[Name] | None, Several] = None,
    host: Annotated[list[Name] | None, Several] = None,
    tag: Annotated[list[Name] | None, Several] = None,
    source: Annotated[list[Name] | None, Several] = None,
    root_cause: Annotated[Text, Query(description="Text in the root cause (field or summary).")] = None,
    q: Annotated[
        Text, Query(description="Text in the title, description, summary or any timeline entry.")
    ] = None,
    created_from: Since = None,
    created_to: Until = None,
    detected_from: Since = None,
    detected_to: Until = None,
    resolved_from: Since = None,
    resolved_to: Until = None,
    sla_breached: bool | None = None,
    connector: Annotated[
        list[Name] | None, Query(description="Linked to this connector (repeat: to any of them).")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IncidentPage:
    """Incidents, newest first. Every filter given must hold; a repeated one matches any of its values;
    text matches case-insensitive substrings; `*_from` includes its time and `*_to` excludes it. A query
    parameter the list does not take is refused (400)."""
    filters = IncidentFilters(
        status=status_ or (),
        severity=severity or (),
        assigned_team=assigned_team,
        affected_service=affected_service or (),
        component=component or (),
        device=device or (),
        host=host or (),
        tag=tag or (),
        source=source or (),
        root_cause=root_cause,
        q=q,
        created_from=created_from,
        created_to=created_to,
        detected_from=detected_from,
        detected_to=detected_to,
        resolved_from=resolved_from,
        resolved_to=resolved_to,
        sla_breached=sla_breached,
        connector=connector or (),
    )
    page = _service(request).search(filters, cursor=cursor, limit=limit)
    return IncidentPage(items=page.incidents, next_cursor=page.next_cursor)


@router.get("/{incident_id}", response_model=Incident)
def get_incident(incident_id: IncidentId, request: Request, response: Response, _: Reader) -> Incident:
    return _etag(response, _service(request).get(incident_id))


@router.patch("/{incident_id}", response_model=Incident)
def patch_incident(
    incident_id: IncidentId,
    patch: IncidentPatch,
    request: Request,
    response: Response,
    _: Writer,
    if_match: IfMatch = None,
) -> Incident:
    """Change fields. Status moves go through `PUT .../status`, which sets the lifecycle timestamps."""
    return _etag(response, _service(request).patch(incident_id, patch, parse_if_match(if_match)))


@router.put(
    "/{incident_id}/status",
    response_model=Incident,
    responses={409: {"description": "The lifecycle does not allow this move; lists the allowed ones."}},
)
def change_status(
    incident_id: IncidentId,
    change: StatusChange,
    request: Request,
    response: Response,
    _: Writer,
    if_match: IfMatch = None,
) -> Incident:
    """Move the incident through its lifecycle (sets acknowledged/mitigated/resolved/closed times)."""
    return _etag(response, _service(request).change_status(incident_id, change, parse_if_match(if_match)))


@router.post("/{incident_id}/escalate", response_model=EscalationOutcome)
def escalate(
    incident_id: IncidentId,
    escalation: EscalationRequest,
    request: Request,
    response: Response,
    _: Writer,
    if_match: IfMatch = None,
) -> EscalationOutcome:
    """Raise severity (one level by default) and/or hand the incident to another team."""
    result = _service(request).escalate(incident_id, escalation, parse_if_match(if_match))
    _etag(response, result.incident)
    return EscalationOutcome(incident=result.incident, escalation=result.escalation, changes=result.changed)


@router.get("/{incident_id}/timeline", response_model=list[TimelineEntry])
def timeline(
    incident_id: IncidentId,
    request: Request,
    _: Reader,
    visibility: Annotated[str, Query(pattern="^(all|public|internal)$")] = "all",
) -> list[TimelineEntry]:
    entries = _service(request).timeline(incident_id)
    if visibility == "all":
        return entries
    return [e for e in entries if e.is_public == (visibility == "public")]


@router.post("/{incident_id}/timeline", response_model=TimelineEntry, status_code=status.HTTP_201_CREATED)
def add_note(incident_id: IncidentId, note: NoteDraft, request: Request, _: Writer) -> TimelineEntry:
    """Add a note: public (customer-facing) or internal."""
    return _service(request).add_note(incident_id, note)


@router.get("/{incident_id}/resolution-steps", response_model=list[ResolutionStep])
def resolution_steps(incident_id: IncidentId, request: Request, _: Reader) -> list[ResolutionStep]:
    return _service(request).list_resolution_steps(incident_id)


@router.post(
    "/{incident_id}/resolution-steps", response_model=ResolutionStep, status_code=status.HTTP_201_CREATED
)
def add_resolution_step(
    incident_id: IncidentId, step: ResolutionStepDraft, request: Request, _: Writer
) -> ResolutionStep:
    """Record what was done; steps are numbered in order."""
    return _service(request).add_resolution_step(incident_id, step)


@router.get("/{incident_id}/automated-responses", response_model=list[AutomatedResponse])
def automated_responses(incident_id: IncidentId, request: Request, _: Reader) -> list[AutomatedResponse]:
    return _service(request).get(incident_id).automated_responses


@router.post(
    "/{incident_id}/automated-responses",
    response_model=AutomatedResponse,
    status_code=status.HTTP_201_CREATED,
)
def record_automated_response(
    incident_id: IncidentId, automated: AutomatedResponse, request: Request, _: Writer
) -> AutomatedResponse:
    """Record an automated action; posting the same `response_id` again updates its status."""
    return _service(request).record_automated_response(incident_id, automated)


@router.put("/{incident_id}/roles", response_model=Incident)
def assign_role(
    incident_id: IncidentId,
    assignment: RoleAssignment,
    request: Request,
    response: Response,
    _: Writer,
    if_match: IfMatch = None,
) -> Incident:
    """Assign (or clear) the commander, tech lead or comms lead."""
    return _etag(response, _service(request).assign_role(incident_id, assignment, parse_if_match(if_match)))
