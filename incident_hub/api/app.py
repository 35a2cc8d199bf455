"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute

from incident_hub import __version__
from incident_hub.admin import install as install_admin
from incident_hub.analytics.reports import Analytics
from incident_hub.api import analytics as analytics_api
from incident_hub.api import audit as audit_api
from incident_hub.api import (
    connectors,
    incidents,
    links,
    ops,
    outbox,
    problems,
    reconciliations,
    signals,
    text,
)
from incident_hub.api import mappings as mappings_api
from incident_hub.api.middleware import BodyLimit, DirectRoute, Metrics
from incident_hub.api.params import refuse_unknown_query
from incident_hub.hub import Hub
from incident_hub.logs import configure as configure_logging
from incident_hub.metrics import AnalyticsCollector, process_exiting
from incident_hub.settings import Settings, get_settings

DESCRIPTION = """
One canonical record of every incident, kept in step with PagerDuty, ServiceNow, Opsgenie and Jira.

Authenticate with `Authorization: Bearer <key>` (make one with `incident-hub apikey create`).
Errors are RFC 9457 `application/problem+json`. Updates honour `If-Match` with the `ETag` the hub returned.
"""


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or get_settings()
    hub = Hub(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            hub.migrate()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            process_exiting()

    app = FastAPI(
        title="incident-hub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(text.refuse_nul_in_body)],
    )
    app.state.hub = hub
    app.state.analytics = Analytics(hub.db, settings)
    hub.metrics_registry.register(AnalyticsCollector(app.state.analytics))
    problems.install(app)
    links.install(app)
    # A GET naming a query parameter its route does not take is refused, so a misspelt filter is not
    # read as "no filter".
    for api in (incidents, outbox, connectors, mappings_api, audit_api, reconciliations):
        app.include_router(api.router, dependencies=[Depends(refuse_unknown_query)])
    app.include_router(signals.router)
    app.include_router(analytics_api.router)
    app.include_router(ops.router)
    install_admin(app, hub.db)
    # Innermost, so the body limit and metrics see webhooks as before.
    app.add_middleware(DirectRoute, route=_webhook_route(), endpoint=_receive_webhook)
    app.add_middleware(text.RefuseNul)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Metrics)
    return app


def _webhook_route() -> APIRoute:
    return next(
        route
        for route in connectors.router.routes
        if isinstance(route, APIRoute) and route.endpoint is connectors.receive_webhook
    )


async def _receive_webhook(request: Request) -> Response:
    return await connectors.receive_webhook(request.path_params["connector_id"], request)


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings and logging from the environment."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
