"""SIGKILL of the hub process mid-dispatch: after restart each change is at each target exactly once.

The real `incident-hub serve` runs in a subprocess between the PagerDuty and Jira sandboxes (HTTPS, a
throw-away CA), which run in this process. The sandboxes hold chosen vendor API calls unanswered, so the
hub is killed (SIGKILL: no shutdown hook, no lease released) at a known point of a push; then they let the
calls through. The vendor completes each of them and the hub never learns of it: a create whose answer was
lost, a transition made but not recorded. After a restart on the same database the hub must neither repeat
nor drop anything: one vendor object per incident (check-before-create), each status change made once in
each vendor's own record (PagerDuty's log entries, Jira's change history), ending in the hub's status,
and nothing written back to the system a change came from.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incident_hub.sandbox.common import CONTROL_PREFIX, Sandbox
from incident_hub.sandbox.jira import SERVICE_ACCOUNT_ID, JiraState, jira_sandbox
from incident_hub.sandbox.jira.model import Issue
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, RESPONDER_ID, SERVICE_ID, pagerduty_sandbox
from incident_hub.sandbox.pagerduty.model import Incident as PagerDutyIncident
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, EventRow, ExternalRefRow, InboxRow
from tests.test_crash_recovery import FAST_DISPATCH, HubProcess, admin_key, api_client, wait_until

pytestmark = pytest.mark.slow

PD_TOKEN, PD_WEBHOOK_SECRET = "crash-pd-token", "crash-pd-webhook-secret"
JIRA_EMAIL = "hub@example.com"
JIRA_TOKEN, JIRA_WEBHOOK_SECRET = "crash-jira-token", "crash-jira-webhook-secret"
JIRA_API = "/rest/api/3"

# The subprocess's settings: fast polling and backoff; an attempt times out after 4 s, and a dead
# process's claims are free again 4 + 1 s after they were taken.
HUB_ENV = {
    **FAST_DISPATCH,
    "INCIDENT_HUB_DELIVERY_LEASE_SECONDS": "1",
    "INCIDENT_HUB_DELIVERY_TIMEOUT_SECONDS": "4",
    "INCIDENT_HUB_INBOX_POLL_SECONDS": "0.1",
    # Credentials reach the hub only as the names of environment variables (the connector configs name them).
    "CRASH_TEST_PD_TOKEN": PD_TOKEN,
    "CRASH_TEST_PD_WEBHOOK_SECRET": PD_WEBHOOK_SECRET,
    "CRASH_TEST_JIRA_TOKEN": JIRA_TOKEN,
    "CRASH_TEST_JIRA_WEBHOOK_SECRET": JIRA_WEBHOOK_SECRET,
}

HUB_TO_PD = {"OPEN": "triggered", "ACKNOWLEDGED": "acknowledged", "RESOLVED": "resolved"}
HUB_TO_JIRA = {"OPEN": "To Do", "ACKNOWLEDGED": "In Progress", "RESOLVED": "Done"}
PD_STATUS_LOG = {
    "trigger_log_entry": "triggered",
    "acknowledge_log_entry": "acknowledged",
    "resolve_log_entry": "resolved",
}


# ---- vendor API calls: seen, held unanswered, let through -------------------------------------------------

Matcher = Callable[[str, str], bool]
"""(method, path) -> whether a rule applies to a vendor API call."""


def jira_create(method: str, path: str) -> bool:
    return method == "POST" and path == f"{JIRA_API}/issue"


def jira_transition(method: str, path: str) -> bool:
    return method == "POST" and path.startswith(f"{JIRA_API}/issue/") and path.endswith("/transitions")


def jira_transitions_read(method: str, path: str) -> bool:
    return method == "GET" and path.startswith(f"{JIRA_API}/issue/") and path.endswith("/transitions")


def pd_create(method: str, path: str) -> bool:
    return method == "POST" and path == "/incidents"


def pd_update(method: str, path: str) -> bool:
    return method == "PUT" and path.startswith("/incidents/")


@dataclass
class Call:
    method: str
    path: str
    waiting: bool = False
    arrives: bool = True
    finished: bool = False


class Calls:
    """Every vendor API request a sandbox received; those matching a hold rule wait until `release()`.

    A held request has been read in full: when it goes through, the sandbox completes it whether or not the
    caller is still there to read the answer. A rule with `arrives=False` stands for a request that never
    got to the vendor (the caller died just before sending it): on release it is answered 503 unseen.
    """

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._rules: list[tuple[Matcher, bool]] = []
        self._gates: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()

    def hold(self, rule: Matcher, *, arrives: bool = True) -> None:
        with self._lock:
            self._rules.append((rule, arrives))

    def release(self) -> None:
        """Drop every hold rule and let the held calls go on (from any thread)."""
        with self._lock:
            self._rules.clear()
            for call in self._calls:
                call.waiting = False
            for loop, gate in self._gates:
                loop.call_soon_threadsafe(gate.set)
            self._gates.clear()

    def begin(self, method: str, path: str) -> tuple[Call, asyncio.Event | None]:
        """Record a call; the event to wait for when a rule holds it (on the sandbox's loop)."""
        call = Call(method, path)
        with self._lock:
            self._calls.append(call)
            holding = [arrives for rule, arrives in self._rules if rule(method, path)]
            if not holding:
                return call, None
            call.waiting, call.arrives = True, all(holding)
            gate = asyncio.Event()
            self._gates.append((asyncio.get_running_loop(), gate))
            return call, gate

    def end(self, call: Call) -> None:
        with self._lock:
            call.finished = True

    def held(self, rule: Matcher) -> list[Call]:
        """The calls `rule` matches that are waiting for `release()`."""
        with self._lock:
            return [c for c in self._calls if c.waiting and rule(c.method, c.path)]

    def running(self) -> int:
        with self._lock:
            return sum(not c.finished for c in self._calls)


class HoldingMiddleware:
    """Outermost middleware of a sandbox app: records each vendor API call and holds those `Calls` says to."""

    def __init__(self, app: ASGIApp, calls: Calls) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        call, gate = self.calls.begin(scope["method"], scope["path"])
        try:
            if gate is not None:
                await gate.wait()
                if not call.arrives:
                    await send({"type": "http.response.start", "status": 503, "headers": []})
                    await send({"type": "http.response.body", "body": b""})
                    return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.calls.end(call)


# ---- the world: a hub subprocess between two sandboxes --------------------------------------------------


@dataclass
class World:
    db: Database
    key: str
    hub: HubProcess
    pd: Sandbox
    jira: Sandbox
    pd_state: PagerDutyState
    jira_state: JiraState
    pd_calls: Calls
    jira_calls: Calls

    def start(self, **env: str) -> None:
        self.hub.start(**{**HUB_ENV, **env})

    def api(self) -> httpx.Client:
        return api_client(self.hub, self.key)

    def pd_ui(self) -> httpx.Client:
        """A person (or a monitor) acting in PagerDuty's web UI."""
        trust = ssl.create_default_context(cafile=str(self.pd.ca_bundle))
        return httpx.Client(base_url=f"{self.pd.url}{CONTROL_PREFIX}/pagerduty", verify=trust, timeout=10)

    def configure_connectors(self) -> None:
        """Both connectors through the admin API: stored in the database, so every restart has them."""
        pagerduty = {
            "id": "pagerduty",
            "kind": "pagerduty",
            "base_url": self.pd.url,
            "ca_bundle": str(self.pd.ca_bundle),
            "credentials": {"env": "CRASH_TEST_PD_TOKEN"},
            "webhook_secret": {"env": "CRASH_TEST_PD_WEBHOOK_SECRET"},
            "timeout_seconds": 3,
            # Creates left unanswered by the kill have an unknown outcome: a short in-doubt window.
            "in_doubt_schedule_seconds": [0.5, 1.0],
            "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
        }
        jira = {
            "id": "jira",
            "kind": "jira",
            "base_url": self.jira.url,
            "ca_bundle": str(self.jira.ca_bundle),
            "credentials": {"env": "CRASH_TEST_JIRA_TOKEN"},
            "webhook_secret": {"env": "CRASH_TEST_JIRA_WEBHOOK_SECRET"},
            "timeout_seconds": 3,
            "in_doubt_schedule_seconds": [0.5, 1.0],
            "options": {"email": JIRA_EMAIL, "project_key": "OPS", "hub_account_id": SERVICE_ACCOUNT_ID},
        }
        with self.api() as api:
            for config in (pagerduty, jira):
                response = api.put(f"/api/v1/connectors/{config['id']}", json=config)
                assert response.status_code == 200, response.text

    def kill_when(self, ready: Callable[[], bool], describe: Callable[[], str], timeout: float = 15) -> None:
        """SIGKILL the hub once `ready()`; then let every held vendor call through and wait until the
        sandboxes have answered them all (to nobody)."""
        wait_until(ready, timeout, lambda: f"{describe()}\n{self.hub.log_tail()}")
        self.hub.kill()
        self.pd_calls.release()
        self.jira_calls.release()
        wait_until(
            lambda: self.pd_calls.running() == 0 and self.jira_calls.running() == 0,
            10,
            lambda: "the sandboxes are still answering the dead hub's calls",
        )

    def start_and_kill_holding(self, held: dict[Calls, tuple[Matcher, int]]) -> None:
        """Start the hub with the rules already holding (a restarted hub pushes at once), then as
        `kill_holding`."""
        for calls, (rule, _) in held.items():
            calls.hold(rule)
        self.start()
        self.kill_holding(held)

    def kill_holding(self, held: dict[Calls, tuple[Matcher, int]]) -> None:
        """Hold the calls each rule matches; SIGKILL the hub once `count` of each are held."""
        for calls, (rule, _) in held.items():
            calls.hold(rule)
        self.kill_when(
            lambda: all(len(calls.held(rule)) >= count for calls, (rule, count) in held.items()),
            lambda: f"held: {[(r.__name__, len(c.held(r)), n) for c, (r, n) in held.items()]}",
        )

    def backlog(self) -> tuple[int, int]:
        """(pending deliveries, pending inbox rows)."""
        with self.db.read() as session:
            deliveries = session.scalar(
                select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "pending")
            )
            inbox = session.scalar(
                select(func.count()).select_from(InboxRow).where(InboxRow.state == "pending")
            )
        return deliveries or 0, inbox or 0

    def settle(self, timeout: float = 25.0) -> None:
        """Until the outbox and the inbox are empty and no vendor call or webhook is under way, and that
        has held for a while (the webhook a push causes may still bring an echo)."""

        def snapshot() -> tuple[Any, ...]:
            return (
                self.backlog(),
                len(self.pd_state.ledger.entries()),
                len(self.jira_state.ledger.entries()),
                self.pd_calls.running() + self.jira_calls.running(),
            )

        deadline = time.monotonic() + timeout
        previous: tuple[Any, ...] | None = None
        while time.monotonic() < deadline:
            now = snapshot()
            if now == previous and now[0] == (0, 0) and now[3] == 0:
                return
            previous = now
            time.sleep(0.5)
        raise AssertionError(f"not settled within {timeout}s: {snapshot()}\n{self.hub.log_tail()}")


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    db = Database(database_url)
    try:
        key = admin_key(db)
        hub = HubProcess(database_url, tmp_path)
        pd_app, pd_state = pagerduty_sandbox(PD_TOKEN, PD_WEBHOOK_SECRET, f"{hub.url}/webhooks/pagerduty")
        jira_app, jira_state = jira_sandbox(
            JIRA_EMAIL, JIRA_TOKEN, JIRA_WEBHOOK_SECRET, f"{hub.url}/webhooks/jira"
        )
        pd_calls, jira_calls = Calls(), Calls()
        pd_app.add_middleware(HoldingMiddleware, calls=pd_calls)
        jira_app.add_middleware(HoldingMiddleware, calls=jira_calls)
        with (
            Sandbox(pd_app, pd_state, directory=tmp_path / "pagerduty") as pd,
            Sandbox(jira_app, jira_state, directory=tmp_path / "jira") as jira,
            hub,
        ):
            yield World(db, key, hub, pd, jira, pd_state, jira_state, pd_calls, jira_calls)
            # Held calls must not keep the sandboxes from stopping.
            pd_calls.release()
            jira_calls.release()
    finally:
        db.dispose()


