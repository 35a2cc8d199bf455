"""A crash between commit and delivery loses nothing: on restart the delivery goes out.

Each test runs the real `incident-hub serve` in a subprocess, kills it with SIGKILL (no shutdown hook, no
lease released, nothing flushed), restarts it on the same database and checks what the subscriber saw.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from incident_hub.api.auth import ApiKeys, Scope
from incident_hub.serving import free_port
from incident_hub.store import migrate
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryAttemptRow, DeliveryRow, EventRow
from tests.support import Answer, Received, Receiver, wait_until

pytestmark = pytest.mark.slow

SECRET = "crash-recovery-secret"
SERVE = "from incident_hub.cli import main; main()"

# Short lease, fast polling and backoff, so a restart picks up a dead process's work within seconds.
FAST_DISPATCH = {
    "INCIDENT_HUB_DELIVERY_LEASE_SECONDS": "2",
    "INCIDENT_HUB_DISPATCH_POLL_SECONDS": "0.1",
    "INCIDENT_HUB_DELIVERY_BACKOFF_INITIAL_SECONDS": "0.05",
    "INCIDENT_HUB_DELIVERY_BACKOFF_MAX_SECONDS": "0.2",
}


# ---- a real hub process -----------------------------------------------------------------------------


class HubProcess:
    """`incident-hub serve` in a subprocess on a fixed port; its output goes to `log_path`."""

    def __init__(
        self, database_url: str, data_dir: Path, *, port: int | None = None, workers: int = 1
    ) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.port = port or free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> HubProcess:
        """Start (or restart) the hub with `env` on top of the test settings; returns once it is ready."""
        assert self.process is None or self.process.poll() is not None, "the hub is already running"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_")}
        environment.update(
            {
                "INCIDENT_HUB_DATABASE_URL": self.database_url,
                "INCIDENT_HUB_DATA_DIR": str(self.data_dir),
                "INCIDENT_HUB_LOG_JSON": "false",
                "INCIDENT_HUB_SLA_CHECK_SECONDS": "3600",
                **env,
            }
        )
        command = [sys.executable, "-c", SERVE, "serve", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            log.write(f"---- start {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hub exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"hub not ready within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish, record or release anything."""
        assert self.process is not None and self.process.poll() is None, "the hub is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the process group: uvicorn's workers too), SIGKILL if that hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def admin_key(db: Database) -> str:
    """Migrate the database and issue an admin key, as `incident-hub apikey create` does."""
    migrate.upgrade(db)
    return ApiKeys(db).create("crash-test", [Scope.ADMIN]).key


