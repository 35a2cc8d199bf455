"""Every route of the app is refused without the scope it needs: no key, a read key where write is needed,
a write key where admin is needed; every admin page without a session; every admin form without its CSRF
token. Routes are found by walking the app, so a new route is covered when it is added."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from incident_hub.admin.session import require_admin, require_admin_post
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from tests.admin_support import log_in
from tests.conftest import key_for

# Answer without an API key or session by design; everything else must ask for one.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/webhooks/{connector_id}"),  # authenticated by the vendor's signature or shared secret
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("GET", "/admin"),  # redirects to the login or the first page
    ("GET", "/admin/"),
}
LOWER = {Scope.READ: None, Scope.WRITE: Scope.READ, Scope.ADMIN: Scope.WRITE}


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every API route with its full path (FastAPI keeps an included router's prefix beside it)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _routes(included.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


def _classify(app: Any) -> tuple[dict[tuple[str, str], Scope], set[tuple[str, str]], set[tuple[str, str]]]:
    api: dict[tuple[str, str], Scope] = {}
    admin_pages: set[tuple[str, str]] = set()
    admin_forms: set[tuple[str, str]] = set()
    unguarded = []
    for path, route in _routes(app.router.routes):
        calls = list(_calls(route.dependant))
        scopes = [c.required_scope for c in calls if hasattr(c, "required_scope")]
        for method in route.methods - {"HEAD"}:
            key = (method, path)
            if scopes:
                api[key] = max(scopes, key=list(LOWER).index)
            elif require_admin_post in calls:
                admin_forms.add(key)
            elif require_admin in calls:
                admin_pages.add(key)
            elif key not in PUBLIC:
                unguarded.append(key)
    assert unguarded == [], f"routes with no scope, session or place on the public list: {unguarded}"
    return api, admin_pages, admin_forms


def test_every_api_route_refuses_a_missing_key_and_a_lesser_scope(client: TestClient, hub: Hub) -> None:
    api, _, _ = _classify(client.app)
    assert len(api) >= 30
    plain = TestClient(client.app, raise_server_exceptions=False)
    keys = {scope: key_for(hub, scope) for scope in Scope}
    wrong = {}
    for (method, template), needed in sorted(api.items()):
        path = _path(template)
        status = plain.request(method, path, json={}).status_code
        if status != 401:
            wrong[(method, template, "no key")] = status
        lesser = LOWER[needed]
        if lesser is not None:
            status = plain.request(method, path, json={}, headers=keys[lesser]).status_code
            if status != 403:
                wrong[(method, template, f"{lesser} key")] = status
    assert wrong == {}


def test_every_admin_page_needs_a_session_and_every_admin_form_its_csrf_token(
    client: TestClient, hub: Hub
) -> None:
    _, pages, forms = _classify(client.app)
    assert len(pages) >= 5 and len(forms) >= 5
    anonymous = TestClient(client.app, raise_server_exceptions=False, follow_redirects=False)
    wrong = {}
    for method, template in sorted(pages | forms):
        answer = anonymous.request(method, _path(template))
        refused = answer.status_code in (401, 403) or (
            answer.status_code in (302, 303) and answer.headers["location"].startswith("/admin/login")
        )
        if not refused:
            wrong[(method, template, "no session")] = answer.status_code
    log_in(client, hub, Scope.ADMIN)
    logged_in = TestClient(
        client.app, raise_server_exceptions=False, follow_redirects=False, cookies=client.cookies
    )
    for method, template in sorted(forms):
        status = logged_in.request(method, _path(template), data={"anything": "1"}).status_code
        if status != 403:
            wrong[(method, template, "no CSRF token")] = status
    assert wrong == {}
