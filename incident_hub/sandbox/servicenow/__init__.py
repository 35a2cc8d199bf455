"""The ServiceNow sandbox: the Table API subset on `incident`, the business rule's webhook, and UI control.

    app, state = servicenow_sandbox("incident.hub", "password", hub_webhook_url, "shared-secret")
    with Sandbox(app, state) as sandbox:  # sandbox.url, sandbox.ca_bundle
        ...

The instance is seeded (see `state.seeded_tables`): the integration user (`username`), two people
(`beth.anglin`, `fred.luddy`) and the groups Service Desk, Network and Database (`group_id(name)`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from incident_hub.sandbox.common import CONTROL_PREFIX, Knobs, WebhookTarget, build_app
from incident_hub.sandbox.servicenow.control import control_router
from incident_hub.sandbox.servicenow.state import (
    PRIORITY_LOOKUP,
    ServiceNowError,
    ServiceNowState,
    group_id,
    seeded_tables,
    user_id,
)
from incident_hub.sandbox.servicenow.table import table_router
from incident_hub.sandbox.servicenow.webhooks import BusinessRule, payload

__all__ = [
    "PRIORITY_LOOKUP",
    "ServiceNowState",
    "error_body",
    "group_id",
    "payload",
    "servicenow_sandbox",
    "user_id",
]

# ServiceNow's REST error body: {"error": {"message", "detail"}, "status": "failure"}; messages for the
# statuses of docs/r_RESTAPIHTTPResponseCodes.md.
_MESSAGES = {
    400: "Bad Request",
    401: "User Not Authenticated",
    403: "Operation Failed",
    404: "No Record found",
    405: "Method not Supported",
    415: "Unsupported media type",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway Timeout",
}


# The sys_id of the sandbox's one rate limit rule (sys_rate_limit_rules), named in X-RateLimit-Rule.
RATE_LIMIT_RULE = "5a1d0c2e1b2f3a4b5c6d7e8f9a0b1c2d"


def rate_limit_headers(wait: float, knobs: Knobs) -> dict[str, str]:
    """What an instance sends when a rate limit rule refuses a request (API reference, "Inbound REST API
    rate limiting"): `Retry-After` seconds, the rule's limit, the UNIX time its window resets, the rule."""
    seconds = math.ceil(wait)
    return {
        "retry-after": str(seconds),
        "x-ratelimit-limit": str(knobs.rate_limit or 0),
        "x-ratelimit-reset": str(math.ceil(time.time() + seconds)),
        "x-ratelimit-rule": RATE_LIMIT_RULE,
    }


def error_body(status: int, message: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """ServiceNow's error body for an HTTP status (used for injected failures too)."""
    return {
        "error": {"message": message or _MESSAGES.get(status, "Internal server error"), "detail": detail},
        "status": "failure",
    }


def servicenow_sandbox(
    username: str,
    password: str,
    hub_webhook_url: str | None = None,
    webhook_secret: str | None = None,
    *,
    webhook_auth: Literal["header", "basic"] = "header",
    webhook_header: str = "X-Incident-Hub-Secret",
) -> tuple[FastAPI, ServiceNowState]:
    """A ServiceNow sandbox app and its state; serve it with `Sandbox(app, state)`.

    The business rule posts to `hub_webhook_url` with `webhook_secret` in `webhook_header`, or, with
    `webhook_auth="basic"`, `webhook_secret` as `user:password` in HTTP basic auth.
    """
    state = ServiceNowState(
        vendor="servicenow",
        create_call=("POST", r"/api/now/(v\d+/)?table/incident/?"),
        username=username,
        password=password,
        tables=seeded_tables(username),
        webhook_mode=webhook_auth,
        webhook_header=webhook_header,
        rate_limit_headers=rate_limit_headers,
    )
    if hub_webhook_url:
        state.webhook_targets = [WebhookTarget(url=hub_webhook_url, secret=webhook_secret)]
    business_rule = BusinessRule(state)
    vendor = APIRouter()
    vendor.include_router(table_router(state, business_rule))
    vendor.include_router(control_router(state, business_rule))
    app = build_app(state, vendor, error_body, "ServiceNow sandbox")
    app.add_exception_handler(ServiceNowError, _on_servicenow_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    return app, state


async def _on_servicenow_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceNowError)
    return JSONResponse(error_body(error.status, error.message, error.detail), status_code=error.status)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await http_exception_handler(request, error)
    return JSONResponse(error_body(error.status_code), status_code=error.status_code)
