"""RFC 9457 problem details: the one place typed errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from incident_hub.errors import HubError
from incident_hub.model import IllegalTransition

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
        return problem(error.status, error.title, error.detail, request, **error.extra)

    @app.exception_handler(IllegalTransition)
    async def _illegal(request: Request, error: IllegalTransition) -> JSONResponse:
        allowed = [s.value for s in error.allowed]
        hint = f"; allowed from {error.current}: {', '.join(allowed) or 'none (reopen required)'}"
        return problem(
            409,
            "Illegal status change",
            str(error) + hint,
            request,
            current_status=error.current.value,
            allowed_statuses=allowed,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
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


def _clean(error: Any) -> dict[str, Any]:
    # Drop the echoed input: it may hold secrets (e.g. a subscription secret).
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}


_TITLES = {
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
}
