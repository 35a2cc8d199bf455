"""For the admin UI tests: logging in through the login form, as a browser does."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from incident_hub.api.auth import Scope
from incident_hub.hub import Hub

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def log_in(client: TestClient, hub: Hub, *scopes: Scope) -> str:
    """Log `client` in through the login form with a new key; returns the key."""
    key = hub.api_keys.create("admin-ui-test", list(scopes or (Scope.ADMIN,))).key
    form = client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        data={"api_key": key, "csrf_token": csrf_token(form.text), "next": "/admin/connectors"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return key
