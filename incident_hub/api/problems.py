"""RFC 9457 problem details: the one place typed errors become HTTP responses."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from incident_hub.api.throttle import Throttled
from incident_hub.errors import HubError, MalformedJson
from incident_hub.model import REOPEN_FROM_CLOSED, IllegalTransition, Status
from incident_hub.store.db import unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5


def problem(
    status: int,
    title: str,
    detail: str,
    request: Request,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; some answers add fields (e.g. `errors`, `allowed_statuses`).",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
_ANSWERS = {
    400: "The body is not JSON, or the query names a parameter the route does not take",
    401: "No API key, or one that is unknown or revoked (webhooks: no valid signature or secret)",
    403: "The key lacks the scope this operation needs",
    404: "Nothing with that id",
    409: "The change conflicts with the current state (e.g. an illegal status move)",
    412: "`If-Match` names a version that is no longer current",
    422: "The request is well-formed JSON of the wrong shape",
    429: "Too many failed authentication attempts from this address (see `Retry-After`)",
    503: "The database is unavailable (see `Retry-After`)",
}


def _declare_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every operation's error answers, as problem+json, in the OpenAPI document."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    body = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = {422, 503}
            if path.startswith("/webhooks/"):
                # Authenticated by the vendor's signature or shared secret, not an API key.
                codes = {400, 401, 404, 422, 503}
            elif operation.get("security"):
                codes |= {401, 403, 429}
            if "{" in path:
                codes.add(404)
            if method == "get" and path.startswith("/api/"):
                codes.add(400)  # an unknown query parameter (`params.refuse_unknown_query`)
            if method in ("post", "put", "patch", "delete") and not path.startswith("/webhooks/"):
                codes |= {400, 409}
            if any(p.get("name", "").lower() == "if-match" for p in operation.get("parameters", [])):
                codes.add(412)
            answers = operation["responses"]
            # A route declares the errors only it can answer (e.g. a 404 for a connector its body names)
            # with a description of its own; every error answer is a problem.
            declared = {int(code): answer for code, answer in answers.items() if int(code) >= 400}
            for code in sorted(codes | set(declared)):
                # FastAPI's own 422 says application/json with its validation schema; ours is a problem.
                description = _ANSWERS[code] if code in codes else declared[code]["description"]
                answers[str(code)] = {"description": description, "content": body}
    return schema


def install(app: FastAPI) -> None:
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _declare_problems(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, error: HubError) -> JSONResponse:
        response = problem(error.status, error.title, error.detail, request, **error.extra)
        if isinstance(error, Throttled):
            response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return response

    @app.exception_handler(IllegalTransition)
    async def _illegal(request: Request, error: IllegalTransition) -> JSONResponse:
        allowed = [s.value for s in error.allowed]
        extra: dict[str, Any] = {"current_status": error.current.value, "allowed_statuses": allowed}
        if error.current is Status.CLOSED and error.target in REOPEN_FROM_CLOSED:
            reopen = {"status": error.target.value, "reopen": True}
            hint = f"; a CLOSED incident moves only when reopened: send {json.dumps(reopen)}"
            extra["reopen_with"] = reopen
        elif error.current is Status.CLOSED:
            statuses = " or ".join(s.value for s in sorted(REOPEN_FROM_CLOSED, key=list(Status).index))
            hint = f'; a CLOSED incident moves only when reopened, to {statuses}, with "reopen": true'
        else:
            hint = f"; allowed from {error.current}: {', '.join(allowed) or 'none'}"
        return problem(409, "Illegal status change", str(error) + hint, request, **extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        malformed = _malformed_json(error)
        if malformed is not None:
            return problem(malformed.status, malformed.title, malformed.detail, request)
        errors = [_clean(e) for e in error.errors()]
        unknown = [".".join(str(p) for p in e["loc"][1:]) for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            detail = f"unknown field(s): {', '.join(unknown)}"
        else:
            detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:10])
        return problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Keep what the error carries for the client: `Allow` on a 405, for one.
        title = _TITLES.get(error.status_code, "Error")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names only the first route on the path; GET and POST are often two routes.
            allowed = _allowed_methods(request.app.router.routes, request.scope, set())
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return problem(error.status_code, title, str(error.detail), request, headers=headers)

    # Registered for DBAPIError (not left to the catch-all below): Starlette re-raises what reaches the
    # catch-all after answering, and the server then drops the keep-alive connection, so a client could
    # not tell whether its POST was applied.
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _database(request: Request, error: Exception) -> JSONResponse:
        why = unavailable(error)
        if why is None:
            log.error("database error", exc_info=error, extra={"path": request.url.path})
            return problem(
                500, "Internal error", "the hub failed to handle this request; see its logs", request
            )
        log.warning("database unavailable", extra={"path": request.url.path, "reason": why})
        return problem(
            503,
            "Database unavailable",
            f"the hub cannot reach its database ({why}); nothing was changed by this request unless a "
            "later read shows it: retry after the pause",
            request,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(500, "Internal error", "the hub failed to handle this request; see its logs", request)


def _allowed_methods(routes: Iterable[BaseRoute], scope: Scope, found: set[str]) -> set[str]:
    """Every method some route answers on the scope's path."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            _allowed_methods(included.routes, scope, found)
            continue
        methods = getattr(route, "methods", None)
        if methods and route.matches(scope)[0] is not Match.NONE:
            found |= set(methods)
    return found


def _malformed_json(error: RequestValidationError) -> MalformedJson | None:
    """The body was not JSON at all (FastAPI reports the character offset: we say line and column)."""
    found = next((e for e in error.errors() if e.get("type") == "json_invalid"), None)
    if found is None:
        return None
    loc = found.get("loc", ())
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    why = (found.get("ctx") or {}).get("error") or "not JSON"
    document = error.body if isinstance(error.body, str) else None
    if position is None or document is None:
        return MalformedJson(why)
    line = document.count("\n", 0, position) + 1
    column = position - (document.rfind("\n", 0, position) + 1) + 1
    return MalformedJson(why, line, column)


def malformed_json(error: ValidationError) -> MalformedJson | None:
    """The same for a body the route parsed itself with pydantic (`model_validate_json`)."""
    found = next((e for e in error.errors() if e["type"] == "json_invalid"), None)
    if found is None:
        return None
    why = str((found.get("ctx") or {}).get("error") or found["msg"])
    where = re.fullmatch(r"(.*) at line (\d+) column (\d+)", why)
    if where is None:
        return MalformedJson(why)
    return MalformedJson(where[1], int(where[2]), int(where[3]))


def _clean(error: Any) -> dict[str, Any]:
    # Drop the echoed input: it may hold secrets (e.g. a subscription secret).
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}


_TITLES = {
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
}
