"""The second half of `incident-hub demo`: PagerDuty and Jira sandboxes kept in step through the hub.

Each step is done as a person would, in one vendor's UI (the sandbox's control API), and the time until
the other vendor shows the change is measured.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.jira import HUMAN_ACCOUNT_ID, SERVICE_ACCOUNT_ID, jira_sandbox
from incident_hub.sandbox.jira.model import JiraState
from incident_hub.sandbox.jira.render import adf_text
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, RESPONDER_ID, SERVICE_ID, pagerduty_sandbox
from incident_hub.sandbox.pagerduty.state import PagerDutyState

T = TypeVar("T")
JIRA_EMAIL = "hub@example.com"


class StepFailed(Exception):
    pass


def _wait(what: str, found: Callable[[], T | None], timeout: float = 15.0) -> tuple[T, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = found()
        if value:
            return value, (time.monotonic() - started) * 1000
        time.sleep(0.005)
    raise StepFailed(f"{what}: not seen within {timeout:.0f} s")


@dataclass
class Vendors:
    """The two sandboxes, connected to a hub, and a person's view of each vendor's UI."""

    pd: PagerDutyState
    jira: JiraState
    pd_ui: httpx.Client
    jira_ui: httpx.Client


def connect_vendors(stack: ExitStack, hub: Hub, hub_url: str, workdir: Path) -> Vendors:
    """Start PagerDuty and Jira sandboxes (closed with `stack`) and configure the hub's connectors to them."""
    tokens = {name: secrets.token_hex(16) for name in ("pd", "pd_hook", "jira", "jira_hook")}
    for name, value in tokens.items():
        os.environ[f"INCIDENT_HUB_DEMO_{name.upper()}"] = value
    pd_app, pd_state = pagerduty_sandbox(tokens["pd"], tokens["pd_hook"], f"{hub_url}/webhooks/pagerduty")
    jira_app, jira_state = jira_sandbox(
        JIRA_EMAIL, tokens["jira"], tokens["jira_hook"], f"{hub_url}/webhooks/jira"
    )
    pd = stack.enter_context(Sandbox(pd_app, pd_state, directory=workdir / "pagerduty"))
    jira = stack.enter_context(Sandbox(jira_app, jira_state, directory=workdir / "jira"))
    stack.callback(lambda: asyncio.run(hub.connectors.close()))
    hub.connectors.upsert(
        ConnectorConfig.model_validate(
            {
                "id": "pagerduty",
                "kind": "pagerduty",
                "base_url": pd.url,
                "ca_bundle": str(pd.ca_bundle),
                "credentials": {"env": "INCIDENT_HUB_DEMO_PD"},
                "webhook_secret": {"env": "INCIDENT_HUB_DEMO_PD_HOOK"},
                "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
            }
        )
    )
    hub.connectors.upsert(
        ConnectorConfig.model_validate(
            {
                "id": "jira",
                "kind": "jira",
                "base_url": jira.url,
                "ca_bundle": str(jira.ca_bundle),
                "credentials": {"env": "INCIDENT_HUB_DEMO_JIRA"},
                "webhook_secret": {"env": "INCIDENT_HUB_DEMO_JIRA_HOOK"},
                "options": {"email": JIRA_EMAIL, "project_key": "OPS", "hub_account_id": SERVICE_ACCOUNT_ID},
            }
        )
    )
    pd_ui = stack.enter_context(_ui(pd, "/_sandbox/pagerduty"))
    jira_ui = stack.enter_context(_ui(jira, "/_sandbox/jira"))
    return Vendors(pd_state, jira_state, pd_ui, jira_ui)