# ---- what the hub, PagerDuty and Jira hold ----------------------------------------------------------------


def hub_refs(db: Database, connector_id: str) -> dict[str, str]:
    """Hub incident id -> the vendor object's id, as the hub's database links them."""
    with db.read() as session:
        rows = session.scalars(select(ExternalRefRow).where(ExternalRefRow.connector_id == connector_id))
        return {row.incident_id: row.external_id for row in rows}


def pd_incidents_for(state: PagerDutyState, incident_id: str) -> list[PagerDutyIncident]:
    with state.lock:
        return [i for i in state.incidents.values() if i.incident_key == f"incident-hub/{incident_id}"]


def jira_issues_for(state: JiraState, incident_id: str) -> list[Issue]:
    with state.lock:
        return [i for i in state.issues.values() if f"incident-hub-{incident_id}" in i.labels]


def pd_status_path(state: PagerDutyState, pd_id: str) -> list[str]:
    """The statuses an incident went through, from PagerDuty's own log."""
    with state.lock:
        return [
            PD_STATUS_LOG[e.type] for e in state.log if e.incident_id == pd_id and e.type in PD_STATUS_LOG
        ]


def jira_status_path(state: JiraState, issue_id: str) -> list[str]:
    """The statuses an issue went through, from Jira's change history (the create names the first)."""
    with state.lock:
        return [
            str(item.to_string)
            for history in state.issues[issue_id].histories
            for item in history.items
            if item.field_id == "status"
        ]


