"""While the database cannot be written, the API answers 503 with Retry-After (never 500, never a dropped
connection), readiness says so, and both recover without a restart."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from tests.chaos.proxy import Proxy
from tests.conftest import key_for, test_settings

INCIDENT = {"title": "checkout down", "severity": "SEV2_HIGH", "source": "outage-test"}


def _unwrapped(client: TestClient) -> TestClient:
    plain = TestClient(client.app, raise_server_exceptions=False)
    plain.headers.update(client.headers)
    return plain


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    assert "database" in response.json()["detail"]


def test_postgres_outage_answers_503_and_recovers(
    proxied_postgres: tuple[str, Proxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    app = create_app(test_settings(url, tmp_path))
    with TestClient(app) as client:
        hub: Hub = app.state.hub
        client.headers.update(key_for(hub, Scope.ADMIN))
        api = _unwrapped(client)
        assert api.post("/api/v1/incidents", json=INCIDENT).status_code == 201

        proxy.cut()
        for _ in range(3):
            _assert_unavailable(api.post("/api/v1/incidents", json=INCIDENT))
        _assert_unavailable(api.get("/api/v1/incidents"))
        assert api.get("/readyz").status_code == 503

        proxy.start()
        created = api.post("/api/v1/incidents", json=INCIDENT)
        assert created.status_code == 201, created.text
        assert api.get("/readyz").status_code == 200
        assert len(api.get("/api/v1/incidents").json()["items"]) == 2


def _limit_sqlite_file(hub: Hub) -> None:
    """Let the SQLite file grow no further: every later write that needs a page fails 'disk is full'."""
    with hub.db.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

    @event.listens_for(hub.db.engine, "connect")
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    hub.db.engine.dispose()


def test_sqlite_disk_full_answers_503_and_readiness_follows_the_write_path(tmp_path: Path) -> None:
    app = create_app(test_settings(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path))
    with TestClient(app) as client:
        hub: Hub = app.state.hub
        client.headers.update(key_for(hub, Scope.ADMIN))
        api = _unwrapped(client)
        assert api.get("/readyz").status_code == 200
        _limit_sqlite_file(hub)
        big = {**INCIDENT, "description": "x" * 4000}
        # The file's free pages take a few creates; once one is refused, every later one is too.
        answers = [api.post("/api/v1/incidents", json=big).status_code for _ in range(200)]
        assert 503 in answers, answers
        first_refused = answers.index(503)
        assert set(answers[first_refused:]) == {503}, answers
        assert set(answers[:first_refused]) <= {201}, answers
        refused = [api.post("/api/v1/incidents", json=big) for _ in range(3)]
        _assert_unavailable(refused[-1])
        assert "full" in refused[-1].json()["detail"]
        # A write that needs no new page succeeds meanwhile (a background lease, an update in place):
        # it proves nothing about the writes that do.
        with hub.db.write() as session:
            session.execute(text("SELECT 1"))
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["writes"].startswith("failing")


def _http(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str]]:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split(" ")[1]), headers


@pytest.mark.slow
def test_outage_keeps_the_client_connection_open(proxied_postgres: tuple[str, Proxy], tmp_path: Path) -> None:
    """Over a real server: the 503 comes back on a connection that then serves the next request."""
    import threading

    import uvicorn

    url, proxy = proxied_postgres
    app = create_app(test_settings(url, tmp_path))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        key = app.state.hub.api_keys.create("t", [Scope.ADMIN]).key
        body = b'{"title": "down", "severity": "SEV2_HIGH", "source": "t"}'
        request = (
            f"POST /api/v1/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert _http(sock, request)[0] == 201
            proxy.cut()
            status, headers = _http(sock, request)
            assert status == 503 and headers["retry-after"]
            assert headers.get("connection") != "close"
            proxy.start()
            assert _http(sock, request)[0] == 201  # same connection
    finally:
        server.should_exit = True
        thread.join(10)
