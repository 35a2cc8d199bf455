"""The admin web UI at `/admin`: server-rendered pages (Jinja2) made lively with htmx, served by the hub
itself, for an operator holding an admin API key. See docs/admin.md."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from incident_hub.admin import connectors, deliveries, incidents, login, mappings, overview
from incident_hub.admin.render import STATIC, AdminPageError, error_page, is_htmx, see_other
from incident_hub.admin.session import CsrfRejected, LoginRequired, SessionStore, current
from incident_hub.store.db import Database

router = APIRouter(prefix="/admin", include_in_schema=False)
LANDING = "/admin/overview"
router.include_router(login.router)
router.include_router(overview.router)
router.include_router(connectors.router)
router.include_router(mappings.router)
router.include_router(deliveries.router)
router.include_router(incidents.router)


@router.get("")
@router.get("/")
def home() -> Response:
    return see_other(LANDING)


def install(app: FastAPI, db: Database) -> None:
    """Serve the admin UI (pages, static files, its sessions in `db` and error pages) from `app`."""
    app.state.admin_sessions = SessionStore(db)
    app.include_router(router)
    app.mount("/admin/static", StaticFiles(directory=STATIC), name="admin-static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, error: LoginRequired) -> Response:
        target = "/admin/login?next=" + quote(request.url.path)
        if is_htmx(request):
            # A fragment request cannot follow a redirect into the page: htmx navigates the window.
            return Response(status_code=401, headers={"HX-Redirect": target})
        return see_other(target)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, error: CsrfRejected) -> HTMLResponse:
        message = "This form expired or did not come from this site: reload the page and try again."
        return error_page(request, current(request), 403, message)

    @app.exception_handler(AdminPageError)
    async def _page_error(request: Request, error: AdminPageError) -> HTMLResponse:
        return error_page(request, current(request), error.status, error.message)
