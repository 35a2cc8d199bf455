"""Benchmark: how long a change made in PagerDuty takes to reach Jira through the hub, against a bare relay.

The PagerDuty and Jira sandboxes run in this process (HTTPS, `Sandbox(app, state)`), both with
`--latency-ms` added to every vendor API call. Two servers run in turn, each as a subprocess:

1. the hub: `incident-hub serve`, one uvicorn worker, on a fresh database (a temporary SQLite file or a
   PostgreSQL schema made for the run and dropped after it), with both connectors from a YAML file
   (`INCIDENT_HUB_CONFIG`); PagerDuty's webhooks go to `/webhooks/pagerduty`, Jira's to `/webhooks/jira`;
2. the baseline: `bench/relay_app.py`, which answers each PagerDuty webhook 202 and makes the one Jira
   call that carries it, with no database and no checks (the floor on this machine).

Against each, a person and a monitor change PagerDuty through the sandbox's UI endpoints
(`/_sandbox/pagerduty`) at `--rate` changes per second, open loop: monitoring triggers an incident
(unique title and incident_key, priority P1-P4); `--gap` seconds later the responder acknowledges it,
then changes its priority, then resolves it. Each change should cause exactly one Jira write: a new
issue, a transition to In Progress, a priority edit, a transition to Done.

Propagation of a change = from the PagerDuty control call returning (its webhook is queued) to the Jira
ledger entry of the first write after it that shows it: the issue is found by summary (= the PagerDuty
title) or by the issue id in the path; a new issue shows a trigger (and its priority), a transition to In
Progress an acknowledgement, a priority edit a priority change, a transition to Done a resolve. A change
can also be shown by a write made for a later one (the hub collapses a burst into one push: a priority
changed before the issue exists rides on the create; an acknowledgement not yet written when the resolve
comes is overtaken by Done); those are counted as "collapsed". Only changes made after `--warmup` count.

Reported per server: p50/p90/p99/max propagation, overall and per kind; changes made per second; changes
lost (not in Jira `--drain` seconds after the last one); Jira writes and GETs per change (every change of
the run, warm-up included, once drained); echoes (writes to PagerDuty's API: there should be none); CPU
per change (server, PostgreSQL, this process); how long the server takes to answer a PagerDuty webhook.
For the hub, also the time in each stage (from its inbox, delivery and attempt rows), what its inbox and
dispatcher did, and the warnings and errors it logged.

For the hub, also the inbox lag over time: per `--window` seconds of the run, the changes made in it and
their p99, and, sampled every second from the hub's database, the most webhooks pending in its inbox and
the age of the oldest one. Flat over a long run (`--minutes 10`) means the inbox keeps up.

    .venv/bin/python bench/propagation.py                     # SQLite, 60 s at 20 changes/s (~3 min)
    .venv/bin/python bench/propagation.py --db both --minutes 10 --json-out /tmp/prop.json   # the soak
    .venv/bin/python bench/propagation.py --quick             # SQLite hub only, 20 s (~1 min)
    .venv/bin/python bench/propagation.py --db postgresql --target hub
    .venv/bin/python bench/propagation.py --db both --rate 2,5,10 --seconds 30    # where it stops keeping up
    .venv/bin/python bench/propagation.py --rate-limit 100 --max-concurrency 16  # lift the connector limits
    .venv/bin/python bench/propagation.py --target hub --profile /tmp/prof        # py-spy --gil of the hub

The sandboxes' webhook sender builds a new `httpx.AsyncClient` per webhook, which loads certifi's CA
bundle: about 33 ms of CPU each on a 2-core VM, under this process's GIL, on the sandbox's event loop.
At 20 changes/s that alone is most of a core, so this process points `SSL_CERT_FILE` at a one-certificate
file (the targets are plain http://) and the sender costs under 1 ms. `--certifi-webhooks` leaves it be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml
from api_create import (
    BENCH,
    BIN,
    DEFAULT_POSTGRES,
    Server,
    _cpu_seconds,
    _machine_busy,
    _postgres_cpu_delta,
    _postgres_cpu_seconds,
    background_busy,
    free_port,
    hub_env,
    machine,
    postgres_schemas,
    postgres_version,
    serving,
    wait_quiet,
)
from report import row
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from incident_hub.sandbox.common import LedgerEntry, Sandbox, WebhookTarget
from incident_hub.sandbox.jira import SERVICE_ACCOUNT_ID, jira_sandbox
from incident_hub.sandbox.jira.model import JiraState
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, RESPONDER_ID, SERVICE_ID, pagerduty_sandbox
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.store.tables import (
    DeliveryAttemptRow,
    DeliveryRow,
    EventRow,
    ExternalRefRow,
    InboxRow,
    ReconciliationRunRow,
    TimelineRow,
)

JIRA_EMAIL = "hub@example.com"
TARGET_P99_MS = 250.0
TARGET_CALLS = 1.0
# PagerDuty priority -> Jira priority, through the hub's default mappings (P5 and P4 both read SEV4_LOW).
JIRA_PRIORITY = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"}
STEPS = ("acknowledge", "priority", "resolve")
PD_EVENT = {
    "trigger": "incident.triggered",
    "acknowledge": "incident.acknowledged",
    "priority": "incident.priority_updated",
    "resolve": "incident.resolved",
}
KINDS = ("trigger", *STEPS)
ISSUE_PATH = re.compile(r"^/rest/api/3/issue/([^/]+)(/transitions)?$")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ORIGINAL_SSL_CERT_FILE = os.environ.get("SSL_CERT_FILE")
EXCEPTION_LINE = re.compile(r"^[\w.]+(?:Error|Exception|Violation)\w*: .*$", re.MULTILINE)


class Stopped(Exception):
    """SIGTERM: unwind through every `finally`, so servers and sandboxes stop."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Stopped("terminated")


# ---- the vendors ------------------------------------------------------------------------------------


@dataclass
class Vendors:
    pd: Sandbox
    jira: Sandbox
    pd_state: PagerDutyState
    jira_state: JiraState
    tokens: dict[str, str]

    def point_webhooks(self, pagerduty_url: str, jira_url: str) -> None:
        with self.pd_state.lock:
            self.pd_state.webhook_targets = [WebhookTarget(url=pagerduty_url, secret=self.tokens["pd_hook"])]
        with self.jira_state.lock:
            self.jira_state.webhook_targets = [WebhookTarget(url=jira_url, secret=self.tokens["jira_hook"])]

    def clear_ledgers(self) -> None:
        self.pd_state.ledger.clear()
        self.jira_state.ledger.clear()


