"""Logging in to the admin UI with an admin API key, and out again."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from incident_hub.admin.render import error_page, render, see_other
from incident_hub.admin.session import COOKIE, AdminPost, AdminSession, current, store, tokens_match
from incident_hub.api.auth import ApiKeys, Scope

log = logging.getLogger(__name__)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only back into the admin UI: never an open redirect to another site (`//evil.example`).
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin/connectors"


def _set_cookie(request: Request, response: Response, session: AdminSession) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin",
        max_age=int(store(request).lifetime_seconds),
    )


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    session = current(request)
    if session is not None and session.key is not None:
        return see_other(_safe_next(next))
    if session is None:
        session = store(request).new()
    response = render(request, "login.html", session, {"next": _safe_next(next), "error": None})
    _set_cookie(request, response, session)
    return response


@router.post("/login")
def log_in(
    request: Request,
    api_key: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    session = current(request)
    if session is None or not tokens_match(session.csrf_token, csrf_token):
        # The login form itself is protected: no site can log a browser in with the attacker's key.
        return error_page(request, None, 403, "The login form expired or did not come from this site.")
    keys: ApiKeys = request.app.state.hub.api_keys
    principal = keys.verify(api_key.strip())
    if principal is None or not principal.allows(Scope.ADMIN):
        error = "Unknown or revoked API key." if principal is None else "This key lacks the admin scope."
        log.warning(
            "admin login refused",
            extra={"key_id": principal.key_id if principal else None, "reason": error},
        )
        context = {"next": _safe_next(next), "error": error}
        return render(request, "login.html", session, context, status_code=403 if principal else 401)
    logged_in = store(request).log_in(session, api_key.strip(), principal)
    log.info("admin login", extra={"key_id": principal.key_id, "key_name": principal.name})
    response = see_other(_safe_next(next))
    _set_cookie(request, response, logged_in)
    return response


@router.post("/logout")
def log_out(request: Request, session: AdminPost) -> Response:
    store(request).end(session.id)
    response = see_other("/admin/login")
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
    return response
