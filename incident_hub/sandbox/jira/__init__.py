"""Jira Cloud sandbox: the platform REST API v3 subset the hub's connector uses, and admin webhooks.

`jira_sandbox(...)` builds the app and its state; serve it with `incident_hub.sandbox.common.Sandbox`.
Seeded site:

- users: the hub's service account (`SERVICE_ACCOUNT_ID`, signs in with the e-mail and API token given)
  and a person (`HUMAN_ACCOUNT_ID`, Mia Krystof, America/Los_Angeles) who acts through `/_sandbox/jira`;
- projects `OPS` (Operations) and `SEC` (Security, where the Severity select `customfield_10042` is
  required), issue types Incident (10001) and Task (10002), a free-text Impact field `customfield_10043`;
- priorities Highest..Lowest (ids 1-5, default Medium), a workflow To Do -> In Progress -> Done, with
  Cancelled and Duplicate also in the Done category (see `_TRANSITIONS`).

Quirks kept on purpose, each cited where it is implemented: ADF-only rich text in v3 and plain text in
webhooks, `/rest/api/3/search` answering 410 (use `/search/jql`, token paging), JQL dates in the searcher's
time zone, entity properties searchable only when indexed, eventual consistency of `/search/jql`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from incident_hub.sandbox.common import (
    CONTROL_PREFIX,
    Knobs,
    WebhookSender,
    WebhookTarget,
    build_app,
)
from incident_hub.sandbox.jira.api import api_router
from incident_hub.sandbox.jira.control import control_router
from incident_hub.sandbox.jira.model import (
    CustomField,
    IssueType,
    JiraError,
    JiraState,
    Priority,
    Project,
    Resolution,
    Status,
    Transition,
    User,
)
from incident_hub.sandbox.jira.search import search_router
from incident_hub.sandbox.jira.webhooks import sign

SERVICE_ACCOUNT_ID = "712020:4d1e8c52-9b7a-4f0e-8a63-5f1b2c3d4e5f"
HUMAN_ACCOUNT_ID = "5b10a2844c20165700ede21g"
SEVERITY_FIELD = "customfield_10042"
IMPACT_FIELD = "customfield_10043"

_STATUSES = (
    Status("10000", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "Done", "done"),
    Status("10002", "Cancelled", "done"),
    Status("10003", "Duplicate", "done"),
)
_OPEN, _DONE = frozenset({"10000", "3"}), frozenset({"10001", "10002", "10003"})
_TRANSITIONS = (
    Transition("21", "Start Progress", "3", frozenset({"10000"})),
    Transition("11", "Stop Progress", "10000", frozenset({"3"})),
    Transition("31", "Done", "10001", _OPEN, resolution="10000"),
    Transition("41", "Cancel", "10002", _OPEN, resolution="10001"),
    Transition("51", "Mark as Duplicate", "10003", _OPEN, resolution="10002"),
    Transition("61", "Reopen", "10000", _DONE),
)
_RESOLUTIONS = (
    Resolution("10000", "Done", "Work has been completed on this issue."),
    Resolution("10001", "Won't Do", "This issue won't be actioned."),
    Resolution("10002", "Duplicate", "The problem is a duplicate of an existing issue."),
)
_PRIORITIES = (
    Priority("1", "Highest", "#d04437"),
    Priority("2", "High", "#f15C75"),
    Priority("3", "Medium", "#f79232"),
    Priority("4", "Low", "#707070"),
    Priority("5", "Lowest", "#999999"),
)
_ISSUE_TYPES = (
    IssueType("10001", "Incident", "For system outages or incidents."),
    IssueType("10002", "Task", "A small, distinct piece of work."),
)
_CUSTOM_FIELDS = (
    CustomField(
        SEVERITY_FIELD,
        "Severity",
        (("10100", "Sev1"), ("10101", "Sev2"), ("10102", "Sev3"), ("10103", "Sev4")),
    ),
    CustomField(IMPACT_FIELD, "Impact"),
)
_ERROR_MESSAGES = {429: "Rate limit exceeded.", 503: "Service Unavailable", 504: "Gateway Timeout"}


def jira_sandbox(
    email: str,
    api_token: str,
    webhook_secret: str | None,
    hub_webhook_url: str | None,
    *,
    time_zone: str = "UTC",
    indexed_properties: Iterable[str] = ("hub",),
    search_lag_seconds: float = 0.0,
    clock: Callable[[], datetime] | None = None,
) -> tuple[FastAPI, JiraState]:
    """A seeded Jira Cloud site whose API account is `email`/`api_token` (profile time zone `time_zone`),
    sending admin webhooks to `hub_webhook_url`, signed with `webhook_secret` when given."""
    service = User(SERVICE_ACCOUNT_ID, "Incident Hub", email, time_zone)
    human = User(HUMAN_ACCOUNT_ID, "Mia Krystof", "mia.krystof@example.com", "America/Los_Angeles")
    state = JiraState(
        rate_limit_headers=rate_limit_headers,
        vendor="jira",
        create_call=("POST", r"/rest/api/[23]/issue"),
        users={u.account_id: u for u in (service, human)},
        api_tokens={email: (api_token, service.account_id)},
        service_account=service.account_id,
        projects={
            "OPS": Project("10000", "OPS", "Operations", human.account_id, _ISSUE_TYPES),
            "SEC": Project(
                "10001",
                "SEC",
                "Security",
                human.account_id,
                _ISSUE_TYPES,
                {SEVERITY_FIELD: "Severity is required."},
            ),
        },
        statuses={s.id: s for s in _STATUSES},
        initial_status="10000",
        transitions=_TRANSITIONS,
        resolutions={r.id: r for r in _RESOLUTIONS},
        priorities={p.id: p for p in _PRIORITIES},
        default_priority="3",
        custom_fields={f.id: f for f in _CUSTOM_FIELDS},
        indexed_properties=frozenset(indexed_properties),
        search_lag_seconds=search_lag_seconds,
    )
    if clock is not None:
        state.clock = clock
    if hub_webhook_url:
        state.webhook_targets = [WebhookTarget(url=hub_webhook_url, secret=webhook_secret)]
    sender = WebhookSender(state, sign)
    routes = APIRouter()
    routes.include_router(api_router(state, sender))
    routes.include_router(search_router(state))
    routes.include_router(control_router(state, sender))
    app = build_app(state, routes, error_body, "Jira Cloud sandbox")
    app.add_exception_handler(JiraError, _jira_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    return app, state


def rate_limit_headers(wait: float, knobs: Knobs) -> dict[str, str]:
    """What Jira Cloud sends with a 429 (developer.atlassian.com "Rate limiting"): `Retry-After` seconds,
    `X-RateLimit-Reset` the time of the request plus that wait (`yyyy-MM-ddTHH:mmZ`), the limit, and the
    reason (a burst limit, per second per endpoint, for API-token traffic)."""
    seconds = math.ceil(wait)
    reset = datetime.now(UTC) + timedelta(seconds=seconds)
    return {
        "retry-after": str(seconds),
        "x-ratelimit-limit": str(knobs.rate_limit or 0),
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
        "ratelimit-reason": "jira-burst-based",
    }


def error_body(status: int) -> dict[str, Any]:
    """Jira's error collection, for failures the knobs inject."""
    return {"errorMessages": [_ERROR_MESSAGES.get(status, "Internal server error")], "errors": {}}


async def _jira_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, JiraError)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse({"errorMessages": [error.detail], "errors": {}}, status_code=error.status_code)


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if request.url.path.startswith(CONTROL_PREFIX):
        return await request_validation_exception_handler(request, error)
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
    return JSONResponse({"errorMessages": problems, "errors": {}}, status_code=400)


__all__ = [
    "HUMAN_ACCOUNT_ID",
    "IMPACT_FIELD",
    "SERVICE_ACCOUNT_ID",
    "SEVERITY_FIELD",
    "JiraState",
    "jira_sandbox",
]
