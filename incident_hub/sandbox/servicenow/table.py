"""The Table API subset the connector uses (docs/c_TableAPI.md): list, get, insert, update (PATCH and PUT)
and delete, default and versioned URLs, on `incident`; read-only `sys_journal_field`, `sys_audit`,
`sys_user` and `sys_user_group`. Basic auth as the integration user; every write fires the business rule."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from incident_hub.sandbox.servicenow.query import parse
from incident_hub.sandbox.servicenow.render import View, render
from incident_hub.sandbox.servicenow.state import ServiceNowError, ServiceNowState
from incident_hub.sandbox.servicenow.webhooks import BusinessRule

WRITABLE = frozenset({"incident"})
DEFAULT_LIMIT = 10_000  # sysparm_limit's documented default
_PREFIXES = ("/api/now/table", "/api/now/{api_version}/table")


def table_router(state: ServiceNowState, business_rule: BusinessRule) -> APIRouter:
    router = APIRouter()

    def user_of(request: Request) -> str:
        """The basic-auth user, or ServiceNow's 401 (docs/c_RESTAPI.md "REST API security")."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        known = hmac.compare_digest(user.encode(), state.username.encode()) & hmac.compare_digest(
            password.encode(), state.password.encode()
        )
        if scheme.lower() != "basic" or not known:
            raise ServiceNowError(401, "User Not Authenticated", "Required to provide Auth information")
        return user

    def view(request: Request) -> View:
        return View.of(request.query_params, str(request.base_url))

    async def body_of(request: Request) -> dict[str, Any]:
        # docs/c_RESTAPI.md "Data format headers": writes need Content-Type, else 400.
        content_type = request.headers.get("content-type", "")
        if not content_type:
            raise ServiceNowError(400, "Content-Type header is required")
        if "json" not in content_type:
            raise ServiceNowError(415, f"Unsupported media type: {content_type}")
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise ServiceNowError(
                400, "Exception while reading request", "The payload is not valid JSON."
            ) from None
        if isinstance(body, list):
            body = body[0] if body else {}  # "only the first record is processed" (docs/c_RESTAPI.md)
        if not isinstance(body, dict):
            raise ServiceNowError(400, "Exception while reading request", "The payload is not a JSON object.")
        return body

    def writable(table: str) -> None:
        state.table(table)
        if table not in WRITABLE:
            raise ServiceNowError(403, "Operation Failed", f"ACL restricts writes to {table} in this sandbox")

    async def list_records(table: str, request: Request, api_version: str | None = None) -> Response:
        user_of(request)
        params = request.query_params
        records = list(state.table(table).values())
        fields_known = set().union(*(r.keys() for r in records)) if records else set()
        text = params.get("sysparm_query", "")
        if not text:  # name-value pairs, mutually exclusive with sysparm_query
            text = "^".join(f"{k}={v}" for k, v in params.items() if not k.startswith("sysparm_"))
        query = parse(text, lambda name: name in fields_known)
        found = query.sort([r for r in records if query.matches(r)])
        limit = _int(params.get("sysparm_limit"), DEFAULT_LIMIT)
        offset = _int(params.get("sysparm_offset"), 0)
        shown = view(request)
        with state.lock:
            page = [render(state, table, r, shown) for r in found[offset : offset + limit]]
        headers: dict[str, str] = {}
        if params.get("sysparm_no_count", "false").lower() != "true":
            headers["X-Total-Count"] = str(len(found))
        if params.get("sysparm_suppress_pagination_header", "false").lower() != "true":
            headers["Link"] = _links(str(request.url).split("?")[0], dict(params), len(found), offset, limit)
        return JSONResponse({"result": page}, headers=headers)

    async def get_record(
        table: str, sys_id: str, request: Request, api_version: str | None = None
    ) -> Response:
        user_of(request)
        with state.lock:
            return JSONResponse({"result": render(state, table, state.record(table, sys_id), view(request))})

    async def insert(table: str, request: Request, api_version: str | None = None) -> Response:
        user = user_of(request)
        writable(table)
        change = state.insert_incident(user, await body_of(request))
        business_rule.fire(change)
        location = f"{str(request.base_url).rstrip('/')}/api/now/table/{table}/{change.after['sys_id']}"
        with state.lock:
            rendered = render(state, table, change.after, view(request))
        return JSONResponse({"result": rendered}, status_code=201, headers={"Location": location})

    async def update(table: str, sys_id: str, request: Request, api_version: str | None = None) -> Response:
        user = user_of(request)
        writable(table)
        change = state.update_incident(user, sys_id, await body_of(request))
        business_rule.fire(change)
        with state.lock:
            return JSONResponse({"result": render(state, table, change.after, view(request))})

    async def delete(table: str, sys_id: str, request: Request, api_version: str | None = None) -> Response:
        user_of(request)
        writable(table)
        with state.lock:
            state.record(table, sys_id)
            del state.tables[table][sys_id]
        return Response(status_code=204)

    for prefix in _PREFIXES:
        router.add_api_route(f"{prefix}/{{table}}", list_records, methods=["GET"])
        router.add_api_route(f"{prefix}/{{table}}", insert, methods=["POST"])
        router.add_api_route(f"{prefix}/{{table}}/{{sys_id}}", get_record, methods=["GET"])
        router.add_api_route(f"{prefix}/{{table}}/{{sys_id}}", update, methods=["PATCH", "PUT"])
        router.add_api_route(f"{prefix}/{{table}}/{{sys_id}}", delete, methods=["DELETE"])
    return router


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _links(url: str, params: dict[str, str], total: int, offset: int, limit: int) -> str:
    """The Link header: first, prev, next and last pages (c_TableAPI.md)."""
    limit = max(limit, 1)

    def at(start: int) -> str:
        return url + "?" + urlencode({**params, "sysparm_offset": str(start), "sysparm_limit": str(limit)})

    last = max(0, (total - 1) // limit * limit)
    links = [f'<{at(0)}>;rel="first"']
    if offset > 0:
        links.append(f'<{at(max(0, offset - limit))}>;rel="prev"')
    if offset + limit < total:
        links.append(f'<{at(offset + limit)}>;rel="next"')
    links.append(f'<{at(last)}>;rel="last"')
    return ",".join(links)
