"""Admin sessions live in the database: two app instances on one database (two workers, or two replicas)
serve the same browser as one, whichever of them each request lands on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from incident_hub import clock
from incident_hub.admin.session import SessionStore
from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.serving import free_port
from incident_hub.settings import Settings
from incident_hub.store.tables import AdminSessionRow
from tests.admin_support import csrf_token


class Browser:
    """One browser (one cookie jar) whose requests a load balancer sends to either of two workers."""

    def __init__(self, workers: list[TestClient]) -> None:
        self.workers = workers
        self.cookies: dict[str, str] = {}

    def get(self, worker: int, path: str) -> Response:
        return self._send(worker, "GET", path, None)

    def post(self, worker: int, path: str, data: dict[str, str]) -> Response:
        return self._send(worker, "POST", path, data)

    def _send(self, worker: int, method: str, path: str, data: dict[str, str] | None) -> Response:
        client = self.workers[worker]
        client.cookies.clear()
        client.cookies.update(self.cookies)
        answer = client.request(method, path, data=data, follow_redirects=False)
        self.cookies = dict(client.cookies)
        return answer


@pytest.fixture
def workers(settings: Settings) -> Iterator[list[TestClient]]:
    """Two app instances on the same database, both running (as `serve --workers 2` has them)."""
    with ExitStack() as stack:
        clients = [stack.enter_context(TestClient(create_app(settings))) for _ in range(2)]
        yield clients


def _hub(worker: TestClient) -> Hub:
    hub: Hub = worker.app.state.hub  # type: ignore[attr-defined]
    return hub


def _sessions(worker: TestClient) -> SessionStore:
    sessions: SessionStore = worker.app.state.admin_sessions  # type: ignore[attr-defined]
    return sessions


def _admin_key(worker: TestClient) -> str:
    return _hub(worker).api_keys.create("alice", [Scope.ADMIN]).key


def _log_in(browser: Browser, form_from: int, post_to: int, key: str) -> Response:
    form = browser.get(form_from, "/admin/login")
    assert form.status_code == 200
    data = {"api_key": key, "csrf_token": csrf_token(form.text), "next": "/admin/connectors"}
    return browser.post(post_to, "/admin/login", data)


def _stored_sessions(worker: TestClient) -> list[AdminSessionRow]:
    with _hub(worker).db.read() as session:
        return list(session.scalars(select(AdminSessionRow)))


def test_the_login_form_shown_by_one_worker_logs_in_on_the_other(workers: list[TestClient]) -> None:
    browser = Browser(workers)
    answer = _log_in(browser, form_from=0, post_to=1, key=_admin_key(workers[0]))
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/connectors"
    for worker in (0, 1):
        page = browser.get(worker, "/admin/connectors")
        assert page.status_code == 200
        assert "Log out" in page.text and "alice" in page.text


def test_a_session_opened_on_one_worker_posts_forms_on_the_other(workers: list[TestClient]) -> None:
    hub = _hub(workers[0])
    hub.connectors.upsert(
        ConnectorConfig(id="opsgenie", kind="opsgenie", base_url=f"https://127.0.0.1:{free_port()}")
    )
    browser = Browser(workers)
    assert _log_in(browser, form_from=0, post_to=0, key=_admin_key(workers[0])).status_code == 303
    token = csrf_token(browser.get(0, "/admin/connectors").text)

    answer = browser.post(1, "/admin/connectors/opsgenie/resume", {"csrf_token": token})
    assert answer.status_code == 303
    # The message the form's worker left for the next page is shown by the other one.
    page = browser.get(0, "/admin/connectors")
    assert "Connector opsgenie resumed" in page.text
    assert "Connector opsgenie resumed" not in browser.get(1, "/admin/connectors").text
    # A wrong token is refused by either worker.
    refused = browser.post(1, "/admin/connectors/opsgenie/resume", {"csrf_token": "x" * 43})
    assert refused.status_code == 403


def test_logging_out_on_one_worker_ends_the_session_on_the_other(workers: list[TestClient]) -> None:
    browser = Browser(workers)
    assert _log_in(browser, form_from=1, post_to=1, key=_admin_key(workers[1])).status_code == 303
    stolen = dict(browser.cookies)
    token = csrf_token(browser.get(1, "/admin/connectors").text)
    assert browser.post(0, "/admin/logout", {"csrf_token": token}).status_code == 303
    browser.cookies = stolen  # the old cookie is worth nothing now, on either worker
    for worker in (0, 1):
        answer = browser.get(worker, "/admin/connectors")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/admin/login")
    assert _stored_sessions(workers[0]) == []


def test_the_database_holds_neither_the_cookie_nor_the_key(workers: list[TestClient]) -> None:
    browser = Browser(workers)
    key = _admin_key(workers[0])
    assert _log_in(browser, form_from=0, post_to=1, key=key).status_code == 303
    cookie = browser.cookies.get("ih_admin_session")
    assert cookie
    [row] = _stored_sessions(workers[0])
    stored = " ".join(str(value) for value in vars(row).values())
    assert cookie not in stored and key not in stored
    assert row.api_key_id == _hub(workers[0]).api_keys.verify(key).key_id  # type: ignore[union-attr]


def test_a_login_form_posted_from_another_browser_is_refused(workers: list[TestClient]) -> None:
    # A site that fetched a login form of its own cannot make a visitor's browser post it: the form's
    # token is bound to the cookie of the browser it was shown to.
    attacker, victim = Browser(workers), Browser(workers)
    token = csrf_token(attacker.get(0, "/admin/login").text)
    victim.get(1, "/admin/login")
    data = {"api_key": _admin_key(workers[0]), "csrf_token": token}
    answer = victim.post(1, "/admin/login", data)
    assert answer.status_code == 403
    assert "expired" in answer.text
    assert victim.get(0, "/admin/connectors").status_code == 303


@pytest.fixture
def frozen() -> Iterator[list[datetime]]:
    """The hub's clock, standing still until the test moves it (sessions expire by it)."""
    now = [datetime.now(UTC)]
    clock.use_clock(lambda: now[0])
    yield now
    clock.use_clock(None)


