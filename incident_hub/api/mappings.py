"""Mapping documents (read scope to read, admin scope to change): current version, history, save, diff,
rollback, validate, and previews with no side effects."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from incident_hub.api.auth import Admin, Principal, Reader
from incident_hub.api.params import MAX_ROW_ID, Version
from incident_hub.api.problems import malformed_json
from incident_hub.audit import actor_name
from incident_hub.errors import InvalidRequest
from incident_hub.hub import Hub
from incident_hub.mapping.store import MappingVersion
from incident_hub.mapping.validation import Problem, sample_incident

router = APIRouter(prefix="/api/v1/mappings", tags=["mappings"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _actor(principal: Principal) -> str:
    return actor_name(principal.name, principal.key_id)


class MappingChange(BaseModel):
    """A new version: the YAML text, or the document as JSON (stored as YAML), and why."""

    # Exactly one of `yaml` and `document`: said in the schema too, so a client (or a schema-driven test)
    # knows `{}` is not a request.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["yaml"]}, {"required": ["document"]}]},
    )

    yaml: str | SkipJsonSchema[None] = Field(
        default=None, description="The document as YAML text (kept as given)."
    )
    document: dict[str, Any] | SkipJsonSchema[None] = Field(default=None, description="The document as JSON.")
    comment: str | None = Field(default=None, max_length=2000)

    def text(self) -> str:
        if (self.yaml is None) == (self.document is None):
            raise InvalidRequest("give exactly one of `yaml` or `document`")
        if self.yaml is not None:
            return self.yaml
        return yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True, width=110)


class Validation(BaseModel):
    valid: bool
    problems: list[Problem]


class Diff(BaseModel):
    connector_id: str
    from_version: int
    to_version: int
    diff: str = Field(description="Unified diff of the two versions' YAML.")
    changed_paths: list[str] = Field(description="Where the documents differ, e.g. $.status.to_vendor.OPEN.")


class PreviewRequest(BaseModel):
    """Either a vendor webhook (`webhook`: its JSON body, or the raw body as a string, with optional
    `headers`) or a canonical incident (`incident`: fields not given come from the documented example).
    `document` previews an unsaved draft (YAML text or JSON) instead of the current version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["webhook"]}, {"required": ["incident"]}]},
    )

    webhook: Any = Field(default=None, json_schema_extra={"not": {"type": "null"}})
    headers: dict[str, str] = Field(default_factory=dict)
    incident: dict[str, Any] | SkipJsonSchema[None] = None
    document: str | dict[str, Any] | None = None


async def _change(request: Request) -> MappingChange:
    """The PUT body: YAML text (comment in `?comment=`) or JSON `MappingChange`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if kind in YAML_TYPES:
        return MappingChange(
            yaml=raw.decode("utf-8", errors="replace"), comment=request.query_params.get("comment")
        )
    try:
        return MappingChange.model_validate_json(raw)
    except ValidationError as error:
        malformed = malformed_json(error)
        if malformed is not None:
            raise malformed from None
        raise InvalidRequest(
            f"the body is neither YAML (with a YAML content type) nor a mapping change: {error}"
        ) from None


@router.get("/{connector_id}", response_model=MappingVersion)
def current_mapping(connector_id: str, request: Request, _: Reader) -> MappingVersion:
    """The version in use: number, YAML as given and the document it means (with the read-only
    `disabled_reason`/`disabled_until` while the circuit breaker holds the connector)."""
    return _hub(request).mappings.current(connector_id)


@router.get("/{connector_id}/versions", response_model=list[MappingVersion])
def mapping_versions(connector_id: str, request: Request, _: Reader) -> list[MappingVersion]:
    """Every version, newest first."""
    return _hub(request).mappings.versions(connector_id)


@router.get("/{connector_id}/versions/{version}", response_model=MappingVersion)
def mapping_version(connector_id: str, version: Version, request: Request, _: Reader) -> MappingVersion:
    return _hub(request).mappings.get(connector_id, version)


@router.put(
    "/{connector_id}",
    response_model=MappingVersion,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": MappingChange.model_json_schema()},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def save_mapping(
    connector_id: str,
    request: Request,
    who: Admin,
    comment: Annotated[str | None, Query(description="Why (with a YAML body).")] = None,
) -> MappingVersion:
    """Store a new version (validated; 422 lists every problem as `{location, message}`). The next
    sync uses it."""
    change = await _change(request)
    hub = _hub(request)
    saved = await asyncio.to_thread(
        hub.mappings.save, connector_id, change.text(), _actor(who), change.comment
    )
    await asyncio.to_thread(
        hub.audit.record,
        _actor(who),
        "mapping.save",
        connector_id,
        {"version": saved.version, "comment": saved.comment},
    )
    return saved


@router.post("/{connector_id}/validate", response_model=Validation)
def validate_mapping(connector_id: str, change: MappingChange, request: Request, _: Reader) -> Validation:
    """Check a document without storing it."""
    problems = _hub(request).mappings.validate(connector_id, change.text())
    return Validation(valid=not problems, problems=problems)


@router.post("/{connector_id}/rollback/{version}", response_model=MappingVersion)
def rollback_mapping(connector_id: str, version: Version, request: Request, who: Admin) -> MappingVersion:
    """A new version equal to `version`."""
    hub = _hub(request)
    saved = hub.mappings.rollback(connector_id, version, _actor(who))
    hub.audit.record(_actor(who), "mapping.rollback", connector_id, {"to": version, "version": saved.version})
    return saved


@router.get("/{connector_id}/diff", response_model=Diff)
def diff_mapping(
    connector_id: str,
    request: Request,
    _: Reader,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_ROW_ID)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_ROW_ID)],
) -> Diff:
    mappings = _hub(request).mappings
    return Diff(
        connector_id=connector_id,
        from_version=from_version,
        to_version=to_version,
        diff=mappings.diff(connector_id, from_version, to_version),
        changed_paths=mappings.changed_paths(connector_id, from_version, to_version),
    )


@router.post("/{connector_id}/preview")
def preview_mapping(
    connector_id: str, request: Request, _: Reader, sample: Annotated[PreviewRequest, Body()]
) -> dict[str, Any]:
    """What the mapping does with a sample, with no side effects: a vendor webhook (parsed without
    checking its signature, never calling the vendor) gives the canonical change it asks for; an
    incident gives the vendor fields a push would send."""
    mappings = _hub(request).mappings
    draft = sample.document
    text = draft if isinstance(draft, str) or draft is None else yaml.safe_dump(draft, sort_keys=False)
    if (sample.webhook is None) == (sample.incident is None):
        raise InvalidRequest("give exactly one of `webhook` or `incident`")
    if sample.incident is not None:
        try:
            incident = sample_incident().replaced(sample.incident)
        except ValidationError as error:
            raise InvalidRequest(f"not an incident: {error}") from None
        return {"direction": "outbound", **mappings.preview_outbound(connector_id, incident, text)}
    body = sample.webhook.encode() if isinstance(sample.webhook, str) else json.dumps(sample.webhook).encode()
    return {"direction": "inbound", **mappings.preview_inbound(connector_id, body, sample.headers, text)}
