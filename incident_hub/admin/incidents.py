"""The incidents pages: a filtered list, and one incident with its timeline and links to the vendors."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from incident_hub.admin.render import hub_errors, render
from incident_hub.admin.session import Admin
from incident_hub.hub import Hub
from incident_hub.incident_pages import IncidentFilters
from incident_hub.model import Severity, Status
from incident_hub.sync.in_doubt import list_duplicates

router = APIRouter()

PAGE = 50


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@router.get("/incidents")
def incidents_page(
    request: Request,
    session: Admin,
    status: str = "",
    severity: str = "",
    team: str = "",
    q: str = "",
    service: str = "",
    component: str = "",
    cursor: str | None = None,
) -> HTMLResponse:
    # Unknown filter values are ignored rather than refused: they come from the page's own selects.
    statuses = [Status(status)] if status in Status.__members__.values() else []
    severities = [Severity(severity)] if severity in Severity.__members__.values() else []
    wanted = IncidentFilters(
        status=statuses,
        severity=severities,
        assigned_team=team.strip() or None,
        q=q.strip()[:200] or None,
        affected_service=[service.strip()] if service.strip() else [],
        component=[component.strip()] if component.strip() else [],
    )
    with hub_errors():
        page = _hub(request).incidents.search(wanted, cursor=cursor, limit=PAGE)
    filters = {
        "status": status,
        "severity": severity,
        "team": team,
        "q": q,
        "service": service,
        "component": component,
    }
    next_query = None
    if page.next_cursor:
        next_query = urlencode({k: v for k, v in filters.items() if v} | {"cursor": page.next_cursor})
    context = {
        "incidents": page.incidents,
        "filters": filters,
        "statuses": [s.value for s in Status],
        "severities": [s.value for s in Severity],
        "next_query": next_query,
    }
    return render(request, "incidents.html", session, context)


@router.get("/incidents/{incident_id}")
def incident_page(incident_id: str, request: Request, session: Admin) -> HTMLResponse:
    hub = _hub(request)
    with hub_errors():
        incident = hub.incidents.get(incident_id)
        timeline = hub.incidents.timeline(incident_id)
    duplicates = list_duplicates(hub.db, incident_id=incident_id)
    context = {"incident": incident, "timeline": timeline, "duplicates": duplicates}
    return render(request, "incident.html", session, context)
