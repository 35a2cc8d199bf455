"""A third-party connector, shipped outside the hub and found through its entry point.

The vendor is `tickets_app.py`: a small JSON ticket service. Webhooks are signed
`X-Tickets-Signature: sha256=<hmac>`; each carries `event_id`, `ticket` and `actor`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from incident_hub.connectors.base import (
    ChangeKind,
    Connector,
    ExternalChange,
    ExternalNote,
    Health,
    OutboundNote,
    PushResult,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.mapping.document import MappingDocument, parse
from incident_hub.model import ExternalRef, Incident
from incident_hub.signing import signature_matches
from incident_hub.sync.retry import classify_transport_error, raise_for_response

MAPPING = Path(__file__).with_name("mapping.yaml")


class Options(BaseModel):
    account: str = "hub-bot"


class TicketsConnector(Connector):
    kind = "tickets"
    Options = Options

    def mapping(self) -> MappingDocument:
        return parse(MAPPING.read_text())

    def _client(self) -> httpx.AsyncClient:
        token = self.config.credentials.read().get_secret_value() if self.config.credentials else ""
        return httpx.AsyncClient(
            base_url=self.config.base_url,
            timeout=self.config.timeout_seconds,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            async with self._client() as client:
                response = await client.request(method, path, **kw)
        except httpx.HTTPError as error:
            raise classify_transport_error(error) from error
        raise_for_response(response)
        return response.json() if response.content else None

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.config.webhook_secret is None:
            return
        presented = headers.get("x-tickets-signature", "")
        if not presented.startswith("sha256="):
            raise WebhookRejected("missing X-Tickets-Signature")
        secret = self.config.webhook_secret.read().get_secret_value()
        if not signature_matches(secret, body, presented.removeprefix("sha256=")):
            raise WebhookRejected("signature does not match")

    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        try:
            value = json.loads(body).get("event_id")
        except (ValueError, AttributeError):
            return None
        return str(value) if value else None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        try:
            payload = json.loads(body)
            ticket = payload["ticket"]
            kind = ChangeKind(payload["kind"])
            note = payload.get("comment")
            return [
                self._change(
                    ticket,
                    kind,
                    payload.get("actor"),
                    payload.get("event_id"),
                    payload,
                    ExternalNote(
                        external_comment_id=str(note["id"]), body=note["body"], author=note.get("author")
                    )
                    if note
                    else None,
                )
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise WebhookParseError(f"not a tickets webhook: {error}") from None

    def _change(
        self,
        ticket: dict[str, Any],
        kind: ChangeKind,
        actor: str | None,
        event_id: str | None,
        raw: dict[str, Any],
        note: ExternalNote | None = None,
    ) -> ExternalChange:
        return ExternalChange(
            connector_id=self.id,
            external_id=str(ticket["id"]),
            external_key=f"T-{ticket['id']}",
            kind=kind,
            fields={k: ticket[k] for k in ("state", "level", "subject", "body") if k in ticket},
            note=note,
            vendor_timestamp=datetime.fromisoformat(ticket["updated_at"]),
            actor=actor,
            actor_is_self=actor == self.options.account,
            event_id=event_id,
            hub_incident_id=ticket.get("hub_id"),
            raw=raw,
        )

    async def find(self, incident: Incident) -> PushResult | None:
        found = await self._call("GET", "/tickets", params={"hub_id": str(incident.id)})
        if not found:
            return None
        return PushResult(external_id=str(found[0]["id"]), external_key=f"T-{found[0]['id']}")

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        ticket = await self._call("POST", "/tickets", json={**fields, "hub_id": str(incident.id)})
        return PushResult(
            external_id=str(ticket["id"]),
            external_key=f"T-{ticket['id']}",
            vendor_timestamp=datetime.fromisoformat(ticket["updated_at"]),
        )

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        ticket = await self._call("PATCH", f"/tickets/{ref.external_id}", json=fields)
        return PushResult(
            external_id=str(ticket["id"]),
            external_key=f"T-{ticket['id']}",
            vendor_timestamp=datetime.fromisoformat(ticket["updated_at"]),
        )

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        comment = await self._call("POST", f"/tickets/{ref.external_id}/comments", json={"body": note.body})
        return str(comment["id"])

    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        ticket = await self._call("GET", f"/tickets/{ref.external_id}")
        return self._change(ticket, ChangeKind.SNAPSHOT, None, None, ticket)

    async def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        for ticket in await self._call("GET", "/tickets", params={"since": since.isoformat()}):
            yield self._change(ticket, ChangeKind.SNAPSHOT, None, None, ticket)

    async def health(self) -> Health:
        await self._call("GET", "/tickets", params={"hub_id": "none"})
        return Health(ok=True, detail="ticket service answers")
