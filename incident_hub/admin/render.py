"""Server-side rendering of the admin pages: one Jinja2 environment (autoescaped, strict about undefined
names), the headers every admin response carries, and the error pages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from incident_hub.admin.session import CSRF_FIELD, CSRF_HEADER, AdminSession
from incident_hub.clock import as_utc, utcnow
from incident_hub.errors import HubError

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Scripts and styles only from /admin/static: no inline script can run even if some text escaped escaping.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class AdminPageError(Exception):
    """Shown to the admin as an error page (or an error fragment, for an htmx request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@contextmanager
def hub_errors() -> Iterator[None]:
    """Typed hub errors (not found, conflict, invalid) become admin error pages, not problem+json."""
    try:
        yield
    except HubError as error:
        raise AdminPageError(error.status, error.detail) from error


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(value: datetime | timedelta | float | None) -> str:
    """A duration (or the time since `value`) the way a person reads it: 4s, 3m 12s, 2h 5m, 3d 4h."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        seconds = (utcnow() - as_utc(value)).total_seconds()
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        seconds = value
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def safe_url(value: str | None) -> str | None:
    """Only http(s) links are rendered as links: a vendor-supplied `javascript:` URL stays text."""
    if not value:
        return None
    return value if urlsplit(value).scheme in ("http", "https") else None


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = when
    environment.filters["age"] = age
    environment.filters["safe_url"] = safe_url
    return environment


templates = Jinja2Templates(env=_environment())


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    session: AdminSession | None,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page or fragment; pages get the session's CSRF token, flashed messages and who is logged in."""
    values: dict[str, Any] = {
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "csrf_token": session.csrf_token if session is not None else "",
        "user": session.principal.name if session is not None else None,
        "flashes": session.take_flashes() if session is not None and not is_htmx(request) else [],
        "nav": request.url.path,
    }
    values.update(context or {})
    response: HTMLResponse = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )
    return response


def see_other(url: str) -> Response:
    """Post/redirect/get: after a POST the browser shows the page with a GET, so reload does not resend."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def error_page(request: Request, session: AdminSession | None, status: int, message: str) -> HTMLResponse:
    context = {"status": status, "message": message}
    if is_htmx(request):
        # htmx swaps 2xx answers only: the error fragment replaces the panel the request was for.
        return render(request, "_error.html", session, context)
    return render(request, "error.html", session, context, status_code=status)
