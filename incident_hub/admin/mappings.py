"""The mapping pages of one connector: the editor (inline validation, preview of a sample both ways, save
as a new version) and the versions (diff between any two, roll back to one)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import AfterValidator

from incident_hub.admin.audit import record_action
from incident_hub.admin.render import AdminPageError, hub_errors, render, see_other
from incident_hub.admin.session import Admin, AdminPost, AdminSession
from incident_hub.api.params import MAX_ROW_ID, VersionQuery
from incident_hub.clock import utcnow
from incident_hub.connectors.base import ConnectorError, WebhookRejected
from incident_hub.hub import Hub
from incident_hub.mapping.document import MappingError
from incident_hub.mapping.store import MappingInvalid, MappingStore
from incident_hub.mapping.validation import Problem
from incident_hub.model import AffectedService, Impact, Incident, Roles, Severity, Status

router = APIRouter()


def _unix_newlines(text: str) -> str:
    # Browsers submit a textarea with CRLF line ends (HTML's form encoding): stored as typed, every saved
    # version would differ from the shipped one on every line.
    return text.replace("\r\n", "\n")


Text = Annotated[str, Form()]
Yaml = Annotated[str, AfterValidator(_unix_newlines), Form()]


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "file" or "same": how the line is shown
    text: str


def diff_lines(diff: str) -> list[DiffLine]:
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append(DiffLine(kind, line))
    return lines


def sample_incident() -> Incident:
    """What the outbound preview maps when the hub has no incident yet (or none is picked)."""
    now = utcnow()
    return Incident(
        id=uuid.UUID(int=0),
        incident_id="INC-PREVIEW-001",
        number="INC-PREVIEW-001",
        title="Checkout API returning 502s",
        description="Error rate above 20% (a sample incident for the mapping preview)",
        severity=Severity.SEV2_HIGH,
        status=Status.INVESTIGATING,
        affected_services=["checkout-api"],
        service_impacts=[AffectedService(name="checkout-api", impact=Impact.PARTIAL_OUTAGE)],
        assigned_team="payments",
        assignee="alice",
        roles=Roles(commander="alice"),
        detected_at=now,
        acknowledged_at=now,
        mitigated_at=None,
        resolved_at=None,
        closed_at=None,
        sla_deadline=None,
        sla_breached=False,
        root_cause=None,
        resolution_notes=None,
        summary=None,
        dedup_key=None,
        source="preview",
        tags=[],
        version=1,
        created_at=now,
        updated_at=now,
    )


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _store(request: Request, connector_id: str) -> MappingStore:
    """The mapping store, for a connector that exists."""
    hub = _hub(request)
    with hub_errors():
        hub.connectors.state(connector_id)
    return hub.mappings


def _editor(
    request: Request,
    session: AdminSession,
    connector_id: str,
    store: MappingStore,
    *,
    text: str | None = None,
    comment: str = "",
    problems: list[Problem] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with hub_errors():
        current = store.current(connector_id)
        recent = _hub(request).incidents.search(limit=20).incidents
    context = {
        "connector_id": connector_id,
        "current": current,
        "text": current.yaml if text is None else text,
        "comment": comment,
        "problems": problems,
        "incidents": recent,
    }
    return render(request, "mapping.html", session, context, status_code=status_code)


@router.get("/connectors/{connector_id}/mapping")
def mapping_page(connector_id: str, request: Request, session: Admin) -> HTMLResponse:
    return _editor(request, session, connector_id, _store(request, connector_id))


@router.post("/connectors/{connector_id}/mapping/validate")
def validate_mapping(
    connector_id: str, request: Request, session: AdminPost, text: Yaml = ""
) -> HTMLResponse:
    """A fragment: the problems of the text in the editor (empty: it would save)."""
    problems = _store(request, connector_id).validate(connector_id, text)
    return render(request, "_problems.html", session, {"problems": problems})


@router.post("/connectors/{connector_id}/mapping")
def save_mapping(
    connector_id: str, request: Request, session: AdminPost, text: Yaml = "", comment: Text = ""
) -> Response:
    store = _store(request, connector_id)
    problems = store.validate(connector_id, text)
    saved = None
    if not problems:
        with hub_errors():
            try:
                saved = store.save(connector_id, text, session.actor, comment)
            except MappingInvalid as invalid:
                problems = invalid.problems  # valid a moment ago, but the store has the last word
    if saved is None:
        return _editor(
            request,
            session,
            connector_id,
            store,
            text=text,
            comment=comment,
            problems=problems,
            status_code=422,
        )
    record_action(
        _hub(request), session, "mapping.save", f"mapping:{connector_id}", {"version": saved.version}
    )
    session.flash(f"Saved the {connector_id} mapping as version {saved.version}.")
    return see_other(f"/admin/connectors/{connector_id}/mapping/versions")


def _preview(
    request: Request, session: AdminSession, connector_id: str, run: Callable[[MappingStore], dict[str, Any]]
) -> HTMLResponse:
    store = _store(request, connector_id)
    problems: list[Problem] | None = None
    result: str | None = None
    error: str | None = None
    try:
        with hub_errors():
            try:
                result = json.dumps(run(store), indent=2, sort_keys=True, default=str)
            except MappingInvalid as invalid:
                problems = invalid.problems
    except AdminPageError as failed:
        error = failed.message
    except (MappingError, ConnectorError) as failed:
        error = str(failed)
    except WebhookRejected as failed:
        error = f"The connector refuses this webhook: {failed.reason}"
    return render(request, "_preview.html", session, {"result": result, "error": error, "problems": problems})


@router.post("/connectors/{connector_id}/mapping/preview/outbound")
def preview_outbound(
    connector_id: str, request: Request, session: AdminPost, text: Yaml, incident_id: Text = ""
) -> HTMLResponse:
    """A fragment: the vendor fields the text in the editor writes for an incident."""
    if incident_id:
        with hub_errors():
            incident = _hub(request).incidents.get(incident_id)
    else:
        incident = sample_incident()
    return _preview(
        request, session, connector_id, lambda s: s.preview_outbound(connector_id, incident, text)
    )


def _headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


@router.post("/connectors/{connector_id}/mapping/preview/inbound")
def preview_inbound(
    connector_id: str, request: Request, session: AdminPost, text: Yaml, body: Text = "", headers: Text = ""
) -> HTMLResponse:
    """A fragment: what a vendor webhook body means for the canonical incident, with the editor's text."""
    sent = body.encode()
    given = _headers(headers)
    return _preview(
        request, session, connector_id, lambda s: s.preview_inbound(connector_id, sent, given, text)
    )


