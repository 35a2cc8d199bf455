"""The chaos tests' world: the real hub between the four vendor sandboxes, a client driving changes through
its API at a steady rate, and a verifier that reads every vendor's own record of what was done.

- The hub is `incident-hub serve` in a subprocess (`HubProcess`: it can be SIGKILLed and restarted on the
  same database), with the PagerDuty, Jira, ServiceNow and Opsgenie connectors configured through the admin
  API (so every restart has them). The sandboxes run in this process over HTTPS and send their webhooks to
  the hub, as the vendors do.
- `Driver` makes changes open loop (`rate` a second, whether or not the hub keeps up): each incident is
  created, acknowledged, raised in severity, given a note, renamed and resolved, in that order, with
  incidents interleaved. A change counts as acknowledged when the hub answered it 2xx. A 503 is retried
  after its `Retry-After`, as a client would, and counted. A request that dies with the connection
  (the hub was killed under it) has an unknown outcome: it is sent again (the create under the same
  dedup key, the note only if the hub does not hold it yet), so each change is acknowledged once. Any
  other failure — a 500, a reset while the hub is up, an unexpected 4xx — is recorded and fails the test.
- `verify` waits for the hub's backlog to drain, then checks what the hub promises (docs/RELIABILITY.md):
  every acknowledged change is in the hub, every hub incident is at every vendor exactly once (one object;
  each status entered once, in the hub's order, from the vendor's own record; each note once, in order;
  nothing dead in the outbox), and hub and vendors agree field by field (title, severity, status, notes).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from incident_hub.model import Severity
from incident_hub.sandbox.world import VENDORS, Side, World, start_sandboxes
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, EventRow, InboxRow
from tests.test_crash_recovery import HubProcess, admin_key, api_client

# Fast polling, short leases (a killed hub's claims are free again within seconds), no reconciler (a
# repair pass would hide a push that went missing: here only pushes may bring a vendor in step).
HUB_ENV = {
    "INCIDENT_HUB_DELIVERY_LEASE_SECONDS": "2",
    "INCIDENT_HUB_DISPATCH_POLL_SECONDS": "0.1",
    "INCIDENT_HUB_INBOX_POLL_SECONDS": "0.1",
    "INCIDENT_HUB_DELIVERY_BACKOFF_INITIAL_SECONDS": "0.2",
    "INCIDENT_HUB_DELIVERY_BACKOFF_MAX_SECONDS": "2",
    "INCIDENT_HUB_DELIVERY_TIMEOUT_SECONDS": "5",
    "INCIDENT_HUB_RECONCILE_ENABLED": "false",
}
CONNECTOR_SETTINGS: dict[str, Any] = {
    "timeout_seconds": 8,
    "rate_limit_per_second": 200,
    "in_doubt_schedule_seconds": [0.5, 1.0, 2.0],
}
# Each incident's changes, in order, after its create.
STEPS = ("acknowledge", "severity", "note", "title", "resolve")
HUB_STATUS = {"OPEN": "open", "ACKNOWLEDGED": "working", "RESOLVED": "resolved"}
TRANSPORT_ERRORS = (httpx.TransportError,)
AUTHOR = "chaos-driver"


# ---- the world ------------------------------------------------------------------------------------------


@dataclass
class ChaosWorld:
    db: Database
    key: str
    hub: HubProcess
    vendors: World
    env: dict[str, str]
    configs: list[dict[str, Any]]
    kills: int = 0
    faults: list[str] = field(default_factory=list)
    up: bool = False
    """The hub is started and ready; False from a kill until the restarted hub is ready."""

    def start(self) -> None:
        self.hub.start(**self.env)
        self.up = True

    def kill(self) -> None:
        self.up = False
        self.kills += 1
        self.hub.kill()

    def api(self) -> httpx.Client:
        return api_client(self.hub, self.key)

    def configure_connectors(self) -> None:
        with self.api() as api:
            for config in self.configs:
                answer = api.put(f"/api/v1/connectors/{config['id']}", json={**config, **CONNECTOR_SETTINGS})
                assert answer.status_code == 200, answer.text

    def fault(self, what: str, *, injected: bool = True) -> None:
        """Log a fault injected (or, `injected=False`, its end), with the time: the test's output says what
        happened when; `faults` counts the injected ones."""
        line = f"{datetime.now(UTC):%H:%M:%S.%f}"[:-3] + f" {what}"
        if injected:
            self.faults.append(line)
        print(f"fault: {line}", flush=True)

    def backlog(self) -> dict[str, int]:
        """Pending deliveries per target connector, and pending inbox rows ("inbox")."""
        with self.db.read() as session:
            rows = session.execute(
                select(DeliveryRow.target_id, func.count())
                .where(DeliveryRow.state == "pending")
                .group_by(DeliveryRow.target_id)
            ).all()
            inbox = session.scalar(
                select(func.count()).select_from(InboxRow).where(InboxRow.state == "pending")
            )
        return {**{str(target): int(count) for target, count in rows}, "inbox": int(inbox or 0)}

    def drain(self, timeout: float) -> float:
        """Wait until the outbox and inbox are empty and the vendors have been quiet for a while; the
        seconds it took."""
        began = time.monotonic()

        def activity() -> tuple[int, ...]:
            return tuple(len(side.ledger.entries()) for side in self.vendors.sides.values())

        last: tuple[int, ...] = ()
        quiet_since = time.monotonic()
        deadline = began + timeout
        shown = 0.0
        while time.monotonic() < deadline:
            now = activity()
            backlog = self.backlog()
            if time.monotonic() - shown >= 10:
                shown = time.monotonic()
                print(f"drain {shown - began:.0f} s: backlog {backlog}", flush=True)
            if now != last or any(backlog.values()):
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= 2.0:
                return quiet_since - began
            time.sleep(0.5)
        raise AssertionError(f"not drained within {timeout}s: {self.backlog()}\n{self.hub.log_tail()}")


@contextmanager
def chaos_world(
    database_url: str, workdir: Path, *, observe_url: str | None = None, **env: str
) -> Iterator[ChaosWorld]:
    """The four sandboxes and a hub process on `database_url` (started, connectors configured); the test
    reads the same database at `observe_url` when given (a path the faults do not cut)."""
    db = Database(observe_url or database_url)
    try:
        key = admin_key(db)
        hub = HubProcess(database_url, workdir)
        with ExitStack() as stack:
            vendors, configs, credentials = start_sandboxes(stack, hub.url, workdir / "sandboxes")
            world = ChaosWorld(db, key, hub, vendors, {**HUB_ENV, **credentials, **env}, configs)
            stack.enter_context(hub)
            world.start()
            world.configure_connectors()
            yield world
    finally:
        db.dispose()


# ---- the driver -----------------------------------------------------------------------------------------


@dataclass
class Change:
    seq: int
    incident: int
    kind: str
    scheduled: float
    acknowledged: float | None = None
    answers: list[int] = field(default_factory=list)
    """Every answer's status; 0 for a request that died with the connection."""


