"""Shared path and query parameter types.

Row ids, versions and cursors are bounded to what the databases store (a signed 64-bit integer): a larger
number is refused with 422 before it reaches a query, where it would overflow (SQLite) or be out of range
(PostgreSQL) and answer 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from incident_hub.errors import HubError

MAX_ROW_ID = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 to 2^63-1).")]
Version = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A version number (1 to 2^63-1).")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
Cursor = Annotated[
    int | None,
    Query(ge=0, le=MAX_ROW_ID, description="Cursor: the last id of the previous page."),
]


class UnknownParameters(HubError):
    status = 400
    title = "Unknown query parameters"


def refuse_unknown_query(request: Request) -> None:
    """A GET whose query names a parameter its route does not take is refused (400, naming them): a
    misspelt filter would otherwise list everything as if it had matched."""
    route = request.scope.get("route")
    if request.method != "GET" or not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise UnknownParameters(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}; "
            f"this route takes: {', '.join(sorted(known)) or 'none'}",
            unknown_parameters=unknown,
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names
