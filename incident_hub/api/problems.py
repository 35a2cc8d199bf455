"""RFC 9457 problem details: the one place typed errors become HTTP responses."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from incident_hub.api.throttle import Throttled
from incident_hub.errors import HubError, MalformedJson
from incident_hub.model import REOPEN_FROM_CLOSED, IllegalTransition, Status

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
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
        return problem(error.status_code, _TITLES.get(error.status_code, "Error"), str(error.detail), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(500, "Internal error", "the hub failed to handle this request; see its logs", request)


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