@dataclass
class Plan:
    """One incident the driver opens and moves along `STEPS`."""

    n: int
    tag: str
    severity: Severity = Severity.SEV3_MEDIUM
    incident_id: str | None = None
    step: int = 0
    due: float = 0.0
    note: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        self.title = f"{self.tag} #{self.n}: checkout latency above SLO"
        self.note = f"{self.tag} #{self.n}: rolled back the canary"


class Driver:
    """Open loop: `rate` changes a second for `seconds`, spread over incidents that each take `STEPS` in
    order (`gap` seconds apart at least). Changes of one incident go through one worker, in order."""

    def __init__(
        self,
        world: ChaosWorld,
        *,
        rate: float,
        seconds: float,
        gap: float = 1.0,
        workers: int = 8,
        seed: int = 1,
    ) -> None:
        self.world = world
        self.rate = rate
        self.seconds = seconds
        self.gap = gap
        self.rng = random.Random(seed)
        self.tag = f"chaos-{seed}-{int(time.time())}"
        self.plans: list[Plan] = []
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self.retried_503: Counter[str] = Counter()
        self.unknown_outcomes = 0
        self.retry_after_missing = 0
        self._queues: list[queue.Queue[Change | None]] = [queue.Queue() for _ in range(workers)]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), daemon=True, name=f"driver-{n}")
            for n, q in enumerate(self._queues)
        ]
        self._lock = threading.Lock()
        self.finished_at = 0.0

    # -- scheduling

    def run(self, during: Callable[[float], None] | None = None) -> None:
        """Make the changes; `during(elapsed)` is called about every 0.1 s on a thread of its own (to inject
        faults) until the last change is made. Returns when every change is acknowledged or has failed."""
        for thread in self._threads:
            thread.start()
        total = round(self.rate * self.seconds)
        start = time.monotonic()
        scheduling = threading.Event()
        scheduling.set()
        faults = threading.Thread(target=self._faults, args=(during, start, scheduling), name="faults")
        faults.start()
        open_plans: list[Plan] = []
        try:
            for n in range(total):
                if (pause := start + n / self.rate - time.monotonic()) > 0:
                    time.sleep(pause)
                now = time.monotonic()
                if open_plans and open_plans[0].due <= now:
                    plan = open_plans.pop(0)
                    kind = STEPS[plan.step]
                    plan.step += 1
                else:
                    plan = Plan(len(self.plans), self.tag)
                    self.plans.append(plan)
                    kind = "create"
                if plan.step < len(STEPS):
                    plan.due = now + self.gap
                    open_plans.append(plan)
                change = Change(len(self.changes), plan.n, kind, now)
                self.changes.append(change)
                self._queues[plan.n % len(self._queues)].put(change)
        finally:
            scheduling.clear()
            faults.join()
            for q in self._queues:
                q.put(None)
            for thread in self._threads:
                thread.join()
        self.finished_at = time.monotonic() - start

    def _faults(
        self, during: Callable[[float], None] | None, start: float, scheduling: threading.Event
    ) -> None:
        while during is not None and scheduling.is_set():
            try:
                during(time.monotonic() - start)
            except Exception as error:
                with self._lock:
                    self.errors.append(f"fault injection: {type(error).__name__}: {error}")
                return
            time.sleep(0.1)

    # -- sending

    def _work(self, changes: queue.Queue[Change | None]) -> None:
        with self.world.api() as api:
            while (change := changes.get()) is not None:
                plan = self.plans[change.incident]
                try:
                    self._send(api, plan, change)
                except Exception as error:  # a failure of the test, reported at the end
                    with self._lock:
                        self.errors.append(f"{change.kind} of #{plan.n}: {type(error).__name__}: {error}")

    def _request(self, plan: Plan, kind: str) -> tuple[str, str, dict[str, Any] | None]:
        base = f"/api/v1/incidents/{plan.incident_id}"
        if kind == "create":
            body = {"title": plan.title, "severity": plan.severity.value, "dedup_key": f"{self.tag}/{plan.n}"}
            return "POST", "/api/v1/incidents", body
        if kind == "acknowledge":
            return "PUT", f"{base}/status", {"status": "ACKNOWLEDGED"}
        if kind == "resolve":
            return "PUT", f"{base}/status", {"status": "RESOLVED"}
        if kind == "severity":
            plan.severity = self.rng.choice([Severity.SEV1_CRITICAL, Severity.SEV2_HIGH])
            return "PATCH", base, {"severity": plan.severity.value}
        if kind == "title":
            # With the resolution notes a resolve needs at ServiceNow (its data policy asks for them).
            plan.title = f"{plan.title} (renamed)"
            return "PATCH", base, {"title": plan.title, "resolution_notes": "Rolled back the canary"}
        return "POST", f"{base}/timeline", {"message": plan.note, "author": AUTHOR}

    def _send(self, api: httpx.Client, plan: Plan, change: Change) -> None:
        if plan.incident_id is None and change.kind != "create":
            raise AssertionError("the incident's create was never acknowledged")
        method, path, body = self._request(plan, change.kind)
        in_doubt = False
        while True:
            if in_doubt and self._already_made(api, plan, change.kind):
                change.acknowledged = time.monotonic()
                return
            kills, up = self.world.kills, self.world.up
            try:
                answer = api.request(method, path, json=body)
            except TRANSPORT_ERRORS as error:
                change.answers.append(0)
                if up and self.world.up and self.world.kills == kills:
                    raise AssertionError(f"the connection failed while the hub was up: {error!r}") from error
                # The hub died under the request: its outcome is unknown. Send it again once it is back.
                with self._lock:
                    self.unknown_outcomes += 1
                in_doubt = True
                time.sleep(0.2)
                continue
            change.answers.append(answer.status_code)
            if answer.status_code == 503:
                retry_after = answer.headers.get("Retry-After")
                with self._lock:
                    self.retried_503[change.kind] += 1
                    if retry_after is None:
                        self.retry_after_missing += 1
                time.sleep(min(float(retry_after or 1), 5.0))
                continue
            if answer.status_code >= 300:
                raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
            if change.kind == "create":
                plan.incident_id = str(answer.json()["id"])
            change.acknowledged = time.monotonic()
            return

    def _already_made(self, api: httpx.Client, plan: Plan, kind: str) -> bool:
        """Whether the hub holds the effect of a note or a status move whose answer was lost (sending
        those again would add a second note, or be refused as a move to the status it is in)."""
        if kind not in ("note", "acknowledge", "resolve"):
            return False
        base = f"/api/v1/incidents/{plan.incident_id}"
        try:
            answer = api.get(f"{base}/timeline" if kind == "note" else base)
        except TRANSPORT_ERRORS:
            return False
        if answer.status_code != 200:
            return False
        if kind == "note":
            return any(e["message"] == plan.note for e in answer.json())
        return bool(answer.json()["status"] == ("ACKNOWLEDGED" if kind == "acknowledge" else "RESOLVED"))

    # -- figures

    def acknowledged(self) -> list[Change]:
        return [c for c in self.changes if c.acknowledged is not None]

    def assert_clean(self) -> None:
        """No change failed; every one was acknowledged."""
        assert not self.errors, "\n".join(self.errors[:20])
        missing = [c for c in self.changes if c.acknowledged is None]
        assert not missing, f"{len(missing)} changes never acknowledged: {missing[:5]}"