@contextmanager
def vendors(workdir: Path, latency_ms: float) -> Iterator[Vendors]:
    tokens = {name: secrets.token_hex(16) for name in ("pd", "pd_hook", "jira", "jira_hook")}
    pd_app, pd_state = pagerduty_sandbox(tokens["pd"], tokens["pd_hook"])
    jira_app, jira_state = jira_sandbox(JIRA_EMAIL, tokens["jira"], tokens["jira_hook"], None)
    pd_state.knobs.latency_ms = latency_ms
    jira_state.knobs.latency_ms = latency_ms
    with ExitStack() as stack:
        pd = stack.enter_context(Sandbox(pd_app, pd_state, directory=workdir / "pagerduty"))
        jira = stack.enter_context(Sandbox(jira_app, jira_state, directory=workdir / "jira"))
        yield Vendors(pd, jira, pd_state, jira_state, tokens)


def hub_config(v: Vendors, path: Path, tuning: dict[str, Any]) -> dict[str, str]:
    """Write the connectors file (the demo's, plus `tuning` on both); returns the environment variables
    its secrets are read from."""
    config: dict[str, list[dict[str, Any]]] = {
        "connectors": [
            {
                "id": "pagerduty",
                "kind": "pagerduty",
                "base_url": v.pd.url,
                "ca_bundle": str(v.pd.ca_bundle),
                "credentials": {"env": "BENCH_PAGERDUTY_TOKEN"},
                "webhook_secret": {"env": "BENCH_PAGERDUTY_WEBHOOK_SECRET"},
                "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
            },
            {
                "id": "jira",
                "kind": "jira",
                "base_url": v.jira.url,
                "ca_bundle": str(v.jira.ca_bundle),
                "credentials": {"env": "BENCH_JIRA_TOKEN"},
                "webhook_secret": {"env": "BENCH_JIRA_WEBHOOK_SECRET"},
                "options": {"email": JIRA_EMAIL, "project_key": "OPS", "hub_account_id": SERVICE_ACCOUNT_ID},
            },
        ]
    }
    for connector in config["connectors"]:
        connector.update(tuning)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return {
        "INCIDENT_HUB_CONFIG": str(path),
        "BENCH_PAGERDUTY_TOKEN": v.tokens["pd"],
        "BENCH_PAGERDUTY_WEBHOOK_SECRET": v.tokens["pd_hook"],
        "BENCH_JIRA_TOKEN": v.tokens["jira"],
        "BENCH_JIRA_WEBHOOK_SECRET": v.tokens["jira_hook"],
    }


def child_env(base: dict[str, str]) -> dict[str, str]:
    """Servers never inherit this process's `SSL_CERT_FILE` (see the module docstring)."""
    env = dict(base)
    env.pop("SSL_CERT_FILE", None)
    if ORIGINAL_SSL_CERT_FILE is not None:
        env["SSL_CERT_FILE"] = ORIGINAL_SSL_CERT_FILE
    return env


# ---- the change stream ------------------------------------------------------------------------------


@dataclass
class Change:
    seq: int
    kind: str
    pd_id: str
    title: str
    expect: tuple[str, ...]
    """Effects of a Jira write that show this change: its own first, then those of later changes that
    supersede it (an acknowledgement is shown by a transition to In Progress, or to Done once resolved)."""
    at: datetime
    measured: bool
    control_ms: float
    write_at: datetime | None = None
    write_kind: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    """The hub's stages (see `STAGES`), in ms."""

    @property
    def collapsed(self) -> bool:
        """Shown by a write made for another change (a burst collapsed into one call), not its own."""
        own = {"trigger": "create", "acknowledge": "transition:21", "resolve": "transition:31"}
        return self.write_kind is not None and self.write_kind != own.get(self.kind, self.expect[0])

    @property
    def propagation_ms(self) -> float | None:
        if self.write_at is None:
            return None
        return (self.write_at - self.at).total_seconds() * 1000


@dataclass
class OpenIncident:
    pd_id: str
    title: str
    priority: str
    ready: float
    step: int = 0


