"""Integers beyond 64 bits in a path or a query are refused with a 4xx that says why, never a 500.

The walk covers every route of the app that takes an integer, so a new route is covered when it is added.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from tests.admin_support import csrf_token, log_in

TOO_BIG = "99999999999999999999"  # > 2**64
JUST_TOO_BIG = str(2**63)  # one past PostgreSQL's bigint


def _is_integer(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(_is_integer(s) for s in schema.get("anyOf", []))


def _calls(openapi: dict[str, Any], value: str) -> list[tuple[str, str, dict[str, str]]]:
    """One call per integer parameter of every documented operation, that parameter set to `value`."""
    calls = []
    for template, operations in openapi["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            for parameter in parameters:
                if not _is_integer(parameter.get("schema", {})):
                    continue
                name, where = parameter["name"], parameter["in"]

                def fill(match: re.Match[str], name: str = name, where: str = where) -> str:
                    return value if where == "path" and match.group(1) == name else "1"

                path = re.sub(r"\{([^}]+)\}", fill, template)
                calls.append((method.upper(), path, {name: value} if where == "query" else {}))
    return calls


@pytest.mark.parametrize("value", [TOO_BIG, JUST_TOO_BIG])
def test_no_route_answers_500_to_an_integer_beyond_64_bits(api: TestClient, value: str) -> None:
    client = TestClient(api.app, raise_server_exceptions=False)
    client.headers.update(api.headers)
    calls = _calls(api.get("/openapi.json").json(), value)
    assert len(calls) >= 10, calls  # deliveries, replay, discard, inbox replay, reconciliations, versions...
    answers = {}
    for method, path, query in calls:
        response = client.request(method, path, params=query, json={})
        answers[(method, path, tuple(query))] = response.status_code
        if path.startswith("/api/"):
            assert response.headers["content-type"].startswith("application/problem+json"), (
                path,
                response.text,
            )
    assert {call: status for call, status in answers.items() if status >= 500} == {}
    assert {call: status for call, status in answers.items() if status not in (404, 422)} == {}


@pytest.mark.parametrize("value", [TOO_BIG, JUST_TOO_BIG])
def test_admin_pages_answer_a_clear_4xx_to_an_integer_beyond_64_bits(
    client: TestClient, hub: Hub, value: str
) -> None:
    log_in(client, hub, Scope.ADMIN)
    plain = TestClient(client.app, raise_server_exceptions=False, cookies=client.cookies)
    page = plain.get("/admin/deliveries")
    assert page.status_code == 200
    token = csrf_token(page.text) if 'name="csrf_token"' in page.text else ""
    answers = {
        "page": plain.get(f"/admin/deliveries/{value}").status_code,
        "list": plain.get("/admin/deliveries", params={"after_id": value}).status_code,
        "replay": plain.post(f"/admin/deliveries/{value}/replay", data={"csrf_token": token}).status_code,
        "discard": plain.post(f"/admin/deliveries/{value}/discard", data={"csrf_token": token}).status_code,
        "rollback": plain.post(
            "/admin/connectors/x/mapping/rollback", data={"csrf_token": token, "version": value}
        ).status_code,
        "versions": plain.get(
            "/admin/connectors/x/mapping/versions", params={"from_version": value, "show": value}
        ).status_code,
    }
    assert {name: status for name, status in answers.items() if status >= 500} == {}
