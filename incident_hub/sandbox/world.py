"""Four vendor sandboxes connected to one hub, each seen as a person sees it in the vendor's UI.

Used by `incident-hub demo` and by the four-way tests: every vendor gets the same verbs (open, acknowledge,
set severity, add a note, resolve) played through its sandbox's control API as a person other than the
hub's own account, and the same reads (status, severity, notes, title) of what the vendor holds now, in
canonical words. The connectors are configured on the hub to reach the sandboxes over HTTPS.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import ssl
import uuid
from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.sandbox.common import Ledger, Sandbox
from incident_hub.sandbox.jira import HUMAN_ACCOUNT_ID, SERVICE_ACCOUNT_ID, jira_sandbox
from incident_hub.sandbox.jira.model import JiraState
from incident_hub.sandbox.jira.render import adf_text
from incident_hub.sandbox.opsgenie import opsgenie_sandbox
from incident_hub.sandbox.opsgenie.state import OpsgenieState
from incident_hub.sandbox.pagerduty import (
    HUB_EMAIL,
    HUB_USER_ID,
    PRIORITY_IDS,
    RESPONDER_ID,
    SERVICE_ID,
    pagerduty_sandbox,
)
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.sandbox.servicenow import servicenow_sandbox
from incident_hub.sandbox.servicenow.state import ServiceNowState

JIRA_EMAIL = "hub@example.com"
SERVICENOW_USER = "incident.hub"
VENDORS = ("pagerduty", "jira", "servicenow", "opsgenie")
# What a person picks for each severity, in each vendor's words.
_PD_PRIORITY = {
    Severity.SEV1_CRITICAL: "P1",
    Severity.SEV2_HIGH: "P2",
    Severity.SEV3_MEDIUM: "P3",
    Severity.SEV4_LOW: "P4",
}
_JIRA_PRIORITY = {
    Severity.SEV1_CRITICAL: "Highest",
    Severity.SEV2_HIGH: "High",
    Severity.SEV3_MEDIUM: "Medium",
    Severity.SEV4_LOW: "Low",
}
_SN_IMPACT_URGENCY = {
    Severity.SEV1_CRITICAL: ("1", "1"),
    Severity.SEV2_HIGH: ("1", "2"),
    Severity.SEV3_MEDIUM: ("2", "2"),
    Severity.SEV4_LOW: ("2", "3"),
}
_PD_LOG_STATUS = {
    "trigger_log_entry": "open",
    "acknowledge_log_entry": "working",
    "unacknowledge_log_entry": "open",
    "resolve_log_entry": "resolved",
}
_SN_PRIORITY = {"1": Severity.SEV1_CRITICAL, "2": Severity.SEV2_HIGH, "3": Severity.SEV3_MEDIUM}


class Side(ABC):
    """One vendor: a person acting in its UI, and what it holds now (status as open/working/resolved)."""

    name: str

    def __init__(self, sandbox: Sandbox, prefix: str) -> None:
        self.sandbox = sandbox
        trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
        self.ui = httpx.Client(
            base_url=sandbox.url + prefix, verify=trust, timeout=10, headers={"Connection": "close"}
        )

    @property
    def ledger(self) -> Ledger:
        return self.sandbox.state.ledger

    def writes(self) -> int:
        """Successful writes to the vendor's API: all of them the hub's (people act through the UI)."""
        return len(self.ledger.writes())

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.ui.post(path, json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    @abstractmethod
    def open(self, title: str, severity: Severity) -> str: ...
    @abstractmethod
    def acknowledge(self, ref: str) -> None: ...
    @abstractmethod
    def set_severity(self, ref: str, severity: Severity) -> None: ...
    @abstractmethod
    def add_note(self, ref: str, text: str) -> None: ...
    @abstractmethod
    def resolve(self, ref: str) -> None: ...
    @abstractmethod
    def refs(self) -> list[str]: ...
    @abstractmethod
    def title(self, ref: str) -> str: ...
    @abstractmethod
    def status(self, ref: str) -> str: ...
    @abstractmethod
    def severity(self, ref: str) -> Severity | None: ...
    @abstractmethod
    def notes(self, ref: str) -> list[str]: ...
    @abstractmethod
    def describe(self, ref: str) -> str:
        """The object as its UI lists it: its number and priority."""

    @abstractmethod
    def vendor_status(self, ref: str) -> str:
        """The status in the vendor's own words."""

    @abstractmethod
    def status_path(self, ref: str) -> list[str]:
        """The statuses (open/working/resolved) the object went through, from the vendor's own record of
        it (PagerDuty's log entries, Jira's change history, ServiceNow's audit, Opsgenie's alert log)."""

    def creates(self) -> int:
        """Successful create calls the vendor received."""
        call = self.sandbox.state.create_call
        assert call is not None, f"{self.name}: the sandbox names no create call"
        return sum(1 for e in self.ledger.writes() if e.method == call[0] and re.fullmatch(call[1], e.path))


