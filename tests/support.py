"""Real pieces for tests: a loopback webhook receiver with programmable answers; the vendors' documents."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from incident_hub.serving import free_port

# The vendors' specifications and payload examples the contract tests read, with their sources and
# licences in vendor/SOURCES.md. Tests read them from here and nowhere else, so any clone passes.
VENDOR = Path(__file__).resolve().parent / "vendor"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request; `script` answers queued ones first."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: deque[Answer] = deque()
        self.default = Answer()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json() for r in self.requests]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


def event_name(event: dict[str, Any]) -> str:
    return next(k for k in event if k not in ("event_id", "timestamp"))


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, describe: Callable[[], str] | None = None
) -> Any:
    """Poll `condition` until it gives something true, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not reached within {timeout}s" + (f": {describe()}" if describe else ""))


def settle(hub: Any, ledgers: Any = (), quiet: float = 0.25, timeout: float = 20.0) -> None:
    """Wait until the hub's inbox and outbox are drained and the sandboxes (their `ledgers`) have sent no
    webhook for `quiet` seconds: every change made so far has gone everywhere it goes."""
    from sqlalchemy import func, select

    from incident_hub.store.tables import DeliveryRow, InboxRow

    def drained() -> bool:
        with hub.db.read() as session:
            inbox = session.scalar(select(func.count()).where(InboxRow.state == "pending"))
            outbox = session.scalar(select(func.count()).where(DeliveryRow.state == "pending"))
        return not inbox and not outbox

    def sent() -> int:
        return sum(len(ledger.entries(direction="out")) for ledger in ledgers)

    seen = -1
    while seen != sent():
        seen = sent()
        wait_until(drained, timeout)
        time.sleep(quiet)
    wait_until(drained, timeout)


# What each connector kind needs besides its id, URL and secrets, for tests that only take its webhooks.
WEBHOOK_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "pagerduty": {"from_email": "hub@example.com", "service_id": "PSVC", "hub_user_id": "PHUBUSER"},
    "jira": {"email": "hub@example.com", "project_key": "OPS"},
    "opsgenie": {},
    "servicenow": {"username": "hub"},
}


def put_webhook_connector(api: Any, monkeypatch: Any, kind: str, secret: str) -> None:
    """Configure connector `kind` (id = kind) through the API with `secret` as its webhook secret; its
    vendor is never called (the URL is unreachable)."""
    prefix = f"TEST_{kind.upper()}"
    monkeypatch.setenv(f"{prefix}_TOKEN", "token")
    monkeypatch.setenv(f"{prefix}_WEBHOOK_SECRET", secret)
    config = {
        "id": kind,
        "kind": kind,
        "base_url": f"https://{kind}.invalid",
        "credentials": {"env": f"{prefix}_TOKEN"},
        "webhook_secret": {"env": f"{prefix}_WEBHOOK_SECRET"},
        "options": WEBHOOK_ONLY_OPTIONS[kind],
    }
    answer = api.put(f"/api/v1/connectors/{kind}", json=config)
    assert answer.status_code == 200, answer.text