class Stream:
    """Open loop: the oldest incident whose next step is due gets it, else monitoring triggers a new one."""

    def __init__(self, ui: httpx.Client, tag: str, gap: float, urgency: str, rng: random.Random) -> None:
        self.ui = ui
        self.tag = tag
        self.gap = gap
        self.urgency = urgency
        self.rng = rng
        self.open: deque[OpenIncident] = deque()
        self.triggered = 0
        self.changes: list[Change] = []

    def next(self, measured: bool) -> Change:
        now = time.monotonic()
        if self.open and self.open[0].ready <= now:
            return self._step(self.open.popleft(), measured)
        return self._trigger(measured)

    def _call(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], datetime, float]:
        started = time.perf_counter()
        response = self.ui.post(path, json=body)
        at = datetime.now(UTC)
        if response.status_code >= 300:
            raise RuntimeError(f"PagerDuty control {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json(), at, (time.perf_counter() - started) * 1000

    def _trigger(self, measured: bool) -> Change:
        self.triggered += 1
        title = f"{self.tag} #{self.triggered}: checkout API 5xx above 20%"
        priority = self.rng.choice(sorted(JIRA_PRIORITY))
        # "matching": the urgency the hub's mapping writes for that priority's severity.
        urgency = "high" if self.urgency == "high" or priority in ("P1", "P2") else "low"
        body = {
            "title": title,
            "incident_key": f"{self.tag}/{self.triggered}",
            "urgency": urgency,
            "priority": priority,
        }
        answer, at, ms = self._call("/incidents", body)
        pd_id = str(answer["incident"]["id"])
        self.open.append(OpenIncident(pd_id, title, priority, time.monotonic() + self.gap))
        return self._record("trigger", pd_id, title, ("create",), at, measured, ms)

    def _step(self, incident: OpenIncident, measured: bool) -> Change:
        kind = STEPS[incident.step]
        path = f"/incidents/{incident.pd_id}"
        if kind == "acknowledge":
            _, at, ms = self._call(f"{path}/acknowledge", {"actor": RESPONDER_ID})
            expect: tuple[str, ...] = ("status:In Progress", "status:Done")
        elif kind == "priority":
            old = JIRA_PRIORITY[incident.priority]
            incident.priority = self.rng.choice(sorted(p for p, n in JIRA_PRIORITY.items() if n != old))
            _, at, ms = self._call(f"{path}/priority", {"actor": RESPONDER_ID, "priority": incident.priority})
            expect = (f"priority:{JIRA_PRIORITY[incident.priority]}",)
        else:
            _, at, ms = self._call(f"{path}/resolve", {"actor": RESPONDER_ID, "resolution": "bench"})
            expect = ("status:Done",)
        incident.step += 1
        if incident.step < len(STEPS):
            incident.ready = time.monotonic() + self.gap
            self.open.append(incident)
        return self._record(kind, incident.pd_id, incident.title, expect, at, measured, ms)

    def _record(
        self,
        kind: str,
        pd_id: str,
        title: str,
        expect: tuple[str, ...],
        at: datetime,
        measured: bool,
        ms: float,
    ) -> Change:
        change = Change(len(self.changes) + 1, kind, pd_id, title, expect, at, measured, ms)
        self.changes.append(change)
        return change


def control_client(sandbox: Sandbox) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
    return httpx.Client(base_url=f"{sandbox.url}/_sandbox/pagerduty", verify=trust, timeout=10)


# ---- matching changes to Jira writes ----------------------------------------------------------------


# The sandbox workflow's transitions (incident_hub/sandbox/jira/__init__.py, _TRANSITIONS) -> target status.
TRANSITION_TO = {
    "11": "To Do",
    "21": "In Progress",
    "31": "Done",
    "41": "Cancelled",
    "51": "Duplicate",
    "61": "To Do",
}


@dataclass(frozen=True)
class Write:
    """One Jira write: the issue it names ("summary" or "issue" id/key), its kind, and what it shows."""

    named_by: str | None
    name: str
    kind: str
    effects: frozenset[str]


def classify(entry: LedgerEntry) -> Write:
    body = entry.body if isinstance(entry.body, dict) else {}
    fields = body.get("fields") or {}
    priority = (fields.get("priority") or {}).get("name")
    if entry.method == "POST" and entry.path == "/rest/api/3/issue":
        effects = {"create", f"priority:{priority}"} if priority else {"create"}
        return Write("summary", str(fields.get("summary")), "create", frozenset(effects))
    found = ISSUE_PATH.match(entry.path)
    if found is None:
        return Write(None, "", f"other:{entry.method} {entry.path}", frozenset())
    if found.group(2):
        transition = str((body.get("transition") or {}).get("id"))
        status = TRANSITION_TO.get(transition, transition)
        return Write("issue", found.group(1), f"transition:{transition}", frozenset({f"status:{status}"}))
    if entry.method == "PUT" and priority:
        return Write("issue", found.group(1), f"priority:{priority}", frozenset({f"priority:{priority}"}))
    return Write("issue", found.group(1), f"{entry.method.lower()} issue", frozenset())


def match(changes: list[Change], jira: JiraState) -> int:
    """Fill in `write_at` where the Jira write has happened; returns how many changes are still missing."""
    writes = jira.ledger.writes()
    with jira.lock:
        summaries = {i.id: i.summary for i in jira.issues.values()}
        summaries |= {i.key: i.summary for i in jira.issues.values()}
    seen: dict[str, list[tuple[datetime, Write]]] = defaultdict(list)
    for entry in writes:
        write = classify(entry)
        title = write.name if write.named_by == "summary" else summaries.get(write.name)
        if title is not None:
            seen[title].append((entry.at, write))
    missing = 0
    for change in changes:
        if change.write_at is not None:
            continue
        found = next(
            (
                (at, write)
                for at, write in seen.get(change.title, ())
                if at >= change.at and write.effects & set(change.expect)
            ),
            None,
        )
        if found is None:
            missing += 1
        else:
            change.write_at = found[0]
            change.write_kind = found[1].kind
    return missing


def webhook_answers(v: Vendors, changes: list[Change]) -> list[float]:
    """How long the server took to answer each PagerDuty webhook (ms). The sandbox sends them one at a time,
    so a webhook goes out when the change is made or when the one before it is answered, whichever is
    later; the ledger records when the answer came."""
    made = {(c.pd_id, PD_EVENT[c.kind]): c.at for c in changes}
    answers: list[float] = []
    previous: datetime | None = None
    for entry in v.pd_state.ledger.entries(direction="out"):
        event = entry.body.get("event", {}) if isinstance(entry.body, dict) else {}
        data = event.get("data") or {}
        at = made.get((str(data.get("id")), str(event.get("event_type"))))
        if at is not None:
            sent = max(at, previous) if previous is not None else at
            answers.append((entry.at - sent).total_seconds() * 1000)
        previous = entry.at
    return answers


def settle(v: Vendors, quiet: float = 1.0, limit: float = 5.0) -> None:
    """Wait until neither sandbox has seen a request or sent a webhook for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = (len(v.pd_state.ledger.entries()), len(v.jira_state.ledger.entries()))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


# ---- statistics -------------------------------------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else math.nan,
        "mean_ms": sum(ordered) / len(ordered) if ordered else math.nan,
    }


def vendor_calls(v: Vendors, changes: int) -> dict[str, Any]:
    """What the server under test asked of each vendor API (the ledgers hold nothing else: control
    endpoints are not recorded), and the webhooks each sandbox sent."""
    jira_in = v.jira_state.ledger.entries(direction="in")
    pd_in = v.pd_state.ledger.entries(direction="in")
    jira_writes = [e for e in jira_in if e.method in WRITES and (e.status or 0) < 400]
    kinds = Counter(classify(e).kind for e in jira_writes)
    gets = Counter(
        "search" if e.path.endswith("/search/jql") else "transitions" if e.path.endswith("/transitions") else
        "issue" if ISSUE_PATH.match(e.path) else e.path
        for e in jira_in if e.method == "GET"
    )  # fmt: skip
    failed = [e for e in [*jira_in, *pd_in] if (e.status or 0) >= 400]
    webhooks_failed = [
        e
        for e in [*v.pd_state.ledger.entries(direction="out"), *v.jira_state.ledger.entries(direction="out")]
        if e.status is None or e.status >= 300
    ]
    return {
        "changes": changes,
        "jira_writes": len(jira_writes),
        "jira_gets": sum(gets.values()),
        "jira_writes_per_change": len(jira_writes) / max(changes, 1),
        "jira_gets_per_change": sum(gets.values()) / max(changes, 1),
        "jira_write_kinds": dict(sorted(kinds.items())),
        "jira_get_kinds": dict(sorted(gets.items())),
        "pagerduty_writes": sum(1 for e in pd_in if e.method in WRITES and (e.status or 0) < 400),
        "pagerduty_gets": sum(1 for e in pd_in if e.method == "GET"),
        "vendor_errors": len(failed),
        "vendor_error_sample": [f"{e.method} {e.path} -> {e.status}" for e in failed[:3]],
        "pagerduty_webhooks": len(v.pd_state.ledger.entries(direction="out")),
        "jira_webhooks": len(v.jira_state.ledger.entries(direction="out")),
        "webhooks_failed": len(webhooks_failed),
        "webhook_failure_sample": [f"{e.path} -> {e.status} {e.note or ''}" for e in webhooks_failed[:3]],
    }


# ---- the hub's own timestamps -----------------------------------------------------------------------


STAGES = (
    ("webhook stored", "PagerDuty call returned -> inbox row written (sandbox sender, HTTP, receive)"),
    ("applied", "inbox row written -> applied and committed (inbox worker)"),
    ("push started", "applied -> dispatcher starts the Jira delivery (wake, claim)"),
    ("Jira write", "push started -> the Jira write lands (reads, vendor calls before it)"),
    ("push done", "Jira write -> attempt recorded (calls after it, ref stored)"),
)


def _caused(change: Change, event: EventRow) -> bool:
    """Whether the hub event is the one this change made (one change of each kind per incident)."""
    body = event.payload.get(event.type) if isinstance(event.payload, dict) else None
    status = body.get("new_status") if isinstance(body, dict) else None
    kind = str(event.type)
    if change.kind == "trigger":
        return kind == "incident_created"
    if change.kind == "priority":
        return kind in ("incident_escalated", "incident_updated")
    wanted = "ACKNOWLEDGED" if change.kind == "acknowledge" else "RESOLVED"
    return kind == "incident_status_changed" and status == wanted


def hub_stages(url: str, changes: list[Change], v: Vendors) -> dict[str, Any]:
    """Per measured change, the time spent in each stage, from the hub's inbox, delivery and attempt rows
    and the PagerDuty webhook that carried it; plus counts of what the inbox and the dispatcher did."""
    webhook: dict[tuple[str, str], str] = {}
    for entry in v.pd_state.ledger.entries(direction="out"):
        event = (entry.body or {}).get("event", {}) if isinstance(entry.body, dict) else {}
        data = event.get("data") or {}
        if data.get("type") == "incident":
            webhook.setdefault((str(data.get("id")), str(event.get("event_type"))), str(event.get("id")))
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            inbox = {r.dedup_key: r for r in session.scalars(select(InboxRow))}
            refs = {
                r.external_id: r.incident_id
                for r in session.scalars(
                    select(ExternalRefRow).where(ExternalRefRow.connector_id == "pagerduty")
                )
            }
            deliveries: dict[str, list[tuple[DeliveryRow, EventRow]]] = defaultdict(list)
            for d, e in session.execute(
                select(DeliveryRow, EventRow)
                .join(EventRow, EventRow.id == DeliveryRow.event_id)
                .where(DeliveryRow.target_kind == "connector")
                .order_by(DeliveryRow.id)
            ):
                deliveries[d.ordering_key].append((d, e))
            attempts: dict[int, list[DeliveryAttemptRow]] = defaultdict(list)
            for a in session.scalars(select(DeliveryAttemptRow).order_by(DeliveryAttemptRow.id)):
                attempts[a.delivery_id].append(a)
            every = [d for rows in deliveries.values() for d, _ in rows]
            inbox_rows = list(inbox.values())
            write_back = _write_back(session, [pair for rows in deliveries.values() for pair in rows])
    finally:
        engine.dispose()
    stages: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    unexplained = 0
    for change in changes:
        if not change.measured or change.write_at is None or change.collapsed:
            continue  # a collapsed change was shown by another change's push, before its own started
        row = inbox.get(webhook.get((change.pd_id, PD_EVENT[change.kind]), ""))
        incident_id = refs.get(change.pd_id)
        if row is None or row.processed_at is None or incident_id is None:
            unexplained += 1
            continue
        own = [
            (d, e) for d, e in deliveries.get(incident_id, []) if d.target_id == "jira" and _caused(change, e)
        ]
        tried = attempts.get(own[0][0].id) if own else None
        if not tried:
            unexplained += 1
            continue
        first = tried[0]
        points = [
            change.at,
            row.received_at,
            row.processed_at,
            first.started_at,
            change.write_at,
            first.started_at + timedelta(milliseconds=first.duration_ms),
        ]
        for (name, _), start, end in zip(STAGES, points, points[1:], strict=False):
            change.stages[name] = (end - start).total_seconds() * 1000
            stages[name].append(change.stages[name])
    jira_deliveries = [d for d in every if d.target_id == "jira"]
    return {
        "stages": {name: distribution(values) for name, values in stages.items()},
        "unexplained": unexplained,
        "inbox": {
            connector: dict(
                Counter(f"{r.state}: {r.error or '-'}" for r in inbox_rows if r.connector_id == connector)
            )
            for connector in ("pagerduty", "jira")
        },
        "inbox_retried": sum(1 for r in inbox_rows if r.attempts),
        "deliveries": dict(Counter(f"{d.target_id} {d.state}" for d in every)),
        "jira_deliveries_per_change": len(jira_deliveries) / max(len(changes), 1),
        "jira_deliveries_without_call": sum(
            1 for d in jira_deliveries if d.state == "delivered" and d.last_status_code is None
        ),
        "delivery_attempts": sum(len(a) for a in attempts.values()),
        "write_back": write_back,
    }


def _said_from(message: str) -> str:
    """The connector a status change names (`…: from jira`), or "-"."""
    found = re.search(r"from (\w+)$", message)
    return found.group(1) if found else "-"


def _write_back(session: Session, deliveries: list[tuple[DeliveryRow, EventRow]]) -> dict[str, Any]:
    """What made the hub queue deliveries to the source (PagerDuty): every change in this benchmark comes
    from PagerDuty, so any hub change with another origin (Jira, or none) is news the hub should not have
    found. Per delivery: the event, and the timeline rows of its incident written with it."""
    to_source = [(d, e) for d, e in deliveries if d.target_id == "pagerduty"]
    incidents = {e.incident_id for _, e in to_source if e.incident_id}
    timeline: dict[str, list[TimelineRow]] = defaultdict(list)
    if incidents:
        for t in session.scalars(
            select(TimelineRow).where(TimelineRow.incident_id.in_(incidents)).order_by(TimelineRow.id)
        ):
            timeline[t.incident_id].append(t)
    causes: Counter[str] = Counter()
    sample: list[str] = []
    for _, e in to_source:
        near = [
            t
            for t in timeline.get(e.incident_id or "", [])
            if abs((t.timestamp - e.created_at).total_seconds()) < 0.5 and t.origin_connector != "pagerduty"
        ]
        body = e.payload.get(e.type) or {}
        changed = sorted((body.get("changes") or {}).keys()) if isinstance(body, dict) else []
        origin = ",".join(sorted({t.origin_connector or _said_from(t.message) for t in near})) or "?"
        causes[f"{e.type} {changed} origin {origin}"] += 1
        if len(sample) < 8:
            sample.append(
                f"{e.created_at:%H:%M:%S.%f} {e.incident_id} {e.type} {changed}: "
                + " | ".join(f"{t.origin_connector} {t.author}: {t.message[:80]}" for t in near)
            )
    runs = [
        f"{r.connector_id} {r.kind} {r.started_at:%H:%M:%S}-{r.ended_at:%H:%M:%S} examined {r.examined} "
        f"repaired {r.drift_repaired}"
        for r in session.scalars(select(ReconciliationRunRow).order_by(ReconciliationRunRow.id))
        if r.ended_at is not None
    ]
    causes_seen = dict(causes.most_common())
    return {"deliveries": len(to_source), "causes": causes_seen, "sample": sample, "runs": runs}


# ---- one run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup: float
    rate: float
    gap: float
    drain: float
    urgency: str
    latency_ms: float
    wait_quiet: float
    profile: Path | None
    tuning: dict[str, Any]
    window: float = 10.0


@dataclass
class Run:
    target: str
    db: str
    rate: float
    result: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.target}-{self.db}-{self.rate:g}"


class InboxWatch:
    """Every second, from the hub's database: webhooks pending in its inbox and the oldest one's age."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.samples: list[tuple[datetime, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="inbox-watch", daemon=True)

    def __enter__(self) -> InboxWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                with Session(self.engine) as session:
                    pending, oldest = session.execute(
                        select(func.count(), func.min(InboxRow.received_at)).where(
                            InboxRow.state == "pending"
                        )
                    ).one()
            except Exception as error:  # the hub may hold SQLite's lock for a moment: skip a sample
                print(f"  inbox watch: {type(error).__name__}", file=sys.stderr)
                continue
            now = datetime.now(UTC)
            age = (now - oldest.replace(tzinfo=UTC)).total_seconds() * 1000 if oldest is not None else 0.0
            self.samples.append((now, int(pending), max(age, 0.0)))


def lag_windows(changes: list[Change], samples: list[tuple[datetime, int, float]], window: float) -> list[
    dict[str, Any]
]:  # fmt: skip
    """Per `window` seconds from the first change: changes made, their p99, and the inbox's worst."""
    if not changes:
        return []
    first = changes[0].at
    rows: dict[int, dict[str, Any]] = {}
    for change in changes:
        slot = int((change.at - first).total_seconds() // window)
        row = rows.setdefault(slot, {"changes": [], "pending": 0, "oldest_ms": 0.0})
        row["changes"].append(change)
    for at, pending, age in samples:
        slot = int((at - first).total_seconds() // window)
        if slot in rows:
            rows[slot]["pending"] = max(rows[slot]["pending"], pending)
            rows[slot]["oldest_ms"] = max(rows[slot]["oldest_ms"], age)
    result = []
    for slot in sorted(rows):
        made = rows[slot]["changes"]
        shown = sorted(c.propagation_ms for c in made if c.propagation_ms is not None)
        result.append(
            {
                "from_s": slot * window,
                "changes": len(made),
                "lost": len(made) - len(shown),
                "p50_ms": percentile(shown, 50),
                "p99_ms": percentile(shown, 99),
                "max_pending": rows[slot]["pending"],
                "oldest_pending_ms": rows[slot]["oldest_ms"],
            }
        )
    return result


def drive(
    server: Server, v: Vendors, options: Options, tag: str, inbox_url: str | None = None
) -> tuple[list[Change], dict[str, Any]]:
    """Make the changes, sampling CPU over the measured window (and the hub's inbox, given its database);
    then wait for Jira to show them all."""
    rng = random.Random(tag)
    busy_before = wait_quiet(options.wait_quiet) if options.wait_quiet else background_busy()
    if busy_before > 0.10:
        print(f"  warning: the machine is {busy_before:.0%} busy before the run: figures will be worse")
    total = round((options.warmup + options.seconds) * options.rate)
    first_measured = round(options.warmup * options.rate)
    samples: dict[str, tuple[float, dict[int, float], float, float, float, float]] = {}
    wall: dict[str, datetime] = {}
    spy: subprocess.Popen[bytes] | None = None

    def sample(mark: str) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, all_ = _machine_busy()
        own = usage.ru_utime + usage.ru_stime
        wall[mark] = datetime.now(UTC)
        samples[mark] = (
            _cpu_seconds(server.process.pid),
            _postgres_cpu_seconds(),
            own,
            busy,
            all_,
            time.monotonic(),
        )

    watch = InboxWatch(inbox_url) if inbox_url is not None else None
    try:
        with control_client(v.pd) as ui, watch or contextlib.nullcontext():
            stream = Stream(ui, tag, options.gap, options.urgency, rng)
            start = time.monotonic()
            behind = 0.0
            for n in range(total):
                pause = start + n / options.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    behind = max(behind, -pause)
                if n == first_measured:
                    sample("start")
                    if options.profile is not None and server.name == "hub":
                        spy = start_profiler(server.process.pid, options.profile, tag, options.seconds)
                stream.next(measured=n >= first_measured)
            sample("end")
            # PagerDuty's webhooks go out one at a time: those not sent yet wait for the server's answers.
            backlog = len(stream.changes) - len(v.pd_state.ledger.entries(direction="out"))
        changes = stream.changes
        deadline = time.monotonic() + options.drain
        while match(changes, v.jira_state) and time.monotonic() < deadline:
            time.sleep(0.25)
        settle(v)
        match(changes, v.jira_state)
        if spy is not None:
            spy.wait(timeout=options.seconds + 30)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
    measured = [c for c in changes if c.measured]
    count = max(len(measured), 1)
    (server0, pg0, own0, busy0, all0, at0), (server1, pg1, own1, busy1, all1, at1) = (
        samples["start"],
        samples["end"],
    )
    window = at1 - at0
    server_s, postgres_s, own_s = server1 - server0, _postgres_cpu_delta(pg0, pg1), own1 - own0
    machine_busy = (busy1 - busy0) / max(all1 - all0, 1)
    propagated = [c for c in measured if c.propagation_ms is not None]
    # Throughput achieved: changes (warm-up ones too) that Jira came to show during the window.
    shown = sum(1 for c in changes if c.write_at is not None and wall["start"] <= c.write_at < wall["end"])
    result: dict[str, Any] = {
        "offered_rate": options.rate,
        "measured_changes": len(measured),
        "achieved_rate": len(measured) / window if window else math.nan,
        "shown_rate": shown / window if window else math.nan,
        "max_behind_schedule_ms": behind * 1000,
        "webhook_backlog_at_end": backlog,
        "lost": len(measured) - len(propagated),
        "lost_by_kind": dict(Counter(c.kind for c in measured if c.write_at is None)),
        "collapsed": dict(Counter(f"{c.kind} by {c.write_kind}" for c in measured if c.collapsed)),
        "propagation": distribution([c.propagation_ms for c in propagated if c.propagation_ms is not None]),
        "by_kind": {
            kind: distribution([c.propagation_ms for c in propagated if c.kind == kind and c.propagation_ms])
            for kind in KINDS
        },
        "control_call": distribution([c.control_ms for c in measured]),
        "webhook_answer": distribution(webhook_answers(v, measured)),
        "calls": vendor_calls(v, len(changes)),
        "background_busy": busy_before,
        "server_cpu_ms_per_change": server_s * 1000 / count,
        "server_cpu_ms_per_shown": server_s * 1000 / max(shown, 1),
        "server_cpu_util": server_s / window,
        "postgres_cpu_ms_per_change": postgres_s * 1000 / count,
        "sandboxes_cpu_ms_per_change": own_s * 1000 / count,
        "sandboxes_cpu_util": own_s / window,
        "machine_busy": machine_busy,
        "rest_cpu_util": machine_busy * len(os.sched_getaffinity(0))
        - (server_s + postgres_s + own_s) / window,
    }
    if watch is not None:
        result["lag"] = lag_windows(changes, watch.samples, options.window)
        result["window"] = options.window
    return changes, result


def start_profiler(pid: int, directory: Path, tag: str, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        print("  (py-spy not found: pip install py-spy into .venv to profile)")
        return None
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{tag}.txt"
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--gil"]
    command += ["--rate", "200", "--format", "raw", "--output", str(output), "--nonblocking"]
    print(f"  profiling the hub into {output}")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hub_log(log: Path) -> dict[str, Any]:
    """Warnings and errors the hub logged (JSON lines): how many of each, by message and exception."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "ERROR" in line:
                found[f"ERROR (not JSON) {line[:200]}"] += 1
            continue
        if not isinstance(record, dict) or record.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        # The exception's own line, not the traceback or SQLAlchemy's "Background on this error" link.
        causes = EXCEPTION_LINE.findall(str(record.get("exc_info") or ""))
        cause = causes[-1] if causes else ""
        found[f"{record['level']} {record.get('name')}: {record.get('message')} {cause[:300]}".strip()] += 1
    return {"count": sum(found.values()), "kinds": dict(found.most_common())}


def relay_stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.base}/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
        return stats


@contextmanager
def database_url(db: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    if db == "sqlite":
        yield f"sqlite:///{workdir / 'hub.db'}"
    else:
        with postgres_schemas(postgres_url, ["hub"]) as urls:
            yield urls["hub"]


def run_hub(v: Vendors, db: str, workdir: Path, options: Options, postgres_url: str) -> Run:
    print(f"[{db}] hub: {options.rate:g} changes/s, {options.warmup:g} s warm-up + {options.seconds:g} s")
    workdir.mkdir(parents=True)
    run = Run("hub", db, options.rate)
    with database_url(db, workdir, postgres_url) as url:
        env = child_env(
            hub_env(url, workdir / "hub-data") | hub_config(v, workdir / "connectors.yaml", options.tuning)
        )
        port = free_port()
        command = [str(BIN / "incident-hub"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        v.point_webhooks(f"{base}/webhooks/pagerduty", f"{base}/webhooks/jira")
        v.clear_ledgers()
        with serving("hub", command, env, port, workdir / "hub.log") as server:
            run.changes, run.result = drive(server, v, options, run.label, inbox_url=url)
        run.result["hub"] = hub_stages(url, run.changes, v)
        run.result["hub_log"] = hub_log(workdir / "hub.log")
    print_run(run)
    return run


def run_relay(v: Vendors, workdir: Path, options: Options) -> Run:
    print(f"[-] relay: {options.rate:g} changes/s, {options.warmup:g} s warm-up + {options.seconds:g} s")
    workdir.mkdir(parents=True)
    run = Run("relay", "-", options.rate)
    port = free_port()
    env = child_env(
        dict(
            os.environ,
            RELAY_JIRA_URL=v.jira.url,
            RELAY_JIRA_CA=str(v.jira.ca_bundle),
            RELAY_JIRA_EMAIL=JIRA_EMAIL,
            RELAY_JIRA_TOKEN=v.tokens["jira"],
        )
    )
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "relay_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    v.point_webhooks(f"http://127.0.0.1:{port}/pagerduty", f"http://127.0.0.1:{port}/jira")
    v.clear_ledgers()
    with serving("relay", command, env, port, workdir / "relay.log") as server:
        run.changes, run.result = drive(server, v, options, run.label)
        run.result["relay"] = relay_stats(server)
    print_run(run)
    return run


# ---- report -----------------------------------------------------------------------------------------

DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "-": "-"}


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _p50_p99(d: dict[str, float]) -> str:
    return f"{_ms(d['p50_ms'])} / {_ms(d['p99_ms'])}"


def print_run(run: Run) -> None:
    r = run.result
    p, c = r["propagation"], r["calls"]
    lines = [
        f"  {run.target}: {r['measured_changes']} changes at {r['achieved_rate']:.1f}/s (offered "
        f"{r['offered_rate']:g}/s, at most {r['max_behind_schedule_ms']:.0f} ms behind schedule; PagerDuty "
        f"webhooks not yet sent at the end: {r['webhook_backlog_at_end']})",
        f"    propagation p50 {_ms(p['p50_ms'])} ms, p90 {_ms(p['p90_ms'])} ms, p99 {_ms(p['p99_ms'])} ms, "
        f"max {_ms(p['max_ms'])} ms; lost {r['lost']} {r['lost_by_kind'] or ''}; shown by a write made "
        f"for a later change (collapsed): {sum(r['collapsed'].values())} {r['collapsed'] or ''}",
        "    by kind (p50 / p99 ms): " + ", ".join(f"{k} {_p50_p99(d)}" for k, d in r["by_kind"].items()),
        f"    Jira per change: {c['jira_writes_per_change']:.2f} writes {c['jira_write_kinds']}",
        f"      {c['jira_gets_per_change']:.2f} GETs {c['jira_get_kinds']}",
        f"    PagerDuty API calls by the server: {c['pagerduty_writes']} writes (echoes), "
        f"{c['pagerduty_gets']} GETs; vendor errors {c['vendor_errors']} {c['vendor_error_sample']}",
        f"    write-back to source: {c['pagerduty_writes']} (writes to PagerDuty, where every change comes "
        "from: must be 0)",
        f"    webhooks sent: PagerDuty {c['pagerduty_webhooks']}, Jira {c['jira_webhooks']}, not accepted "
        f"{c['webhooks_failed']} {c['webhook_failure_sample']}",
        f"    Jira showed {r['shown_rate']:.1f} changes/s during the window\n"
        f"    CPU per change: server {r['server_cpu_ms_per_change']:.1f} ms per change made, "
        f"{r['server_cpu_ms_per_shown']:.1f} ms per change shown ({r['server_cpu_util']:.0%} of a "
        f"core), PostgreSQL {r['postgres_cpu_ms_per_change']:.1f} ms, sandboxes and driver "
        f"{r['sandboxes_cpu_ms_per_change']:.1f} ms ({r['sandboxes_cpu_util']:.0%} of a core)",
        f"    machine busy {r['machine_busy']:.0%} (before the run {r['background_busy']:.0%}; "
        f"other processes {max(r['rest_cpu_util'], 0):.0%} of a core); PagerDuty control call p50 "
        f"{r['control_call']['p50_ms']:.1f} ms; server's answer to a PagerDuty webhook p50 / p99 "
        f"{_p50_p99(r['webhook_answer'])} ms",
    ]
    hub = r.get("hub")
    if hub:
        lines += [
            "    hub stages (p50 / p99 ms): "
            + ", ".join(f"{n} {_p50_p99(d)}" for n, d in hub["stages"].items()),
            f"    hub deliveries: {hub['deliveries']}, to Jira per change "
            f"{hub['jira_deliveries_per_change']:.2f} ({hub['jira_deliveries_without_call']} made no call), "
            f"attempts {hub['delivery_attempts']}",
            f"    hub deliveries to PagerDuty (write-back): {hub['write_back']['deliveries']} "
            f"{hub['write_back']['causes']}",
            *(f"      {line}" for line in hub["write_back"]["sample"]),
            *(f"      reconciled: {line}" for line in hub["write_back"]["runs"]),
            f"    hub inbox, PagerDuty: {hub['inbox']['pagerduty']}",
            f"    hub inbox, Jira: {hub['inbox']['jira']} (rows retried: {hub['inbox_retried']})",
            f"    hub log: {r['hub_log']['count'] or 'no'} warnings and errors",
            *(f"      {n} x {kind}" for kind, n in r["hub_log"]["kinds"].items()),
        ]
    if "relay" in r:
        lines.append(f"    relay: {r['relay']}")
    if r.get("lag"):
        lines += ["    inbox lag over time:", *("      " + line for line in lag_table(r["lag"]))]
    print("\n".join(lines), flush=True)


def lag_table(lag: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| from (s) | changes | lost | p50 (ms) | p99 (ms) | most pending in the inbox "
        "| oldest pending (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in lag:
        lines.append(
            f"| {w['from_s']:g} | {w['changes']} | {w['lost']} | {_ms(w['p50_ms'])} | {_ms(w['p99_ms'])} "
            f"| {w['max_pending']} | {w['oldest_pending_ms']:.0f} |"
        )
    return lines


def summary(runs: list[Run], info: dict[str, str], options: Options) -> str:
    lines = [
        f"date: {info['date']}   machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"Linux {info['kernel']}, commit {info['commit']}",
        f"versions: {info['packages']}, SQLite {info['sqlite']}"
        + (f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""),
        f"load: {options.warmup:g} s warm-up, {options.seconds:g} s measured, {options.gap:g} s between "
        f"changes to one incident, urgency {options.urgency}, sandbox latency {options.latency_ms:g} ms "
        f"per call, connector settings {options.tuning or 'as in the demo (defaults)'}",
        "",
        "| Database | Server | Offered (changes/s) | Shown in Jira (changes/s) | p50 (ms) | p90 (ms) "
        "| p99 (ms) | max (ms) | Lost | Collapsed | Jira writes / change | Jira GETs / change | Echoes "
        "| Server CPU (ms / change shown) | p50 / relay p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    relays = {run.rate: run for run in runs if run.target == "relay"}
    for run in runs:
        r = run.result
        p, c = r["propagation"], r["calls"]
        relay = relays.get(run.rate)
        ratio = ""
        if relay is not None and run.target == "hub" and relay.result["propagation"]["p50_ms"]:
            ratio = f"{p['p50_ms'] / relay.result['propagation']['p50_ms']:.1f}x"
        lines.append(
            f"| {DB_NAMES[run.db]} | {run.target} | {run.rate:g} | {r['shown_rate']:.1f} "
            f"| {_ms(p['p50_ms'])} | {_ms(p['p90_ms'])} | {_ms(p['p99_ms'])} | {_ms(p['max_ms'])} "
            f"| {r['lost']} | {sum(r['collapsed'].values())} | {c['jira_writes_per_change']:.2f} "
            f"| {c['jira_gets_per_change']:.2f} | {c['pagerduty_writes']} "
            f"| {r['server_cpu_ms_per_shown']:.1f} | {ratio} |"
        )
    lines += [
        "",
        "| Database | Server | Offered (changes/s) | "
        + " | ".join(f"{k} p50 / p99 (ms)" for k in KINDS)
        + " |",
        "|---|---|---:|" + "---:|" * len(KINDS),
    ]
    for run in runs:
        by_kind = run.result["by_kind"]
        lines.append(
            f"| {DB_NAMES[run.db]} | {run.target} | {run.rate:g} | "
            + " | ".join(_p50_p99(by_kind[k]) for k in KINDS)
            + " |"
        )
    hubs = [run for run in runs if run.target == "hub"]
    if hubs:
        lines += [
            "",
            "Where a hub change spends its time (each stage's own p50 / p99, ms):",
            "",
            "| Database | Offered (changes/s) | " + " | ".join(name for name, _ in STAGES) + " |",
            "|---|---:|" + "---:|" * len(STAGES),
        ]
        for run in hubs:
            stages = run.result["hub"]["stages"]
            lines.append(
                f"| {DB_NAMES[run.db]} | {run.rate:g} | "
                + " | ".join(_p50_p99(stages[name]) for name, _ in STAGES)
                + " |"
            )
        lines += ["", *(f"- {name}: {what}" for name, what in STAGES), ""]
        for run in hubs:
            r = run.result
            p99, calls = r["propagation"]["p99_ms"], r["calls"]["jira_writes_per_change"]
            echoes = r["calls"]["pagerduty_writes"]
            verdicts = [
                f"p99 < {TARGET_P99_MS:g} ms {'met' if p99 < TARGET_P99_MS else 'MISSED'} ({_ms(p99)} ms)",
                f"Jira writes per change {TARGET_CALLS:.2f} "
                f"{'met' if abs(calls - TARGET_CALLS) < 0.005 else 'MISSED'} ({calls:.2f})",
                f"write-back to source: {echoes} ({'met' if echoes == 0 else 'MISSED'}: must be 0)",
                f"lost {r['lost']}",
            ]
            lines.append(f"{DB_NAMES[run.db]} hub at {run.rate:g}/s: " + "; ".join(verdicts))
        for run in hubs:
            if run.result.get("lag"):
                lines += ["", f"Inbox lag over time, {DB_NAMES[run.db]} hub at {run.rate:g}/s:", ""]
                lines += lag_table(run.result["lag"])
    return "\n".join(lines)


def json_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """The result rows (bench/run_all.py's format): per hub run, p99 against the relay's in the same run,
    and how flat the run was (the last full window's p99 and oldest pending webhook against the first's)."""
    relays = {run.rate: run for run in runs if run.target == "relay"}
    rows: list[dict[str, Any]] = []
    for run in runs:
        if run.target != "hub":
            continue
        r = run.result
        p99 = r["propagation"]["p99_ms"]
        relay = relays.get(run.rate)
        base = relay.result["propagation"]["p99_ms"] if relay is not None else None
        rows.append(
            row(
                "propagation",
                f"propagation p99 at {run.rate:g} changes/s, {run.db}",
                p99,
                "ms",
                target=TARGET_P99_MS,
                baseline=base,
                higher_is_better=False,
                note=f"baseline: the bare relay's p99; lost {r['lost']}, "
                f"{r['shown_rate']:.1f} changes/s shown",
            )
        )
        write_back = r["calls"]["pagerduty_writes"]
        rows.append(
            row(
                "propagation",
                f"write-back to source at {run.rate:g} changes/s, {run.db}",
                write_back,
                "writes",
                target=0.0,
                higher_is_better=False,
                note="writes to PagerDuty, where every change comes from (there must be none)",
            )
        )
        full = [w for w in r.get("lag", []) if w["changes"] >= 0.8 * run.rate * (r.get("window") or 10)]
        if len(full) >= 2:
            first, last = full[0], full[-1]
            rows.append(
                row(
                    "propagation",
                    f"p99 in the last window / first window, {run.db}",
                    last["p99_ms"] / first["p99_ms"] if first["p99_ms"] else math.nan,
                    "x",
                    target=1.5,
                    higher_is_better=False,
                    note=f"flat over the run: {first['p99_ms']:.0f} ms -> {last['p99_ms']:.0f} ms; "
                    f"oldest pending webhook {first['oldest_pending_ms']:.0f} ms -> "
                    f"{last['oldest_pending_ms']:.0f} ms",
                )
            )
            rows.append(
                row(
                    "propagation",
                    f"oldest pending webhook, worst window, {run.db}",
                    max(w["oldest_pending_ms"] for w in full),
                    "ms",
                    higher_is_better=False,
                    note="sampled every second from the hub's inbox",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite", help="the hub's")
    parser.add_argument("--target", choices=["hub", "relay", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per server")
    parser.add_argument(
        "--minutes", type=float, help="measured time per server, in minutes (overrides --seconds)"
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds per row of the inbox lag table")
    parser.add_argument(
        "--quick", action="store_true", help="the hub alone (no relay), 20 s measured, 15 s drain (~1 min)"
    )
    parser.add_argument("--json-out", type=Path, help="write the result rows (bench/run_all.py's format)")
    parser.add_argument("--warmup", type=float, default=5.0, help="changes made before it do not count")
    parser.add_argument(
        "--rate",
        default="20",
        help="changes per second made in PagerDuty; several (e.g. 2,5,10,20) run one after the other",
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every vendor API call")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between changes to one incident")
    parser.add_argument("--drain", type=float, default=30.0, help="how long to wait for the last changes")
    parser.add_argument(
        "--urgency",
        choices=["matching", "high"],
        default="matching",
        help="urgency of new incidents: the one the hub's mapping gives their priority (P1-P2 high, P3-P4 "
        "low), or always high (PagerDuty's default urgency rule; see docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        default=25.0,
        help="the connectors' rate_limit_per_second (default 25: a change costs Jira about 1.4 calls, so "
        "20 changes/s need more than the connector default of 10 calls/s; earlier runs used 25 too)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        help="the connectors' max_concurrency (default: the connector default, 4)",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other work on the machine to stop (busy < 10%%)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results (and every change) here")
    parser.add_argument("--profile", type=Path, help="py-spy --gil the hub over the window (skews figures)")
    parser.add_argument(
        "--certifi-webhooks",
        action="store_true",
        help="let the sandboxes load certifi for every webhook they send (33 ms of CPU each here)",
    )
    args = parser.parse_args()
    if args.minutes is not None:
        args.seconds = args.minutes * 60
    if args.quick:
        args.target, args.seconds, args.warmup, args.drain = "hub", 20.0, 3.0, 15.0
    signal.signal(signal.SIGTERM, _on_sigterm)
    rates = [float(rate) for rate in str(args.rate).split(",")]
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    base = Options(
        args.seconds,
        args.warmup,
        rates[0],
        args.gap,
        args.drain,
        args.urgency,
        args.latency_ms,
        args.wait_quiet,
        args.profile,
        {
            name: value
            for name, value in (
                ("rate_limit_per_second", args.rate_limit),
                ("max_concurrency", args.max_concurrency),
            )
            if value is not None
        },
        args.window,
    )

    info = machine()
    info["packages"] += ", " + ", ".join(f"{n} {metadata.version(n)}" for n in ("jira", "requests", "httpx"))
    if "postgresql" in dbs and args.target != "relay":
        info["postgresql"] = postgres_version(args.postgres_url)
    print(f"{info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  python={info['python']}  "
          f"commit={info['commit']}", flush=True)  # fmt: skip
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
        workdir = Path(tmp)
        servers = {"hub": dbs, "relay": ["-"], "both": [*dbs, "-"]}[args.target]  # "-": the relay
        for rate, db in [(rate, db) for rate in rates for db in servers]:
            # Fresh sandboxes for every server: a hub's reconciler (its first pass looks back an hour) would
            # take the objects an earlier run left in them for changes it missed, and import them.
            label = f"{'relay' if db == '-' else f'hub-{db}'}-{rate:g}"
            with vendors(workdir / f"vendors-{label}", args.latency_ms) as v:
                print(f"PagerDuty sandbox {v.pd.url}, Jira sandbox {v.jira.url}", flush=True)
                if not args.certifi_webhooks:
                    # Read by httpx when the sandboxes' webhook sender makes its client (see the docstring).
                    os.environ["SSL_CERT_FILE"] = str(v.pd.ca_bundle)
                options = replace(base, rate=rate)
                if db == "-":
                    runs.append(run_relay(v, workdir / label, options))
                else:
                    runs.append(run_hub(v, db, workdir / label, options, args.postgres_url))
    print()
    print(summary(runs, info, base))
    if args.json:
        payload = {
            "machine": info,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": [{"db": r.db, "target": r.target, "rate": r.rate, **r.result} for r in runs],
            "changes": {
                r.label: [asdict(c) | {"propagation_ms": c.propagation_ms} for c in r.changes] for r in runs
            },
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if args.json_out:
        args.json_out.write_text(json.dumps(json_rows(runs), indent=2))
    written_back = {run.label: run.result["calls"]["pagerduty_writes"] for run in runs}
    if any(written_back.values()):
        print(f"FAILED: write-back to source: {sum(written_back.values())} {written_back}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except Stopped:
        print("terminated: servers and sandboxes stopped", file=sys.stderr)
        sys.exit(143)
