"""Logging in to the admin UI with an admin API key, and out again."""

from __future__ import annotations

import logging
import math
import posixpath
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from incident_hub.admin.render import error_page, render, see_other
from incident_hub.admin.session import COOKIE, LOGIN_COOKIE, AdminPost, current, store
from incident_hub.api.auth import ApiKeys, Scope
from incident_hub.api.throttle import Throttled

log = logging.getLogger(__name__)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only back into the admin UI: never an open redirect to another site (`//evil.example`), nor a
    path that leaves /admin once normalised (`/admin/..//evil.example`)."""
    default = "/admin/overview"
    if not target or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    path = posixpath.normpath(parts.path)
    if path != "/admin" and not path.startswith("/admin/"):
        return default
    return path + (f"?{parts.query}" if parts.query else "")


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: float) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin",
        max_age=int(max_age),
    )


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    if current(request) is not None:
        return see_other(_safe_next(next))
    sessions = store(request)
    # Kept across visits, so two login tabs of one browser both stay valid.
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    context = {"next": _safe_next(next), "error": None, "csrf_token": sessions.login_form_token(nonce)}
    response = render(request, "login.html", None, context)
    _set_cookie(request, response, LOGIN_COOKIE, nonce, sessions.login_form_seconds)
    return response


@router.post("/login")
def log_in(
    request: Request,
    api_key: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    sessions = store(request)
    if not sessions.login_form_valid(request.cookies.get(LOGIN_COOKIE), csrf_token):
        # The login form itself is protected: no site can log a browser in with the attacker's key.
        return error_page(request, None, 403, "The login form expired or did not come from this site.")
    keys: ApiKeys = request.app.state.hub.api_keys
    remote = request.client.host if request.client else None
    try:
        principal = keys.verify(api_key.strip(), remote)
    except Throttled as throttled:
        context = {"next": _safe_next(next), "error": throttled.detail, "csrf_token": csrf_token}
        wait = str(max(1, math.ceil(throttled.retry_after)))
        return render(request, "login.html", None, context, status_code=429, headers={"Retry-After": wait})
    if principal is not None and not principal.allows(Scope.ADMIN):
        keys.failures.failed(remote, "admin login")
    if principal is None or not principal.allows(Scope.ADMIN):
        error = "Unknown or revoked API key." if principal is None else "This key lacks the admin scope."
        log.warning(
            "admin login refused",
            extra={"key_id": principal.key_id if principal else None, "reason": error},
        )
        context = {"next": _safe_next(next), "error": error, "csrf_token": csrf_token}
        return render(request, "login.html", None, context, status_code=403 if principal else 401)
    opened = sessions.open(principal)
    log.info("admin login", extra={"key_id": principal.key_id, "key_name": principal.name})
    response = see_other(_safe_next(next))
    _set_cookie(request, response, COOKIE, opened.token, sessions.lifetime_seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


@router.post("/logout")
def log_out(request: Request, session: AdminPost) -> Response:
    store(request).end(session.id)
    response = see_other("/admin/login")
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
    return response
