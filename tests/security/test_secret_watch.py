"""The session-wide secret watch (tests/security/secret_watch.py) sees what it should, and a whole demo run
(the hub, its subscriber, the four vendor sandboxes and their webhooks) shows no secret in a log or answer."""

from __future__ import annotations

import logging
import secrets

import pytest
from fastapi.testclient import TestClient

from incident_hub.connectors.base import Secret
from tests.security.secret_watch import WATCH, SecretWatch


def _forget_since(before: int) -> list[str]:
    shown = WATCH.found[before:]
    del WATCH.found[before:]
    return shown


def test_watch_finds_a_secret_inside_longer_text_and_ignores_short_values() -> None:
    watch = SecretWatch()
    secret = secrets.token_urlsafe(32)
    watch.watch(secret)
    watch.watch("token")
    assert watch.shown_in(f"Authorization: Bearer ih_0a1b2c3d4e5f_{secret}, retrying") == [secret]
    assert watch.shown_in("a token was refused") == []
    assert watch.shown_in(secret[:-1]) == []


def test_a_generated_secret_in_a_log_record_or_its_fields_is_caught() -> None:
    secret = secrets.token_hex(16)
    before = len(WATCH.found)
    logging.getLogger("incident_hub.test").error("delivery failed", extra={"header": f"Bearer {secret}"})
    logging.getLogger("incident_hub.test").error("no secret here")
    assert [where.split(":")[0] for where in _forget_since(before)] == ["log record incident_hub.test"]


def test_a_configured_credential_in_an_answer_is_caught(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHED_TOKEN", "configured-credential-4711-abcdef")
    assert Secret(env="WATCHED_TOKEN").read().get_secret_value().startswith("configured")
    before = len(WATCH.found)
    # An invalid incident id is echoed in the problem's detail: here it carries the credential.
    api.get("/api/v1/incidents/configured-credential-4711-abcdef")
    assert [where.split(":")[0] for where in _forget_since(before)] == [
        "answer to GET /api/v1/incidents/configured-credential-4711-abcdef"
    ]


@pytest.mark.slow
def test_a_demo_run_shows_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from incident_hub import demo

    watched = len(WATCH)
    assert demo.run() == 0, capsys.readouterr().out
    assert capsys.readouterr().out.rstrip().endswith("demo passed")
    # The demo made its API key, its sandboxes' webhook secrets and admin-free signing secrets: all watched.
    assert len(WATCH) >= watched + 3
    # A secret showing anywhere during the run fails this test at teardown (secret_watch._no_secret_shows).
