"""OpenAPI links: which answer names the resource that later operations take as a parameter (a created
incident's id for everything done to that incident). Clients read them as documentation; schema-driven
tests follow them to chain calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

_INCIDENT = "/api/v1/incidents/{incident_id}"
_CONNECTOR = "/api/v1/connectors/{connector_id}"
_MAPPING = "/api/v1/mappings/{connector_id}"


@dataclass(frozen=True)
class Link:
    source: tuple[str, str]  # path, method
    statuses: tuple[str, ...]
    parameter: str
    value: str  # an OpenAPI runtime expression
    targets: tuple[tuple[str, str], ...]


LINKS = (
    Link(
        ("/api/v1/incidents", "post"),
        ("200", "201"),  # 200: an open incident with that dedup key already existed
        "incident_id",
        "$response.body#/id",
        (
            (_INCIDENT, "get"),
            (_INCIDENT, "patch"),
            (f"{_INCIDENT}/status", "put"),
            (f"{_INCIDENT}/escalate", "post"),
            (f"{_INCIDENT}/timeline", "get"),
            (f"{_INCIDENT}/timeline", "post"),
            (f"{_INCIDENT}/resolution-steps", "get"),
            (f"{_INCIDENT}/resolution-steps", "post"),
            (f"{_INCIDENT}/automated-responses", "get"),
            (f"{_INCIDENT}/automated-responses", "post"),
            (f"{_INCIDENT}/roles", "put"),
        ),
    ),
    Link(
        ("/api/v1/subscriptions", "post"),
        ("201",),
        "subscription_id",
        "$response.body#/id",
        (("/api/v1/subscriptions/{subscription_id}", "delete"),),
    ),
    Link(
        ("/api/v1/reconciliations", "post"),
        ("201",),
        "run_id",
        "$response.body#/id",
        (("/api/v1/reconciliations/{run_id}", "get"),),
    ),
    Link(
        (_CONNECTOR, "put"),
        ("200",),
        "connector_id",
        "$response.body#/config/id",
        (
            (_CONNECTOR, "get"),
            (f"{_CONNECTOR}/health", "get"),
            (f"{_CONNECTOR}/resume", "post"),
            (_CONNECTOR, "delete"),
            (_MAPPING, "get"),
            (_MAPPING, "put"),
            (f"{_MAPPING}/versions", "get"),
            (f"{_MAPPING}/validate", "post"),
            (f"{_MAPPING}/preview", "post"),
        ),
    ),
)


def declare_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Add `LINKS` to the answers they start from, naming each target by its operationId."""
    paths = schema.get("paths", {})
    for link in LINKS:
        path, method = link.source
        answers = paths[path][method]["responses"]
        for status in link.statuses:
            answer = answers.setdefault(status, {"description": "Successful Response"})
            declared = answer.setdefault("links", {})
            for target_path, target_method in link.targets:
                operation_id = paths[target_path][target_method]["operationId"]
                declared[operation_id] = {
                    "operationId": operation_id,
                    "parameters": {link.parameter: link.value},
                }
    return schema


def install(app: FastAPI) -> None:
    """Declare the links in the app's OpenAPI document (after the problems: both amend what FastAPI builds;
    declaring them again on a cached document changes nothing)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        return declare_links(build())

    app.openapi = openapi  # type: ignore[method-assign]