class PagerDutySide(Side):
    name = "pagerduty"

    @property
    def state(self) -> PagerDutyState:
        state = self.sandbox.state
        assert isinstance(state, PagerDutyState)
        return state

    def open(self, title: str, severity: Severity) -> str:
        urgency = "high" if severity in (Severity.SEV1_CRITICAL, Severity.SEV2_HIGH) else "low"
        body = {
            "title": title,
            "urgency": urgency,
            "priority": _PD_PRIORITY[severity],
            "incident_key": uuid.uuid4().hex,
        }
        return str(self._post("/incidents", body)["incident"]["id"])

    def acknowledge(self, ref: str) -> None:
        self._post(f"/incidents/{ref}/acknowledge", {"actor": RESPONDER_ID})

    def set_severity(self, ref: str, severity: Severity) -> None:
        self._post(f"/incidents/{ref}/priority", {"actor": RESPONDER_ID, "priority": _PD_PRIORITY[severity]})

    def add_note(self, ref: str, text: str) -> None:
        self._post(f"/incidents/{ref}/notes", {"actor": RESPONDER_ID, "content": text})

    def resolve(self, ref: str) -> None:
        self._post(f"/incidents/{ref}/resolve", {"actor": RESPONDER_ID})

    def refs(self) -> list[str]:
        return list(self.state.incidents)

    def title(self, ref: str) -> str:
        return self.state.incidents[ref].title

    def status(self, ref: str) -> str:
        return {"triggered": "open", "acknowledged": "working"}.get(
            self.state.incidents[ref].status, "resolved"
        )

    def severity(self, ref: str) -> Severity | None:
        names = {v: k for k, v in PRIORITY_IDS.items()}
        name = names.get(self.state.incidents[ref].priority_id or "")
        return next((s for s, p in _PD_PRIORITY.items() if p == name), None)

    def notes(self, ref: str) -> list[str]:
        return [n.content for n in self.state.incidents[ref].notes]

    def describe(self, ref: str) -> str:
        incident = self.state.incidents[ref]
        names = {v: k for k, v in PRIORITY_IDS.items()}
        return f"incident {incident.id}, {names.get(incident.priority_id or '', 'no priority')}"

    def vendor_status(self, ref: str) -> str:
        return f"status {self.state.incidents[ref].status}"

    def status_path(self, ref: str) -> list[str]:
        with self.state.lock:
            return [
                _PD_LOG_STATUS[e.type]
                for e in self.state.log
                if e.incident_id == ref and e.type in _PD_LOG_STATUS
            ]