def test_an_idle_session_ends_and_its_row_is_deleted(
    workers: list[TestClient], frozen: list[datetime]
) -> None:
    for worker in workers:
        _sessions(worker).idle_seconds = 60
    browser = Browser(workers)
    assert _log_in(browser, form_from=0, post_to=0, key=_admin_key(workers[0])).status_code == 303
    frozen[0] += timedelta(seconds=59)
    assert browser.get(1, "/admin/connectors").status_code == 200
    frozen[0] += timedelta(seconds=61)
    assert browser.get(1, "/admin/connectors").status_code == 303
    assert _stored_sessions(workers[0]) == []


def test_expired_sessions_are_deleted_at_the_next_login(
    workers: list[TestClient], frozen: list[datetime]
) -> None:
    gone, later = Browser(workers), Browser(workers)
    key = _admin_key(workers[0])
    assert _log_in(gone, form_from=0, post_to=0, key=key).status_code == 303
    _sessions(workers[1]).idle_seconds = 60
    frozen[0] += timedelta(seconds=61)
    assert _log_in(later, form_from=1, post_to=1, key=key).status_code == 303
    assert len(_stored_sessions(workers[0])) == 1  # the login deleted the expired session
    assert later.get(0, "/admin/connectors").status_code == 200
    assert gone.get(0, "/admin/connectors").status_code == 303


def test_a_session_outlives_the_worker_that_opened_it(settings: Settings, tmp_path: Path) -> None:
    browser = Browser([])
    with TestClient(create_app(settings)) as first:
        browser.workers = [first]
        assert _log_in(browser, form_from=0, post_to=0, key=_admin_key(first)).status_code == 303
    with TestClient(create_app(settings)) as restarted:
        browser.workers = [restarted]
        assert browser.get(0, "/admin/connectors").status_code == 200


def test_a_login_form_left_open_too_long_expires(workers: list[TestClient]) -> None:
    for worker in workers:
        _sessions(worker).login_form_seconds = 0.5
    browser = Browser(workers)
    form = browser.get(0, "/admin/login")
    time.sleep(1.1)
    data = {"api_key": _admin_key(workers[0]), "csrf_token": csrf_token(form.text)}
    answer = browser.post(1, "/admin/login", data)
    assert answer.status_code == 403
    assert "The login form expired" in answer.text