def run_sync(hub: Hub, hub_url: str, workdir: Path, say: Callable[[str], None]) -> bool:
    """Run the PagerDuty <-> Jira scenario against a running hub; True when every step arrived."""
    with ExitStack() as stack:
        vendors = connect_vendors(stack, hub, hub_url, workdir)
        say("\nPagerDuty and Jira sandboxes over HTTPS (throw-away CA)")
        try:
            _scenario(hub, vendors.pd, vendors.jira, vendors.pd_ui, vendors.jira_ui, say)
        except StepFailed as error:
            say(f"   FAILED: {error}")
            return False
        pd_writes, jira_writes = len(vendors.pd.ledger.writes()), len(vendors.jira.ledger.writes())
        # Two changes started in each system; each must cost exactly one write in the other, none back.
        exact = pd_writes == 2 and jira_writes == 2
        say(
            f"\n   hub writes: PagerDuty {pd_writes} (acknowledge, note), Jira {jira_writes} (create, Done): "
            + ("one per change, no echoes" if exact else "NOT one per change")
        )
        if not exact:
            return False
    return True


def _ui(sandbox: Sandbox, prefix: str) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
    return httpx.Client(
        base_url=sandbox.url + prefix, verify=trust, timeout=10, headers={"Connection": "close"}
    )


def _scenario(
    hub: Hub,
    pd: PagerDutyState,
    jira: JiraState,
    pd_ui: httpx.Client,
    jira_ui: httpx.Client,
    say: Callable[[str], None],
) -> None:
    triggered = pd_ui.post(
        "/incidents",
        json={
            "title": "Checkout API 5xx above 20%",
            "urgency": "high",
            "priority": "P1",
            "incident_key": "checkout/5xx",
        },
    )
    triggered.raise_for_status()
    pd_id = triggered.json()["incident"]["id"]
    started = time.monotonic()
    incident, hub_ms = _wait(
        "hub incident",
        lambda: next((i for i in hub.incidents.search().incidents if i.source == "pagerduty"), None),
    )
    issue, _ = _wait("Jira issue", lambda: next(iter(jira.issues.values()), None))
    jira_ms = (time.monotonic() - started) * 1000
    say(
        f"1. PagerDuty: monitoring triggers {pd_id} (P1)\n"
        f"   hub: {incident.number} {incident.severity} {incident.status}        after {hub_ms:6.0f} ms\n"
        f"   Jira: {issue.key} '{issue.summary}' priority {issue.priority.name}   after {jira_ms:6.0f} ms"
    )

    started = time.monotonic()
    jira_ui.post(f"/issues/{issue.key}/transitions", json={"actor": HUMAN_ACCOUNT_ID, "to": "In Progress"})
    _, ms = _wait("PagerDuty acknowledged", lambda: pd.incidents[pd_id].status == "acknowledged")
    say(f"2. Jira: Mia moves {issue.key} to In Progress\n   PagerDuty: {pd_id} acknowledged, {ms:6.0f} ms")

    jira_ui.post(
        f"/issues/{issue.key}/comments",
        json={"actor": HUMAN_ACCOUNT_ID, "body": "Rolling back deploy 2026.11.24-3"},
    )
    note, ms = _wait("PagerDuty note", lambda: next(iter(pd.incidents[pd_id].notes), None))
    say(f"3. Jira: Mia comments\n   PagerDuty note: '{note.content}'    after {ms:6.0f} ms")

    pd_ui.post(f"/incidents/{pd_id}/resolve", json={"actor": RESPONDER_ID, "resolution": "Rolled back"})
    _, ms = _wait("Jira Done", lambda: jira.issues[issue.id].status.name == "Done")
    say(f"4. PagerDuty: responder resolves {pd_id}\n   Jira: {issue.key} Done    after {ms:6.0f} ms")

    final = hub.incidents.get(str(incident.id))
    comments = [adf_text(c.body) for c in jira.issues[issue.id].comments]
    say(
        f"   hub: {final.number} {final.status}, version {final.version}; Jira comments {len(comments)}, "
        f"PagerDuty notes {len(pd.incidents[pd_id].notes)}"
    )
    if final.status.value != "RESOLVED" or len(comments) != 1 or len(pd.incidents[pd_id].notes) != 1:
        raise StepFailed("the systems do not agree at the end")