class JiraSide(Side):
    name = "jira"

    @property
    def state(self) -> JiraState:
        state = self.sandbox.state
        assert isinstance(state, JiraState)
        return state

    def open(self, title: str, severity: Severity) -> str:
        body = {"actor": HUMAN_ACCOUNT_ID, "summary": title, "priority": _JIRA_PRIORITY[severity]}
        return str(self._post("/issues", body)["id"])

    def _key(self, ref: str) -> str:
        return self.state.issues[ref].key

    def acknowledge(self, ref: str) -> None:
        self._post(f"/issues/{self._key(ref)}/transitions", {"actor": HUMAN_ACCOUNT_ID, "to": "In Progress"})

    def set_severity(self, ref: str, severity: Severity) -> None:
        body = {"actor": HUMAN_ACCOUNT_ID, "priority": _JIRA_PRIORITY[severity]}
        self._post(f"/issues/{self._key(ref)}/priority", body)

    def add_note(self, ref: str, text: str) -> None:
        self._post(f"/issues/{self._key(ref)}/comments", {"actor": HUMAN_ACCOUNT_ID, "body": text})

    def resolve(self, ref: str) -> None:
        self._post(f"/issues/{self._key(ref)}/transitions", {"actor": HUMAN_ACCOUNT_ID, "to": "Done"})

    def refs(self) -> list[str]:
        return list(self.state.issues)

    def title(self, ref: str) -> str:
        return self.state.issues[ref].summary

    def status(self, ref: str) -> str:
        name = self.state.issues[ref].status.name
        return {"To Do": "open", "In Progress": "working"}.get(name, "resolved")

    def severity(self, ref: str) -> Severity | None:
        name = self.state.issues[ref].priority.name
        return next((s for s, p in _JIRA_PRIORITY.items() if p == name), None)

    def notes(self, ref: str) -> list[str]:
        return [adf_text(c.body) for c in self.state.issues[ref].comments]

    def describe(self, ref: str) -> str:
        issue = self.state.issues[ref]
        return f"issue {issue.key}, priority {issue.priority.name}"

    def vendor_status(self, ref: str) -> str:
        return f"status {self.state.issues[ref].status.name}"

    def status_path(self, ref: str) -> list[str]:
        with self.state.lock:
            names = [
                str(item.to_string)
                for history in self.state.issues[ref].histories
                for item in history.items
                if item.field_id == "status"
            ]
        return [{"To Do": "open", "In Progress": "working"}.get(name, "resolved") for name in names]


class ServiceNowSide(Side):
    name = "servicenow"
    person = "beth.anglin"

    @property
    def state(self) -> ServiceNowState:
        state = self.sandbox.state
        assert isinstance(state, ServiceNowState)
        return state

    def open(self, title: str, severity: Severity) -> str:
        impact, urgency = _SN_IMPACT_URGENCY[severity]
        body = {"actor": self.person, "short_description": title, "impact": impact, "urgency": urgency}
        return str(self._post("/incidents", body)["result"]["sys_id"])

    def acknowledge(self, ref: str) -> None:
        self._post(f"/incidents/{ref}/state", {"actor": self.person, "state": "2"})

    def set_severity(self, ref: str, severity: Severity) -> None:
        impact, urgency = _SN_IMPACT_URGENCY[severity]
        self._post(f"/incidents/{ref}/priority", {"actor": self.person, "impact": impact, "urgency": urgency})

    def add_note(self, ref: str, text: str) -> None:
        self._post(f"/incidents/{ref}/comments", {"actor": self.person, "text": text})

    def resolve(self, ref: str) -> None:
        body = {"actor": self.person, "state": "6", "close_code": "Solution provided", "close_notes": "Fixed"}
        self._post(f"/incidents/{ref}/state", body)

    def refs(self) -> list[str]:
        return [record["sys_id"] for record in self.state.incidents()]

    def title(self, ref: str) -> str:
        return self.state.record("incident", ref)["short_description"]

    def status(self, ref: str) -> str:
        state = self.state.record("incident", ref)["state"]
        return {"1": "open", "2": "working", "3": "working"}.get(state, "resolved")

    def severity(self, ref: str) -> Severity | None:
        return _SN_PRIORITY.get(self.state.record("incident", ref)["priority"], Severity.SEV4_LOW)

    def notes(self, ref: str) -> list[str]:
        return [e["value"] for e in self.state.journal(ref)]

    def describe(self, ref: str) -> str:
        record = self.state.record("incident", ref)
        return f"{record['number']}, priority {record['priority']}"

    def vendor_status(self, ref: str) -> str:
        state = self.state.record("incident", ref)["state"]
        names = {
            "1": "New",
            "2": "In Progress",
            "3": "On Hold",
            "6": "Resolved",
            "7": "Closed",
            "8": "Canceled",
        }
        return f"state {state} {names.get(state, '')}".rstrip()

    def status_path(self, ref: str) -> list[str]:
        states = [r["newvalue"] for r in self.state.audit(ref) if r["fieldname"] == "state"]
        return [{"1": "open", "2": "working", "3": "working"}.get(state, "resolved") for state in states]