# ---- the verifier ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    faults: int
    changes: int
    acknowledged: int
    incidents: int
    retried_503: int
    unknown_outcomes: int
    delivered: dict[str, int]
    create_calls: dict[str, int]
    lost: int
    duplicates: int
    drain_seconds: float
    run_seconds: float

    def report(self, title: str) -> str:
        lines = [
            f"== {title}",
            f"faults injected: {self.faults}",
            f"changes made: {self.changes} over {self.run_seconds:.0f} s "
            f"({self.incidents} incidents), acknowledged: {self.acknowledged}",
            f"client retries after 503: {self.retried_503}, sent again after a lost connection: "
            f"{self.unknown_outcomes}",
            "delivered per vendor (hub deliveries done): "
            + ", ".join(f"{name} {count}" for name, count in self.delivered.items()),
            "create calls per vendor: " + ", ".join(f"{n} {c}" for n, c in self.create_calls.items()),
            f"lost: {self.lost}, duplicates (notes and objects included): {self.duplicates}, "
            f"drain: {self.drain_seconds:.1f} s",
        ]
        text = "\n".join(lines)
        print(text, flush=True)
        return text


def hub_incidents(world: ChaosWorld, tag: str) -> dict[str, dict[str, Any]]:
    """The hub's incidents of this run (by id), each with its notes (`notes`), read through the API."""
    found: dict[str, dict[str, Any]] = {}
    with world.api() as api:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = api.get("/api/v1/incidents", params=params)
            assert page.status_code == 200, page.text
            for item in page.json()["items"]:
                if item["title"].startswith(tag):
                    found[item["id"]] = item
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        for incident_id, incident in found.items():
            timeline = api.get(f"/api/v1/incidents/{incident_id}/timeline").json()
            incident["notes"] = [
                e["message"] for e in timeline if e["type"] == "NOTE" and e["author"] == AUTHOR
            ]
    return found


