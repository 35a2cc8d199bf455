"""The business rule's outbound REST message: the hub's inbound contract (docs/servicenow.md).

ServiceNow has no fixed outbound webhook (docs/c_BiDiIncidentTicketingIntegrations.md); the instance
sends what the business rule documented in docs/servicenow.md builds, after every insert and update of an
incident, by anyone, the integration user included (echoes are the hub's to drop). It authenticates with
a shared-secret header, or HTTP basic auth (the target's secret is then `user:password`).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from incident_hub.sandbox.common import Signer, WebhookSender
from incident_hub.sandbox.servicenow.state import REFERENCES, Change, ServiceNowState

# The fields the documented business rule sends, current values.
SENT_FIELDS = (
    "short_description",
    "description",
    "state",
    "impact",
    "urgency",
    "priority",
    "assignment_group",
    "assigned_to",
    "caller_id",
    "category",
    "close_code",
    "close_notes",
    "hold_reason",
    "correlation_id",
)
USER_AGENT = "ServiceNow/1.0"


def payload(state: ServiceNowState, change: Change) -> dict[str, Any]:
    record = change.after
    fields: dict[str, Any] = {}
    for name in SENT_FIELDS:
        value = record.get(name, "")
        target = REFERENCES.get(name)
        # References as the script sends them: sys_id and display value.
        fields[name] = (
            {"value": value, "display_value": state.display(target, value) if value else ""}
            if target
            else value
        )
    return {
        "table": "incident",
        "operation": change.operation,
        "sys_id": record["sys_id"],
        "number": record["number"],
        "sys_mod_count": record["sys_mod_count"],
        "sys_updated_on": record["sys_updated_on"],
        "sys_updated_by": record["sys_updated_by"],
        "correlation_id": record["correlation_id"],
        "changed": [name for name in change.changed if name in SENT_FIELDS],
        "fields": fields,
        "journal": change.journal,
    }


def business_rule_signer(state: ServiceNowState) -> Signer:
    def sign(body: bytes, secret: str) -> dict[str, str]:
        if state.webhook_mode == "basic":
            return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
        return {state.webhook_header: secret}

    return sign


class BusinessRule:
    """Sends each change's REST message after the response, one at a time, in the order of the writes."""

    def __init__(self, state: ServiceNowState) -> None:
        self.state = state
        self.sender = WebhookSender(state, business_rule_signer(state))
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def fire(self, change: Change) -> None:
        body = payload(self.state, change)
        task = asyncio.get_running_loop().create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._order:
            await self.sender.send(body, {"User-Agent": USER_AGENT})