@router.get("/connectors/{connector_id}/mapping/versions")
def versions_page(
    connector_id: str,
    request: Request,
    session: Admin,
    from_version: VersionQuery = None,
    to_version: VersionQuery = None,
    show: VersionQuery = None,
) -> HTMLResponse:
    store = _store(request, connector_id)
    with hub_errors():
        versions = store.versions(connector_id)
        if versions and to_version is None:
            to_version = versions[0].version
        if len(versions) > 1 and from_version is None:
            from_version = versions[1].version
        diff = None
        if from_version is not None and to_version is not None:
            diff = diff_lines(store.diff(connector_id, from_version, to_version))
        shown = store.get(connector_id, show) if show is not None else None
    context = {
        "connector_id": connector_id,
        "versions": versions,
        "current_version": versions[0].version if versions else None,
        "from_version": from_version,
        "to_version": to_version,
        "diff": diff,
        "shown": shown,
    }
    return render(request, "versions.html", session, context)


@router.post("/connectors/{connector_id}/mapping/rollback")
def rollback_mapping(
    connector_id: str,
    request: Request,
    session: AdminPost,
    version: Annotated[int, Form(ge=1, le=MAX_ROW_ID)],
) -> Response:
    store = _store(request, connector_id)
    with hub_errors():
        restored = store.rollback(connector_id, version, session.actor)
    record_action(
        _hub(request),
        session,
        "mapping.rollback",
        f"mapping:{connector_id}",
        {"to_version": version, "version": restored.version},
    )
    session.flash(
        f"Rolled the {connector_id} mapping back to version {version} (now version {restored.version})."
    )
    return see_other(f"/admin/connectors/{connector_id}/mapping/versions")
