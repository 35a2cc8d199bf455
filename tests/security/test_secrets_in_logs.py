"""A write that fails must not carry its parameters (a subscription's signing secret) into the logs."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from incident_hub.hub import Hub

SECRET = "whsec-never-in-a-log-4f9a1c"


def _refuse_inserts_into_subscriptions(hub: Hub) -> None:
    """Make the database itself refuse the insert, as a full disk or a constraint would."""
    with hub.db.engine.begin() as connection:
        if hub.db.is_sqlite:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON subscriptions "
                    "BEGIN SELECT RAISE(ABORT, 'writes refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'writes refused'; END $$"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON subscriptions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def test_subscription_secret_is_not_logged_when_its_insert_fails(
    api: TestClient, hub: Hub, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    _refuse_inserts_into_subscriptions(hub)
    caplog.set_level(logging.DEBUG)
    client = TestClient(api.app, raise_server_exceptions=False)
    client.headers.update(api.headers)
    response = client.post("/api/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook", "secret": SECRET})

    assert response.status_code >= 500
    assert SECRET not in response.text
    logged = "\n".join(
        [record.getMessage() for record in caplog.records]
        + [caplog.text]
        + [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    )
    assert "writes refused" in logged  # the failure itself is logged...
    assert SECRET not in logged  # ...without the statement's parameters
    out, err = capfd.readouterr()
    assert SECRET not in out + err


def test_every_engine_the_hub_makes_hides_statement_parameters() -> None:
    """A new engine added later must hide its parameters too."""
    import ast
    from pathlib import Path

    import incident_hub

    calls = []
    for path in Path(incident_hub.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "create_engine":
                hidden = any(
                    k.arg == "hide_parameters" and getattr(k.value, "value", None) is True
                    for k in node.keywords
                )
                calls.append((f"{path.name}:{node.lineno}", hidden))
    assert calls, "no create_engine call found"
    assert [where for where, hidden in calls if not hidden] == []
