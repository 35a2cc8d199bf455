"""Opsgenie "Webhook" integration deliveries: their body, their authentication, their order.

Bodies follow `vendor/opsgenie/webhook-examples/` (the doc page "alert action data" and Zulip's fixtures):
`action`, `alert` (alertId, message, tags, tinyId, alias, entity, source, createdAt in ms, updatedAt in
ns, username, userId, plus the action's own field: note, owner, team), `source` {name, type},
`integrationId`, `integrationName`, `integrationType`. Description and details travel with Create only,
cut to 1000 characters (docs.opsgenie.com "Webhook Integration"). `Escalate` has its own shape
(zulip-fixtures/escalate.json).

Opsgenie signs nothing: a webhook integration can add custom headers, and the URL may carry basic-auth
credentials. The sandbox sends the target's secret the configured way (`webhook_auth`).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from incident_hub.sandbox.common import Signer, WebhookSender
from incident_hub.sandbox.opsgenie.model import Escalation, Occurrence
from incident_hub.sandbox.opsgenie.state import OpsgenieState

WEBHOOK_INTEGRATION_ID = "daca46c6-e26b-4dda-8f8a-21f6db7eeaef"
WEBHOOK_INTEGRATION_NAME = "Webhook"
TRUNCATE = 1000


def webhook_body(state: OpsgenieState, occurrence: Occurrence) -> dict[str, Any]:
    """The body Opsgenie's webhook integration posts for one action."""
    alert, actor = occurrence.alert, occurrence.actor
    common = {
        "integrationId": WEBHOOK_INTEGRATION_ID,
        "integrationName": WEBHOOK_INTEGRATION_NAME,
        "integrationType": "Webhook",
    }
    if occurrence.action == "Escalate":
        escalation: Escalation = occurrence.extra["escalation"]
        notified = next(iter(state.people.values()))
        # The escalation notice repeats the integration's custom headers in its body (escalate.json,
        # "headers"): with header authentication, the secret travels in the body too.
        secret = state.webhook_targets[0].secret if state.webhook_targets else None
        custom = {state.webhook_header: secret} if state.webhook_auth == "header" and secret else {}
        return {
            "action": "Escalate",
            "alert": {"alertId": alert.id},
            "escalationId": escalation.id,
            "escalationName": escalation.name,
            "escalationNotify": {
                "name": notified.username,
                "id": notified.id,
                "type": "default",
                "entity": "user",
            },
            "headers": custom,
            "escalationTime": 0,
            "repeatCount": 0,
            **common,
        }
    body: dict[str, Any] = {
        "updatedAt": alert.updated_ns,
        "tags": list(alert.tags),
        "message": alert.message,
        "username": actor.username,
        "alertId": alert.id,
        "source": alert.source,
        "alias": alert.alias,
        "tinyId": alert.tiny_id,
        "createdAt": int(alert.created_at.timestamp() * 1000),
        "userId": actor.user_id,
        "entity": alert.entity,
    }
    if occurrence.action == "Create":
        body |= {
            "teams": [state.team_name(team_id) for team_id in alert.team_ids],
            "recipients": [],
            "insertedAt": alert.updated_ns,
            # An integer in the captured delivery (zulip-fixtures/create.json: "priority":3).
            "priority": int(alert.priority[1]),
            "description": alert.description[:TRUNCATE],
            "details": {key: value[:TRUNCATE] for key, value in alert.details.items()},
        }
    if occurrence.action == "UpdatePriority":
        body["priority"] = int(alert.priority[1])
    for name in ("note", "owner", "team", "description"):
        if name in occurrence.extra:
            body[name] = occurrence.extra[name]
    source = (
        {"name": actor.source_name, "type": "API"} if actor.kind == "api" else {"name": "", "type": "web"}
    )
    return {"source": source, "alert": body, "action": occurrence.action, **common}


def opsgenie_signer(state: OpsgenieState) -> Signer:
    """Not a signature: the secret in a custom header, or as the password of basic auth."""

    def credentials(body: bytes, secret: str) -> dict[str, str]:
        if state.webhook_auth == "basic":
            token = base64.b64encode(f"{state.webhook_username}:{secret}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {state.webhook_header: secret}

    return credentials


class Deliveries:
    """Sends webhook bodies after the response, one at a time, in the order the changes happened."""

    def __init__(self, state: OpsgenieState) -> None:
        self.state = state
        self.sender = WebhookSender(state, opsgenie_signer(state))
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def send_soon(self, happened: list[Occurrence]) -> None:
        if not happened:
            return
        with self.state.lock:
            bodies = [webhook_body(self.state, occurrence) for occurrence in happened]
        task = asyncio.get_running_loop().create_task(self._send(bodies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, bodies: list[dict[str, Any]]) -> None:
        async with self._order:
            for body in bodies:
                await self.sender.send(body)