class OpsgenieSide(Side):
    name = "opsgenie"
    person = "mia@example.com"

    @property
    def state(self) -> OpsgenieState:
        state = self.sandbox.state
        assert isinstance(state, OpsgenieState)
        return state

    def open(self, title: str, severity: Severity) -> str:
        body = {"actor": self.person, "message": title, "priority": _PD_PRIORITY[severity]}
        return str(self._post("/alerts", body)["data"]["id"])

    def acknowledge(self, ref: str) -> None:
        self._post(f"/alerts/{ref}/acknowledge", {"actor": self.person})

    def set_severity(self, ref: str, severity: Severity) -> None:
        self._post(f"/alerts/{ref}/priority", {"actor": self.person, "priority": _PD_PRIORITY[severity]})

    def add_note(self, ref: str, text: str) -> None:
        self._post(f"/alerts/{ref}/notes", {"actor": self.person, "note": text})

    def resolve(self, ref: str) -> None:
        self._post(f"/alerts/{ref}/close", {"actor": self.person})

    def refs(self) -> list[str]:
        return list(self.state.alerts)

    def title(self, ref: str) -> str:
        return self.state.alerts[ref].message

    def status(self, ref: str) -> str:
        alert = self.state.alerts[ref]
        return "resolved" if alert.status == "closed" else "working" if alert.acknowledged else "open"

    def severity(self, ref: str) -> Severity | None:
        priority = self.state.alerts[ref].priority
        return next((s for s, p in _PD_PRIORITY.items() if p == priority), Severity.SEV4_LOW)

    def notes(self, ref: str) -> list[str]:
        return [n.note for n in self.state.alerts[ref].notes]

    def describe(self, ref: str) -> str:
        alert = self.state.alerts[ref]
        return f"alert #{alert.tiny_id}, {alert.priority}"

    def vendor_status(self, ref: str) -> str:
        alert = self.state.alerts[ref]
        return f"status {alert.status}" + (", acknowledged" if alert.acknowledged else "")

    def status_path(self, ref: str) -> list[str]:
        moves = {"Create": "open", "Acknowledge": "working", "UnAcknowledge": "open", "Close": "resolved"}
        return [moves[e.action] for e in self.state.alert_log(ref) if e.action in moves]


@dataclass
class World:
    """The four sides, by connector id."""

    sides: dict[str, Side]

    def __getitem__(self, name: str) -> Side:
        return self.sides[name]

    def writes(self) -> dict[str, int]:
        return {name: side.writes() for name, side in self.sides.items()}


def connect(
    stack: ExitStack,
    hub: Hub,
    hub_url: str,
    workdir: Path,
    vendors: tuple[str, ...] = VENDORS,
    connector_settings: dict[str, Any] | None = None,
) -> World:
    """Start the sandboxes (closed with `stack`) and configure the hub's connectors to reach them
    (`connector_settings`: configuration fields every connector gets, e.g. `timeout_seconds`).

    Credentials are made up for the run and given to the hub by environment variable, as in production.
    """
    world, configs, credentials = start_sandboxes(stack, hub_url, workdir, vendors)
    os.environ.update(credentials)
    stack.callback(lambda: asyncio.run(hub.connectors.close()))
    for config in configs:
        hub.connectors.upsert(ConnectorConfig.model_validate({**config, **(connector_settings or {})}))
    return world


