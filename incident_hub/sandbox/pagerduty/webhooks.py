"""V3 webhook delivery: PagerDuty's signature, its headers, and its ordering.

Signature (developer-docs `docs/webhooks/04-Signatures.md`, summarised in `vendor/pagerduty/NOTES.md`):
`X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret, raw body)>`, one comma-separated `v1=` entry per
secret the subscription signs with, several while a secret rotates. `X-Webhook-Id` is unique per webhook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from incident_hub.sandbox.common import Signer, WebhookSender
from incident_hub.sandbox.pagerduty.state import PagerDutyState
from incident_hub.signing import sign_sha256

SIGNATURE_HEADER = "X-PagerDuty-Signature"
USER_AGENT = "PagerDuty-Webhook/V3.0"


def signature(secrets: Sequence[str], body: bytes) -> str:
    """The `X-PagerDuty-Signature` value for `body` signed with each of `secrets`."""
    return ",".join(f"v1={sign_sha256(secret, body)}" for secret in secrets)


def pagerduty_signer(state: PagerDutyState) -> Signer:
    """Signs with a target's secret and, while it rotates, with the others kept for it in the state."""

    def sign(body: bytes, secret: str) -> dict[str, str]:
        with state.lock:
            others = list(state.extra_signing_secrets.get(secret, []))
        return {SIGNATURE_HEADER: signature([secret, *others], body)}

    return sign


class Deliveries:
    """Sends webhook bodies after the response, one at a time in the order the changes happened.

    PagerDuty "sends webhooks for a given extension and incident combination in the order that they were
    generated" (developer-docs `docs/webhooks/02-Behavior.md`); separate tasks could overtake each other.
    """

    def __init__(self, state: PagerDutyState) -> None:
        self.sender = WebhookSender(state, pagerduty_signer(state))
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def send_soon(self, bodies: list[dict[str, Any]]) -> None:
        if not bodies:
            return
        task = asyncio.get_running_loop().create_task(self._send(bodies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, bodies: list[dict[str, Any]]) -> None:
        async with self._order:
            for body in bodies:
                headers = {"X-Webhook-Id": str(uuid.uuid4()), "User-Agent": USER_AGENT}
                await self.sender.send(body, headers)
