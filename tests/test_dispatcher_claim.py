"""The dispatcher's poll: with nothing due it writes nothing (on SQLite it would queue for the one write
lock every webhook and create waits for); with work due it leases it, once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.hub import Hub
from tests.conftest import key_for, test_settings
from tests.support import Receiver


def _writes(statements: list[str]) -> list[str]:
    return [
        s
        for s in statements
        if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE", "BEGIN IMMEDIATE"))
        or "FOR UPDATE" in s.upper()
    ]


def test_a_poll_with_nothing_due_writes_nothing_and_one_with_work_leases_it_once(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The dispatcher's own loop is off: the test polls.
    app = create_app(test_settings(database_url, tmp_path, dispatch_enabled=False))
    hub: Hub = app.state.hub
    with TestClient(app) as api:
        api.headers.update(key_for(hub, Scope.ADMIN))
        statements: list[str] = []
        polling = threading.get_ident()

        def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            # Only this thread's polls: the inbox appliers poll the same engine from their own.
            if threading.get_ident() == polling:
                statements.append(statement)

        event.listen(hub.db.engine, "before_cursor_execute", seen)
        try:
            assert hub.dispatcher.claim(10) == []
            assert _writes(statements) == []

            subscription = {"url": receiver.url, "event_types": ["*"], "secret": "claim-test-secret"}
            assert api.post("/api/v1/subscriptions", json=subscription).status_code == 201
            created = api.post("/api/v1/incidents", json={"title": "disk full"})
            assert created.status_code == 201, created.text
            statements.clear()

            claimed = hub.dispatcher.claim(10)
            assert [c.event_type for c in claimed] == ["incident_created"]
            assert claimed[0].ordering_key == created.json()["id"]
            assert _writes(statements) != []
            # Leased: the next poll finds nothing due, and writes nothing.
            statements.clear()
            assert hub.dispatcher.claim(10) == []
            assert _writes(statements) == []
        finally:
            event.remove(hub.db.engine, "before_cursor_execute", seen)