def assert_made_once(path: list[str], wanted: list[str], where: str) -> None:
    """What the vendor went through (`path`) follows the hub's statuses (`wanted`, in the vendor's names):
    in their order, no status entered twice, from the first to the last (a push writes the status as it
    is at the time, so it may skip one in between)."""
    distinct = list(dict.fromkeys(wanted))
    assert len(path) == len(set(path)), f"{where}: a status was entered twice: {path}"
    assert path and path[0] == distinct[0] and path[-1] == distinct[-1], f"{where}: {path}, wanted {distinct}"
    order = {status: n for n, status in enumerate(distinct)}
    positions = [order.get(status, -1) for status in path]
    assert -1 not in positions and positions == sorted(positions), f"{where}: {path}, wanted {distinct}"


def events_by_incident(db: Database) -> dict[str, list[tuple[str, str | None]]]:
    """Each incident's events in order: (type, the new status of a status change)."""
    found: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    with db.read() as session:
        for row in session.scalars(select(EventRow).order_by(EventRow.created_at)):
            if row.incident_id is not None:
                body = row.payload[row.type]
                status = body.get("new_status") if row.type == "incident_status_changed" else None
                found[row.incident_id].append((row.type, status))
    return dict(found)


def expected_events(statuses: list[str]) -> list[tuple[str, str | None]]:
    """The events of an incident that went through `statuses` (the first is where it started)."""
    events: list[tuple[str, str | None]] = [("incident_created", None)]
    for status in statuses[1:]:
        events.append(("incident_status_changed", status))
        if status == "RESOLVED":
            events.append(("incident_resolved", None))
    return events


