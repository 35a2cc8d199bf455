"""The Opsgenie sandbox: the Alert API v2 subset, webhook-integration deliveries, and UI control.

    app, state = opsgenie_sandbox("api-key", "webhook-secret", hub_webhook_url)
    with Sandbox(app, state) as sandbox:  # sandbox.url, sandbox.ca_bundle
        ...

The account is seeded (see `state.py`): the API integration `INTEGRATION_NAME`, people `PEOPLE`
(mia@example.com, sam@example.com), teams `payments` and `platform`, escalations
`payments_escalation` and `platform_escalation`. Webhooks carry the secret in the header
`webhook_header` (default `X-Incident-Hub-Secret`), or as basic auth with `webhook_auth="basic"`.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from incident_hub.sandbox.common import CONTROL_PREFIX, Knobs, WebhookTarget, build_app
from incident_hub.sandbox.opsgenie.api import api_router
from incident_hub.sandbox.opsgenie.control import control_router
from incident_hub.sandbox.opsgenie.model import OpsgenieError
from incident_hub.sandbox.opsgenie.state import (
    ESCALATIONS,
    INTEGRATION_ID,
    INTEGRATION_NAME,
    PEOPLE,
    TEAMS,
    OpsgenieState,
    RequestKnobs,
)
from incident_hub.sandbox.opsgenie.webhooks import (
    WEBHOOK_INTEGRATION_NAME,
    Deliveries,
    webhook_body,
)

__all__ = [
    "ESCALATIONS",
    "INTEGRATION_ID",
    "INTEGRATION_NAME",
    "PEOPLE",
    "TEAMS",
    "WEBHOOK_INTEGRATION_NAME",
    "OpsgenieState",
    "RequestKnobs",
    "error_body",
    "opsgenie_sandbox",
    "webhook_body",
]

# Texts of Opsgenie's answers (docs.opsgenie.com "Response": the code table; 401 and 429 texts as the
# live API words them, which the docs do not).
_MESSAGES = {
    400: "Invalid JSON body",
    401: "Could not authenticate",
    403: "apiKey is valid but the apiKey cannot do this operation because of permissions",
    404: "Resource or handler not found",
    405: "URL is valid but HTTP method not supported",
    422: "Request body is not processable. Please check the errors.",
    429: "You are making too many requests! To avoid errors, we recommend you limit requests.",
    504: "Gateway Timeout",
}


def rate_limit_headers(wait: float, knobs: Knobs) -> dict[str, str]:
    """What Opsgenie sends with a 429 (docs.opsgenie.com "Rate Limiting"): the state, the reason, and the
    period of the bucket that ran dry (60 or 1 there; here the seconds until a request goes through, so
    an injected storm's wait reaches the client). No `Retry-After`."""
    return {
        "x-ratelimit-state": "THROTTLED",
        "x-ratelimit-reason": "ACCOUNT",
        "x-ratelimit-period-in-sec": str(math.ceil(wait)),
    }


def error_body(status: int) -> dict[str, Any]:
    """Opsgenie's `ErrorResponse` for an HTTP status (used for injected failures too)."""
    message = _MESSAGES.get(status, "Internal Server Error")
    return {"message": message, "took": 0.0, "requestId": str(uuid.uuid4())}


def opsgenie_sandbox(
    api_key: str,
    webhook_secret: str | None = None,
    hub_webhook_url: str | None = None,
    *,
    webhook_auth: str = "header",
    webhook_header: str = "X-Incident-Hub-Secret",
    webhook_username: str = "opsgenie",
) -> tuple[FastAPI, OpsgenieState]:
    """An Opsgenie sandbox app and its state; serve it with `Sandbox(app, state)`."""
    if webhook_auth not in ("header", "basic"):
        raise ValueError("webhook_auth is 'header' or 'basic'")
    state = OpsgenieState(
        rate_limit_headers=rate_limit_headers,
        vendor="opsgenie",
        create_call=("POST", r"/v2/alerts/?"),
        api_key=api_key,
        webhook_auth=webhook_auth,
        webhook_header=webhook_header,
        webhook_username=webhook_username,
    )
    if hub_webhook_url:
        state.webhook_targets = [WebhookTarget(url=hub_webhook_url, secret=webhook_secret)]
    deliveries = Deliveries(state)
    vendor = APIRouter()
    vendor.include_router(api_router(state, deliveries))
    vendor.include_router(control_router(state, deliveries))
    app = build_app(state, vendor, error_body, "Opsgenie sandbox")
    app.add_exception_handler(OpsgenieError, _on_opsgenie_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    return app, state


async def _on_opsgenie_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, OpsgenieError)
    body = error_body(error.status) | {"message": error.message}
    if error.errors:
        body["errors"] = error.errors
    return JSONResponse(body, status_code=error.status)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await http_exception_handler(request, error)
    return JSONResponse(error_body(error.status_code), status_code=error.status_code)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await request_validation_exception_handler(request, error)
    return JSONResponse(error_body(422), status_code=422)