def status_paths(db: Database) -> dict[str, list[str]]:
    """Each incident's statuses in the order the hub moved it (from its events)."""
    paths: dict[str, list[str]] = {}
    with db.read() as session:
        for row in session.scalars(select(EventRow).order_by(EventRow.created_at, EventRow.id)):
            if row.incident_id is None:
                continue
            if row.type == "incident_created":
                paths.setdefault(row.incident_id, []).insert(0, "OPEN")
            elif row.type == "incident_status_changed":
                paths.setdefault(row.incident_id, []).append(str(row.payload[row.type]["new_status"]))
    return paths


def delivery_states(db: Database) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with db.read() as session:
        for target, state, count in session.execute(
            select(DeliveryRow.target_id, DeliveryRow.state, func.count()).group_by(
                DeliveryRow.target_id, DeliveryRow.state
            )
        ):
            counts[str(target)][str(state)] = int(count)
    return {target: dict(states) for target, states in counts.items()}


def verify(world: ChaosWorld, driver: Driver, *, drain_timeout: float = 300.0) -> Figures:
    """Drain, then check the promises; returns the run's figures (and prints them). Anything at a vendor
    twice fails: a status entered again, a note added again, a second object for one incident (an
    Opsgenie alert created and closed by a push whose outcome was lost, made again, included)."""
    drain_seconds = world.drain(drain_timeout)
    driver.assert_clean()
    incidents = hub_incidents(world, driver.tag)
    lost: list[str] = []
    duplicates: list[str] = []

    # Every acknowledged change is in the hub: each plan's incident holds what the driver was told.
    by_plan = {plan.n: plan for plan in driver.plans}
    done: dict[int, set[str]] = defaultdict(set)
    for change in driver.acknowledged():
        done[change.incident].add(change.kind)
    for n, kinds in done.items():
        plan = by_plan[n]
        incident = incidents.get(plan.incident_id or "")
        if incident is None:
            lost.append(f"hub: incident #{n} ({plan.incident_id}) is missing")
            continue
        wanted = {
            "status": "RESOLVED"
            if "resolve" in kinds
            else "ACKNOWLEDGED"
            if "acknowledge" in kinds
            else "OPEN",
            "title": plan.title,
            "severity": plan.severity.value,
        }
        for name, value in wanted.items():
            if incident[name] != value:
                lost.append(f"hub: #{n} {name} is {incident[name]!r}, acknowledged {value!r}")
        if "note" in kinds and incident["notes"].count(plan.note) != 1:
            lost.append(f"hub: #{n} holds the acknowledged note {incident['notes'].count(plan.note)} times")
    assert len(incidents) == len(done), f"{len(incidents)} hub incidents for {len(done)} acknowledged creates"

    # Every hub incident is at every vendor once, in step field by field, each status entered once in
    # order, each note once in order.
    paths = status_paths(world.db)
    for name, side in world.vendors.sides.items():
        refs_seen: list[str] = []
        for incident_id, incident in incidents.items():
            refs = [r["external_id"] for r in incident["external_refs"] if r["connector_id"] == name]
            if len(refs) != 1:
                lost.append(f"{name}: {incident_id} is linked {len(refs)} times")
                continue
            ref = refs[0]
            refs_seen.append(ref)
            lost.extend(_differences(side, ref, incident))
            vendor_path = side.status_path(ref)
            wanted_path = [HUB_STATUS[s] for s in paths[incident_id]]
            if problem := out_of_step(vendor_path, wanted_path):
                duplicates.append(f"{name} {ref} of {incident_id}: {problem}")
            said = [n for n in side.notes(ref) if n.endswith(tuple(incident["notes"]) or ("\0",))]
            firsts = list(dict.fromkeys(said))
            if len(firsts) != len(incident["notes"]) or not all(
                text.endswith(note) for text, note in zip(firsts, incident["notes"], strict=False)
            ):
                lost.append(f"{name} {ref}: notes {side.notes(ref)}, hub {incident['notes']}")
            elif len(said) > len(firsts):
                duplicates.append(f"{name} {ref}: a note added twice: {said}, hub {incident['notes']}")
        unlinked = [ref for ref in side.refs() if ref not in set(refs_seen)]
        for ref in unlinked:
            duplicates.append(
                f"{name}: {side.describe(ref)} ({side.title(ref)!r}, {side.vendor_status(ref)}) is linked "
                "to no incident: a second object for one of them"
            )

    states = delivery_states(world.db)
    for target, counts in states.items():
        assert set(counts) <= {"delivered"}, f"deliveries to {target}: {counts}"
    assert not lost, f"{len(lost)} lost:\n" + "\n".join(lost[:30])
    assert not duplicates, f"{len(duplicates)} duplicates:\n" + "\n".join(duplicates[:30])
    return Figures(
        faults=len(world.faults),
        changes=len(driver.changes),
        acknowledged=len(driver.acknowledged()),
        incidents=len(incidents),
        retried_503=sum(driver.retried_503.values()),
        unknown_outcomes=driver.unknown_outcomes,
        delivered={name: states.get(name, {}).get("delivered", 0) for name in VENDORS},
        create_calls={name: side.creates() for name, side in world.vendors.sides.items()},
        lost=len(lost),
        duplicates=len(duplicates),
        drain_seconds=drain_seconds,
        run_seconds=driver.finished_at,
    )


def out_of_step(path: list[str], wanted: list[str]) -> str | None:
    """What is wrong with the statuses a vendor went through (`path`) for an incident that went through
    `wanted`, or None: each entered once, in the hub's order, ending where the hub is. A push writes the
    status as it is then, so the vendor may skip some (a create made late starts at a later one)."""
    if len(path) != len(set(path)):
        return f"a status was entered twice: {path}, hub {wanted}"
    if not path or path[-1] != wanted[-1]:
        return f"ends at {path[-1:]}, hub at {wanted[-1]}"
    rest = iter(wanted)
    if not all(status in rest for status in path):
        return f"out of order: {path}, hub {wanted}"
    return None


def _differences(side: Side, ref: str, incident: dict[str, Any]) -> list[str]:
    """Where the vendor's object differs from the hub's incident (title, severity, status)."""
    status = HUB_STATUS[incident["status"]]
    found = {
        "title": (side.title(ref), incident["title"]),
        "severity": (side.severity(ref), Severity(incident["severity"])),
        "status": (side.status(ref), status),
    }
    return [
        f"{side.name} {ref} of {incident['id']}: {name} {theirs!r}, hub {ours!r}"
        for name, (theirs, ours) in found.items()
        if theirs != ours
    ]