def connector_deliveries(db: Database) -> dict[str, dict[str, int]]:
    """Connector id -> how many of its deliveries are in each state."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with db.read() as session:
        for row in session.scalars(select(DeliveryRow).where(DeliveryRow.target_kind == "connector")):
            counts[row.target_id][row.state] += 1
    return {target: dict(states) for target, states in counts.items()}


def assert_in_step(world: World, paths: dict[str, list[str]], *, origin: str | None) -> None:
    """Each hub incident (`paths`: the statuses it went through) is at PagerDuty and in Jira exactly once,
    in the hub's status, each status change made there once; the vendors' echoes changed nothing in the
    hub, nothing went back to where a change came from, and the outbox holds no dead letter."""
    pd, jira = world.pd_state, world.jira_state
    pd_ids: set[str] = set()
    with world.api() as api:
        listed = api.get("/api/v1/incidents", params={"limit": 200}).json()["items"]
        assert sorted(i["id"] for i in listed) == sorted(paths), "one hub incident per incident, no more"
        for incident_id, path in paths.items():
            incident = api.get(f"/api/v1/incidents/{incident_id}").json()
            assert incident["status"] == path[-1], incident_id
            refs = {r["connector_id"]: r["external_id"] for r in incident["external_refs"]}
            assert set(refs) == {"pagerduty", "jira"}, incident["external_refs"]

            pd_id = refs["pagerduty"]
            if origin != "pagerduty":
                found = [i.id for i in pd_incidents_for(pd, incident_id)]
                assert found == [pd_id], f"{incident_id}: PagerDuty incidents {found}, linked {pd_id}"
            pd_ids.add(pd_id)
            assert pd.incidents[pd_id].status == HUB_TO_PD[path[-1]], f"PagerDuty {pd_id} of {incident_id}"
            assert_made_once(
                pd_status_path(pd, pd_id), [HUB_TO_PD[s] for s in path], f"PagerDuty {pd_id} of {incident_id}"
            )

            issues = jira_issues_for(jira, incident_id)
            assert len(issues) == 1, f"{incident_id}: Jira issues {[i.key for i in issues]}"
            issue = issues[0]
            assert refs["jira"] == issue.id, f"{incident_id} is linked to {refs['jira']}, not {issue.key}"
            assert issue.status.name == HUB_TO_JIRA[path[-1]], f"Jira {issue.key} of {incident_id} ({path})"
            assert_made_once(
                jira_status_path(jira, issue.id),
                [HUB_TO_JIRA[s] for s in path],
                f"{issue.key} of {incident_id}",
            )

    # No vendor object beyond one per incident, each made by one create call.
    assert pd_ids == set(pd.incidents), "one PagerDuty incident per hub incident"
    assert len(jira.issues) == len(paths), "one Jira issue per hub incident"
    jira_creates = [e for e in jira.ledger.writes() if jira_create(e.method, e.path)]
    assert len(jira_creates) == len(paths), "a Jira issue was created twice (or a create failed)"
    pd_creates = [e for e in pd.ledger.writes() if pd_create(e.method, e.path)]
    assert len(pd_creates) == (0 if origin == "pagerduty" else len(paths))
    if origin == "pagerduty":
        writes = [(e.method, e.path) for e in pd.ledger.writes()]
        assert writes == [], "the hub wrote back to PagerDuty, where the changes came from"

    # The vendors' echoes of the hub's own writes (and of the changes the hub took from PagerDuty) made no
    # hub change: each incident has the events of exactly the changes made, no more.
    assert events_by_incident(world.db) == {i: expected_events(p) for i, p in paths.items()}
    deliveries = connector_deliveries(world.db)
    assert set(deliveries["jira"]) == {"delivered"}, deliveries
    if origin == "pagerduty":
        assert "pagerduty" not in deliveries, f"deliveries back to PagerDuty: {deliveries}"
    else:
        assert set(deliveries["pagerduty"]) == {"delivered"}, deliveries


# ---- the steps ------------------------------------------------------------------------------------------


def open_incidents(world: World, plans: list[list[str]]) -> dict[str, list[str]]:
    """Open one incident per plan and move it through the plan's statuses; the statuses each went
    through, by incident id."""
    paths: dict[str, list[str]] = {}
    with world.api() as api:
        for n, plan in enumerate(plans):
            created = api.post(
                "/api/v1/incidents", json={"title": f"Crash test {n}", "severity": "SEV2_HIGH"}
            )
            assert created.status_code == 201, created.text
            incident_id = str(created.json()["id"])
            paths[incident_id] = ["OPEN"]
            for status in plan[1:]:
                move(api, paths, incident_id, status)
    return paths


def move(api: httpx.Client, paths: dict[str, list[str]], incident_id: str, status: str) -> None:
    moved = api.put(f"/api/v1/incidents/{incident_id}/status", json={"status": status})
    assert moved.status_code == 200, moved.text
    paths[incident_id].append(status)


def wait_for_webhooks(state: PagerDutyState, count: int) -> None:
    """Until PagerDuty has sent `count` webhooks, and the hub accepted each (202)."""
    wait_until(
        lambda: [e.status for e in state.ledger.entries(direction="out")] == [202] * count,
        10,
        lambda: f"webhook answers {[e.status for e in state.ledger.entries(direction='out')]}",
    )


def queue_changes_without_sending(world: World, plans: list[list[str]]) -> dict[str, list[str]]:
    """Open and move the incidents with the dispatcher off: every change is committed with its deliveries,
    none is sent. Then SIGKILL."""
    world.start(INCIDENT_HUB_DISPATCH_ENABLED="false")
    world.configure_connectors()
    paths = open_incidents(world, plans)
    world.hub.kill()
    assert world.pd_state.ledger.entries() == world.jira_state.ledger.entries() == [], "nothing was sent"
    return paths


# ---- the tests --------------------------------------------------------------------------------------------


def test_pushes_killed_while_their_calls_are_unanswered_are_made_once_after_restart(world: World) -> None:
    paths = queue_changes_without_sending(
        world, [["OPEN", "ACKNOWLEDGED", "RESOLVED"], ["OPEN", "ACKNOWLEDGED"]]
    )
    ids = list(paths)

    # Kill 1: every create is at its vendor, unanswered. The vendors make the objects; the hub never
    # learns their ids (their webhooks find it dead).
    world.start_and_kill_holding(
        {world.pd_calls: (pd_create, len(ids)), world.jira_calls: (jira_create, len(ids))}
    )
    assert len(world.pd_state.incidents) == len(world.jira_state.issues) == len(ids)
    assert hub_refs(world.db, "pagerduty") == hub_refs(world.db, "jira") == {}

    # Kill 2: after the restart the hub finds the objects (check-before-create) and brings them to the
    # incidents' status; those writes are at the vendors, unanswered, when it dies again.
    world.start_and_kill_holding(
        {world.pd_calls: (pd_update, len(ids)), world.jira_calls: (jira_transition, len(ids))}
    )
    assert hub_refs(world.db, "pagerduty") == hub_refs(world.db, "jira") == {}
    for incident_id in ids:
        (pd_incident,) = pd_incidents_for(world.pd_state, incident_id)
        (issue,) = jira_issues_for(world.jira_state, incident_id)
        assert (pd_incident.status, issue.status.name) == (
            HUB_TO_PD[paths[incident_id][-1]],
            HUB_TO_JIRA[paths[incident_id][-1]],
        ), "the vendors made the writes whose answers were lost"

    # After the second restart nothing is written twice, and a new change still goes out once.
    world.start()
    with world.api() as api:
        move(api, paths, ids[1], "RESOLVED")
    world.settle()
    assert_in_step(world, paths, origin=None)


def test_pagerduty_changes_accepted_before_kills_reach_jira_once_and_never_go_back(world: World) -> None:
    world.start()
    world.configure_connectors()
    with world.pd_ui() as ui:
        pd_ids: list[str] = []
        # Kill 1: the hub accepted every PagerDuty webhook (202) and made its incidents; their Jira creates
        # are at Jira, unanswered.
        world.jira_calls.hold(jira_create)
        for n in range(3):
            triggered = ui.post(
                "/incidents",
                json={"title": f"Disk full on db-{n}", "urgency": "high", "priority": "P2"},
            )
            assert triggered.status_code == 201, triggered.text
            pd_ids.append(triggered.json()["incident"]["id"])
        wait_for_webhooks(world.pd_state, len(pd_ids))
        world.kill_when(
            lambda: len(world.jira_calls.held(jira_create)) == len(pd_ids),
            lambda: f"{len(world.jira_calls.held(jira_create))} Jira creates held",
        )
        assert len(world.jira_state.issues) == len(pd_ids)
        assert hub_refs(world.db, "jira") == {}

        # Kill 2: PagerDuty's responder acknowledges and resolves; the hub accepts those webhooks; its
        # restarted pushes find the issues and move them, and those transitions are unanswered.
        world.start()
        for pd_id in pd_ids[:2]:
            ui.post(f"/incidents/{pd_id}/acknowledge", json={"actor": RESPONDER_ID}).raise_for_status()
        ui.post(f"/incidents/{pd_ids[0]}/resolve", json={"actor": RESPONDER_ID}).raise_for_status()
        wait_for_webhooks(world.pd_state, len(pd_ids) + 3)
        world.kill_holding({world.jira_calls: (jira_transition, 2)})

        # After the second restart, the last PagerDuty change arrives and goes to Jira once.
        world.start()
        ui.post(f"/incidents/{pd_ids[2]}/acknowledge", json={"actor": RESPONDER_ID}).raise_for_status()
        wait_for_webhooks(world.pd_state, len(pd_ids) + 4)
    world.settle()

    statuses = {pd_id: ["OPEN", "ACKNOWLEDGED"] for pd_id in pd_ids}
    statuses[pd_ids[0]].append("RESOLVED")
    by_pd = {pd_id: incident_id for incident_id, pd_id in hub_refs(world.db, "pagerduty").items()}
    assert sorted(by_pd) == sorted(pd_ids), "each PagerDuty incident made one hub incident"
    with world.api() as api:
        for incident_id in by_pd.values():
            assert api.get(f"/api/v1/incidents/{incident_id}").json()["source"] == "pagerduty"
    assert_in_step(world, {by_pd[pd_id]: path for pd_id, path in statuses.items()}, origin="pagerduty")


def test_push_killed_after_its_create_was_linked_through_the_echo_is_completed_after_restart(
    world: World,
) -> None:
    """The link an echo makes must not claim more than the vendor object holds: the restarted push still
    has to bring it to the incident's status."""
    paths = queue_changes_without_sending(
        world, [["OPEN", "ACKNOWLEDGED"], ["OPEN", "ACKNOWLEDGED", "RESOLVED"]]
    )
    ids = set(paths)

    # Each push has created its vendor object, whose webhook came back to the hub, which linked the object
    # to its incident (the object carries the hub id). The push's next call is on the way to the incident's
    # status: the hub dies as it sends PagerDuty the update to acknowledged or resolved (which never
    # arrives), and while Jira's answer to reading the issue's transitions is on its way.
    world.start()
    held = {world.pd_calls: pd_update, world.jira_calls: jira_transitions_read}
    world.pd_calls.hold(pd_update, arrives=False)
    world.jira_calls.hold(jira_transitions_read)
    world.kill_when(
        lambda: (
            all(len(calls.held(rule)) == len(ids) for calls, rule in held.items())
            and set(hub_refs(world.db, "pagerduty")) == set(hub_refs(world.db, "jira")) == ids
        ),
        lambda: (
            f"held {[len(calls.held(rule)) for calls, rule in held.items()]}, linked "
            f"{hub_refs(world.db, 'pagerduty')} {hub_refs(world.db, 'jira')}"
        ),
    )
    assert [i.status for i in world.pd_state.incidents.values()] == ["triggered"] * len(ids)
    assert [i.status.name for i in world.jira_state.issues.values()] == ["To Do"] * len(ids)

    world.start()
    world.settle()
    assert_in_step(world, paths, origin=None)