def api_client(hub: HubProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {key}"}, timeout=15.0)


# ---- what the database and the subscriber hold ------------------------------------------------------


@dataclass(frozen=True)
class DeliveryState:
    id: int
    event_id: str
    ordering_key: str
    state: str
    attempts: int
    leased: bool


def stored_events(db: Database) -> dict[str, EventRow]:
    with db.read() as session:
        return {row.id: row for row in session.scalars(select(EventRow))}


def stored_deliveries(db: Database) -> list[DeliveryState]:
    with db.read() as session:
        return [
            DeliveryState(
                row.id, row.event_id, row.ordering_key, row.state, row.attempts, row.lease_until is not None
            )
            for row in session.scalars(select(DeliveryRow).order_by(DeliveryRow.id))
        ]


def attempts_logged(db: Database) -> int:
    with db.read() as session:
        return len(session.scalars(select(DeliveryAttemptRow.id)).all())


def received(receiver: Receiver) -> list[Received]:
    """A snapshot of every request the subscriber got so far."""
    return receiver.wait_for(0)


def header(request: Received, name: str) -> str | None:
    return {k.lower(): v for k, v in request.headers.items()}.get(name.lower())


def received_event_ids(receiver: Receiver) -> list[str]:
    return [str(r.json()["event_id"]) for r in received(receiver)]




def summary(deliveries: list[DeliveryState]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for delivery in deliveries:
        counts[delivery.state] += 1
    return dict(counts)


# ---- the scenario's steps -------------------------------------------------------------------------


def subscribe(api: httpx.Client, receiver: Receiver) -> None:
    response = api.post(
        "/api/v1/subscriptions", json={"url": receiver.url, "event_types": ["*"], "secret": SECRET}
    )
    assert response.status_code == 201, response.text


def open_and_resolve(api: httpx.Client, count: int) -> list[str]:
    """`count` incidents, each created, acknowledged and resolved: four events apiece."""
    ids: list[str] = []
    for n in range(count):
        created = api.post("/api/v1/incidents", json={"title": f"Crash test {n}", "severity": "SEV2_HIGH"})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for incident_id in ids:
        for status in ("ACKNOWLEDGED", "RESOLVED"):
            moved = api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": status})
            assert moved.status_code == 200, moved.text
    return ids


EXPECTED_PER_INCIDENT = [
    ("incident_created", None),
    ("incident_status_changed", "ACKNOWLEDGED"),
    ("incident_status_changed", "RESOLVED"),
    ("incident_resolved", None),
]


def event_kind(payload: dict[str, Any]) -> tuple[str, str | None]:
    name = next(k for k in payload if k not in ("event_id", "timestamp"))
    return name, payload[name].get("new_status") if name == "incident_status_changed" else None


def wait_for_recovery(db: Database, receiver: Receiver, hub: HubProcess, timeout: float = 20.0) -> None:
    """Until every delivery is done (not pending) and every stored event reached the subscriber."""

    def done() -> bool:
        deliveries = stored_deliveries(db)
        return all(d.state != "pending" for d in deliveries) and set(stored_events(db)) <= set(
            received_event_ids(receiver)
        )

    def describe() -> str:
        missing = set(stored_events(db)) - set(received_event_ids(receiver))
        return (
            f"deliveries {summary(stored_deliveries(db))}, {len(missing)} events never received\n"
            f"{hub.log_tail()}"
        )

    wait_until(done, timeout, describe)


def assert_everything_delivered(db: Database, receiver: Receiver, incident_ids: list[str]) -> None:
    """At least once, signed, `delivered`, and in order per incident."""
    events = stored_events(db)
    deliveries = stored_deliveries(db)
    requests = received(receiver)
    assert len(events) == 4 * len(incident_ids)

    # Every event the hub committed reached the subscriber, and the hub knows it did.
    assert len(deliveries) == len(events), "one subscription: one delivery per event"
    assert {d.event_id for d in deliveries} == set(events)
    assert summary(deliveries) == {"delivered": len(deliveries)}
    assert set(events) <= {str(r.json()["event_id"]) for r in requests}

    # Each request is signed with the subscription's secret over the exact bytes sent, and carries the
    # stored event unchanged.
    for request in requests:
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert header(request, "X-Incident-Hub-Signature") == f"sha256={expected}"
        payload = json.loads(request.body)
        assert payload["event_id"] in events, "the subscriber got an event the hub never stored"
        assert payload == events[payload["event_id"]].payload
        assert header(request, "X-Incident-Hub-Event-Id") == payload["event_id"]
        assert header(request, "X-Incident-Hub-Event") == event_kind(payload)[0]

    # Per incident: the first arrivals are created → acknowledged → resolved, and once an event has been
    # received no earlier event of the same incident arrives again (a redelivery never overtakes).
    order = {d.event_id: d.id for d in deliveries}
    by_incident: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        event_id = str(request.json()["event_id"])
        incident_id = events[event_id].incident_id
        assert incident_id is not None
        by_incident[incident_id].append(event_id)
    assert set(by_incident) == set(incident_ids)
    for incident_id, arrived in by_incident.items():
        positions = [order[e] for e in arrived]
        assert positions == sorted(positions), f"events of {incident_id} arrived out of order: {arrived}"
        first_arrivals = list(dict.fromkeys(arrived))
        assert [event_kind(events[e].payload) for e in first_arrivals] == EXPECTED_PER_INCIDENT


# ---- the tests ------------------------------------------------------------------------------------


def test_sends_in_flight_when_the_process_is_killed_go_out_after_restart(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    db = Database(database_url)
    try:
        key = admin_key(db)
        # A slow subscriber: every send is still waiting for its answer when the process dies.
        receiver.default = Answer(status=204, delay=1.5)
        with HubProcess(database_url, tmp_path) as hub:
            hub.start(**FAST_DISPATCH)
            with api_client(hub, key) as api:
                subscribe(api, receiver)
                incident_ids = open_and_resolve(api, 6)
            # The dispatcher is mid-send for the `incident_created` of every incident; the later events
            # wait behind them (one in flight per incident).
            receiver.wait_for(len(incident_ids), timeout=10)
            hub.kill()

            before_restart = received_event_ids(receiver)
            deliveries = stored_deliveries(db)
            assert len(deliveries) == 4 * len(incident_ids)
            pending = {d.event_id for d in deliveries if d.state == "pending"}
            # The crash lost the answers: sends the subscriber got are not recorded as delivered...
            in_flight = pending & set(before_restart)
            assert in_flight, f"no send was in flight at the kill: {summary(deliveries)}"
            assert all(d.leased for d in deliveries if d.event_id in in_flight)
            # ...and most events never left the hub.
            never_sent = pending - set(before_restart)
            assert len(never_sent) >= 2 * len(incident_ids), summary(deliveries)

            receiver.default = Answer(status=204)
            hub.start(**FAST_DISPATCH)
            wait_for_recovery(db, receiver, hub)

            assert_everything_delivered(db, receiver, incident_ids)
            # The sends whose answer was lost went out again (at least once: a duplicate, never a gap).
            after = received_event_ids(receiver)
            for event_id in in_flight:
                assert after.count(event_id) >= 2, f"{event_id} was not sent again after the restart"
    finally:
        db.dispose()


def test_events_committed_before_any_claim_go_out_after_restart(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    db = Database(database_url)
    try:
        key = admin_key(db)
        with HubProcess(database_url, tmp_path) as hub:
            # No dispatcher: the changes commit, their deliveries wait in the outbox, then the process dies.
            hub.start(**FAST_DISPATCH, INCIDENT_HUB_DISPATCH_ENABLED="false")
            with api_client(hub, key) as api:
                subscribe(api, receiver)
                incident_ids = open_and_resolve(api, 5)
            time.sleep(0.3)
            hub.kill()

            assert received(receiver) == []
            deliveries = stored_deliveries(db)
            assert len(deliveries) == 4 * len(incident_ids)
            assert all(d.state == "pending" and d.attempts == 0 and not d.leased for d in deliveries)

            hub.start(**FAST_DISPATCH)
            wait_for_recovery(db, receiver, hub)

            assert_everything_delivered(db, receiver, incident_ids)
            # Nothing was in flight before the crash, so each event went out exactly once.
            assert len(received(receiver)) == len(deliveries)
    finally:
        db.dispose()


def test_deliveries_killed_while_retrying_resume_after_restart(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    db = Database(database_url)
    try:
        key = admin_key(db)
        # The subscriber is down: every attempt fails and is retried after a short backoff.
        receiver.default = Answer(status=503, delay=0.2)
        with HubProcess(database_url, tmp_path) as hub:
            settings = {**FAST_DISPATCH, "INCIDENT_HUB_DELIVERY_TIMEOUT_SECONDS": "2"}
            hub.start(**settings)
            with api_client(hub, key) as api:
                subscribe(api, receiver)
                incident_ids = open_and_resolve(api, 3)
            # Two failed attempts per incident's first event, then the crash.
            wait_until(
                lambda: attempts_logged(db) >= 2 * len(incident_ids),
                10,
                lambda: f"{attempts_logged(db)} attempts\n{hub.log_tail()}",
            )
            hub.kill()

            deliveries = stored_deliveries(db)
            assert summary(deliveries) == {"pending": len(deliveries)}, "nothing went out, nothing is dead"
            failed = attempts_logged(db)
            assert failed >= 2 * len(incident_ids)

            receiver.default = Answer(status=204)
            hub.start(**settings)
            wait_for_recovery(db, receiver, hub)

            assert_everything_delivered(db, receiver, incident_ids)
            # The attempts made before the crash stay in the log; the restart added the successes.
            assert attempts_logged(db) >= failed + len(deliveries)
    finally:
        db.dispose()
