"""`incident-hub demo`: a throw-away hub on a free port, a subscriber receiving its signed events, and an
incident walked through its life through the public API."""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from incident_hub.demo_sync import duration, run_sync
from incident_hub.hub import Hub
from incident_hub.logs import configure
from incident_hub.serving import ServerThread, free_port
from incident_hub.settings import Settings
from incident_hub.signing import signature_matches
from incident_hub.sync.subscribers import SIGNATURE_HEADER

SECRET = secrets.token_hex(16)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        signature = self.headers.get(SIGNATURE_HEADER, "").removeprefix("sha256=")
        if not signature_matches(SECRET, body, signature):
            self.send_response(401)
            self.end_headers()
            return
        with self.lock:
            self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """The hub's and the servers' logs go to `path`, not between the demo's lines; put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with path.open("a", encoding="utf-8") as file:
        configure("INFO", json_lines=False, stream=file)
        try:
            yield
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def run() -> int:
    with tempfile.TemporaryDirectory(prefix="incident-hub-demo-") as tmp:
        log_file = Path(tmp) / "hub.log"
        with _logs_to(log_file):
            status = _run(Path(tmp))
        if status != 0:
            tail = log_file.read_text(encoding="utf-8").splitlines()[-30:]
            print("\n".join(["hub log (last lines):", *tail]), file=sys.stderr)
        return status


def _run(tmp: Path) -> int:
    steps = itertools.count(1)
    _Receiver.received = []
    settings = Settings(data_dir=tmp, dispatch_poll_seconds=0.1, log_json=False)
    receiver = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    app = create_app(settings)
    hub: Hub = app.state.hub
    try:
        with ServerThread(app) as server:
            key = hub.api_keys.create("demo", [Scope.ADMIN]).key
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
            ) as api:
                receiver_url = f"http://127.0.0.1:{receiver.server_port}/events"
                events_ok = _scenario(api, hub, receiver_url, steps)
            _say("\nPart 2: PagerDuty, Jira, ServiceNow and Opsgenie kept in step through the hub")
            sync_ok = run_sync(hub, server.url, tmp, _say, first_step=next(steps))
            _say("\ndemo " + ("passed" if events_ok and sync_ok else "FAILED"))
            return 0 if events_ok and sync_ok else 1
    finally:
        receiver.shutdown()


def _scenario(api: httpx.Client, hub: Hub, receiver_url: str, steps: Iterator[int]) -> bool:
    _say(f"incident-hub demo: hub at {api.base_url}, SQLite at {hub.settings.resolved_database_url()}")
    _say("\nPart 1: the unified API, the lifecycle, and signed events to a subscriber")
    api.post(
        "/api/v1/subscriptions",
        json={"url": receiver_url, "event_types": ["*"], "secret": SECRET, "name": "demo receiver"},
    ).raise_for_status()
    _say(f"{next(steps)}. Subscribed a receiver to every event (signed with HMAC-SHA256).")

    draft = {
        "title": "Checkout API returning 502s",
        "severity": "SEV2_HIGH",
        "assigned_team": "payments",
        "affected_services": ["checkout-api"],
        "service_impacts": [{"name": "checkout-api", "impact": "partial_outage"}],
        "dedup_key": "checkout-api/5xx",
        "source": "prometheus",
        "automated_responses": [
            {"action_type": "page_oncall", "details": {"team": "payments"}, "execution_status": "succeeded"}
        ],
    }
    created = api.post("/api/v1/incidents", json=draft)
    created.raise_for_status()
    incident = created.json()
    _say(
        f"{next(steps)}. Created {incident['number']} ({incident['severity']}, {incident['status']}), "
        f"SLA deadline {incident['sla_deadline'][:19]}Z."
    )
    again = api.post("/api/v1/incidents", json={**draft, "title": "Checkout 502s (second alert)"})
    _say(
        f"{next(steps)}. Same dedup key again: HTTP {again.status_code}, deduplicated="
        f"{again.headers.get('X-Incident-Hub-Deduplicated')}, same incident {again.json()['number']}."
    )

    path = f"/api/v1/incidents/{incident['id']}"
    etag = created.headers["ETag"]
    _say(f"{next(steps)}. Alice walks {incident['number']} through its life (each move checks the ETag):")
    for status in ("ACKNOWLEDGED", "INVESTIGATING", "IDENTIFIED", "MONITORING", "RESOLVED", "CLOSED"):
        moved = api.put(
            f"{path}/status", json={"status": status, "author": "alice"}, headers={"If-Match": etag}
        )
        moved.raise_for_status()
        etag = moved.headers["ETag"]
        _say(f"   → {status:<13} version {etag.strip(chr(34))}")
    stale = api.put(f"{path}/status", json={"status": "OPEN"}, headers={"If-Match": '"1"'})
    _say(f"{next(steps)}. Update with a stale ETag: HTTP {stale.status_code} {stale.json()['detail']}")
    illegal = api.put(f"{path}/status", json={"status": "INVESTIGATING"})
    _say(
        f"{next(steps)}. CLOSED → INVESTIGATING without reopen: HTTP {illegal.status_code}: "
        f"{illegal.json()['detail']}"
    )

    other = api.post(
        "/api/v1/incidents",
        json={"title": "Search latency p99 > 2s", "severity": "SEV3_MEDIUM", "assigned_team": "search"},
    ).json()
    escalated = api.post(
        f"/api/v1/incidents/{other['id']}/escalate", json={"reason": "Spreading to checkout", "author": "bob"}
    )
    escalated.raise_for_status()
    _say(f"{next(steps)}. Escalated {other['number']}: {escalated.json()['changes']}")

    expected = hub.outbox.search(state=None, limit=1000)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(_Receiver.received) < len(expected):
        time.sleep(0.05)
    _say(f"\n{next(steps)}. The receiver got {len(_Receiver.received)} of {len(expected)} events:")
    for event in _Receiver.received:
        name = next(k for k in event if k not in ("event_id", "timestamp"))
        body = event[name]
        _say(f"   {event['timestamp'][11:23]}  {name:<38} {body.get('number', '')} {_summary(name, body)}")
    ok = len(_Receiver.received) == len(expected) and all(
        d.state == "delivered" for d in hub.outbox.search(state=None, limit=1000)
    )
    _say("   " + ("every event delivered once, signed" if ok else "FAILED: events missing"))
    return ok


def _summary(name: str, body: dict[str, Any]) -> str:
    if name == "incident_status_changed":
        return f"{body['old_status']} → {body['new_status']}"
    if name == "incident_escalated":
        return f"{body['old_severity']} → {body['new_severity']}"
    if name == "incident_created":
        return f"{body['title']!r}, automated responses: {len(body['automated_responses'])}"
    if name == "incident_resolved":
        return f"in {duration(body['time_to_resolve_minutes'] * 60)}"
    return ""