def start_sandboxes(
    stack: ExitStack, hub_url: str, workdir: Path, vendors: tuple[str, ...] = VENDORS
) -> tuple[World, list[dict[str, Any]], dict[str, str]]:
    """Start the sandboxes (closed with `stack`), their webhooks aimed at the hub at `hub_url`.

    Returns the four sides, the connector configurations that reach them, and the environment variables
    (made-up credentials) those configurations name: a hub in another process needs them in its own.
    """
    token = {
        name: secrets.token_hex(16)
        for name in ("pd", "pd_hook", "jira", "jira_hook", "sn", "sn_hook", "og", "og_hook")
    }
    credentials = {f"INCIDENT_HUB_SANDBOX_{name.upper()}": value for name, value in token.items()}

    def env(name: str) -> dict[str, str]:
        return {"env": f"INCIDENT_HUB_SANDBOX_{name.upper()}"}

    def serve(name: str, app: Any, state: Any) -> Sandbox:
        return stack.enter_context(Sandbox(app, state, directory=workdir / name))

    sides: dict[str, Side] = {}
    configs: list[dict[str, Any]] = []
    hook = f"{hub_url}/webhooks"
    if "pagerduty" in vendors:
        pd = serve("pagerduty", *pagerduty_sandbox(token["pd"], token["pd_hook"], f"{hook}/pagerduty"))
        sides["pagerduty"] = PagerDutySide(pd, "/_sandbox/pagerduty")
        configs.append(
            {
                "id": "pagerduty",
                "kind": "pagerduty",
                "base_url": pd.url,
                "ca_bundle": str(pd.ca_bundle),
                "credentials": env("pd"),
                "webhook_secret": env("pd_hook"),
                "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
            }
        )
    if "jira" in vendors:
        jira = serve("jira", *jira_sandbox(JIRA_EMAIL, token["jira"], token["jira_hook"], f"{hook}/jira"))
        sides["jira"] = JiraSide(jira, "/_sandbox/jira")
        configs.append(
            {
                "id": "jira",
                "kind": "jira",
                "base_url": jira.url,
                "ca_bundle": str(jira.ca_bundle),
                "credentials": env("jira"),
                "webhook_secret": env("jira_hook"),
                "options": {"email": JIRA_EMAIL, "project_key": "OPS", "hub_account_id": SERVICE_ACCOUNT_ID},
            }
        )
    if "servicenow" in vendors:
        sn = serve(
            "servicenow",
            *servicenow_sandbox(SERVICENOW_USER, token["sn"], f"{hook}/servicenow", token["sn_hook"]),
        )
        sides["servicenow"] = ServiceNowSide(sn, "/_sandbox/servicenow")
        configs.append(
            {
                "id": "servicenow",
                "kind": "servicenow",
                "base_url": sn.url,
                "ca_bundle": str(sn.ca_bundle),
                "credentials": env("sn"),
                "webhook_secret": env("sn_hook"),
                "options": {"username": SERVICENOW_USER},
            }
        )
    if "opsgenie" in vendors:
        og = serve("opsgenie", *opsgenie_sandbox(token["og"], token["og_hook"], f"{hook}/opsgenie"))
        sides["opsgenie"] = OpsgenieSide(og, "/_sandbox/opsgenie")
        configs.append(
            {
                "id": "opsgenie",
                "kind": "opsgenie",
                "base_url": og.url,
                "ca_bundle": str(og.ca_bundle),
                "credentials": env("og"),
                "webhook_secret": env("og_hook"),
                "options": {},
            }
        )
    for side in sides.values():
        stack.callback(side.ui.close)
    return World(sides), configs, credentials
