"""The PagerDuty sandbox: REST API v2 and Events API v2 subsets, signed V3 webhooks, and UI control.

    app, state = pagerduty_sandbox("api-token", "webhook-secret", hub_webhook_url)
    with Sandbox(app, state) as sandbox:  # sandbox.url, sandbox.ca_bundle
        ...

The account is seeded (see `account.py`): service `SERVICE_ID` on escalation policy
`ESCALATION_POLICY_ID` (level 1: the responder, level 2: the secondary), priorities P1..P5
(`PRIORITY_IDS`), the hub's own user `HUB_EMAIL`, and the Events API routing key `ROUTING_KEY`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from incident_hub.sandbox.common import CONTROL_PREFIX, Knobs, WebhookTarget, build_app
from incident_hub.sandbox.pagerduty.account import (
    ESCALATION_POLICY_ID,
    HUB_EMAIL,
    HUB_USER_ID,
    PRIORITY_IDS,
    RESPONDER_EMAIL,
    RESPONDER_ID,
    ROUTING_KEY,
    SECOND_POLICY_ID,
    SECONDARY_EMAIL,
    SECONDARY_ID,
    SERVICE_ID,
    seeded_account,
)
from incident_hub.sandbox.pagerduty.control import control_error, control_router
from incident_hub.sandbox.pagerduty.events_api import events_router
from incident_hub.sandbox.pagerduty.model import PagerDutyError
from incident_hub.sandbox.pagerduty.rest import rest_router
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.pagerduty.webhooks import SIGNATURE_HEADER, Deliveries, signature

__all__ = [
    "DOCUMENTED_RATE_LIMIT",
    "ESCALATION_POLICY_ID",
    "HUB_EMAIL",
    "HUB_USER_ID",
    "PRIORITY_IDS",
    "RESPONDER_EMAIL",
    "RESPONDER_ID",
    "ROUTING_KEY",
    "SECONDARY_EMAIL",
    "SECONDARY_ID",
    "SECOND_POLICY_ID",
    "SERVICE_ID",
    "SIGNATURE_HEADER",
    "PagerDutyState",
    "error_body",
    "pagerduty_sandbox",
    "signature",
]

# Messages and codes from PagerDuty's error code table (developer-docs docs/REST-API/14-Errors.md); 429's
# from the rate limit page (docs/REST-API/04-Rate-Limits.md).
_ERRORS = {
    400: ("Invalid Input Provided", 2001),
    401: ("Authentication failed", 2006),
    403: ("Access Denied", 2010),
    404: ("Not Found", 2100),
    405: ("Invalid operation", 2015),
    408: ("The request took too long to process", 2016),
    429: ("Rate Limit Exceeded", 2020),
    504: ("The request took too long to process", 2016),
}
# REST API requests a minute per API key (support.pagerduty.com "REST API Rate Limits").
DOCUMENTED_RATE_LIMIT = 960
_INTERNAL = ("An internal error has occurred. PagerDuty team has been notified.", 2000)


def error_body(status: int) -> dict[str, Any]:
    """PagerDuty's error body for an HTTP status (used for injected failures too)."""
    message, code = _ERRORS.get(status, _INTERNAL)
    return {"error": {"message": message, "code": code}}


def pagerduty_sandbox(
    api_token: str,
    webhook_secret: str | Sequence[str] | None = None,
    hub_webhook_url: str | None = None,
    *,
    routing_key: str = ROUTING_KEY,
    subdomain: str = "incident-hub-sandbox",
) -> tuple[FastAPI, PagerDutyState]:
    """A PagerDuty sandbox app and its state; serve it with `Sandbox(app, state)`.

    `webhook_secret` may list several secrets: webhooks are then signed with each (rotation), the first
    being the subscription's current one.
    """
    state = PagerDutyState(
        vendor="pagerduty",
        create_call=("POST", r"/incidents/?"),
        api_token=api_token,
        account=seeded_account(routing_key),
        subdomain=subdomain,
        rate_limit_headers=rate_limit_headers,
    )
    secrets = [webhook_secret] if isinstance(webhook_secret, str) else list(webhook_secret or [])
    if hub_webhook_url:
        state.webhook_targets = [WebhookTarget(url=hub_webhook_url, secret=secrets[0] if secrets else None)]
        if len(secrets) > 1:
            state.extra_signing_secrets[secrets[0]] = secrets[1:]
    deliveries = Deliveries(state)
    vendor = APIRouter()
    vendor.include_router(rest_router(state, deliveries))
    vendor.include_router(events_router(state, deliveries))
    vendor.include_router(control_router(state, deliveries))
    app = build_app(state, vendor, error_body, "PagerDuty sandbox")
    app.add_exception_handler(PagerDutyError, _on_pagerduty_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    return app, state


async def _on_pagerduty_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PagerDutyError)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await http_exception_handler(request, control_error(error))
    body = error_body(error.status)
    body["error"].update(message=error.message, code=error.code)
    if error.errors:
        body["error"]["errors"] = error.errors
    return JSONResponse(body, status_code=error.status)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await http_exception_handler(request, error)
    return JSONResponse(error_body(error.status_code), status_code=error.status_code)


def rate_limit_headers(wait: float, knobs: Knobs) -> dict[str, str]:
    """The `ratelimit-*` headers PagerDuty sends with a 429 instead of `Retry-After`
    (docs/REST-API/04-Rate-Limits.md): `ratelimit-reset` is the seconds to wait. The REST API allows 960
    requests a minute per API key; `knobs.rate_limit` of 960 a 60-second period enforces that."""
    return {
        "ratelimit-limit": str(knobs.rate_limit or DOCUMENTED_RATE_LIMIT),
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(math.ceil(wait)),
    }
