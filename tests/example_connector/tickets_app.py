"""The example connector's vendor: a small ticket service with signed webhooks and a request ledger."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from incident_hub.signing import sign_sha256


@dataclass
class TicketService:
    hub_url: str | None = None
    secret: str = "tickets-webhook-secret"
    bot: str = "hub-bot"
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def webhook(
        self, kind: str, ticket: dict[str, Any], actor: str, comment: dict[str, Any] | None = None
    ) -> None:
        if self.hub_url is None:
            return
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "kind": kind,
                "ticket": ticket,
                "actor": actor,
                "comment": comment,
            }
        ).encode()
        httpx.post(
            self.hub_url,
            content=body,
            timeout=5,
            headers={
                "X-Tickets-Signature": f"sha256={sign_sha256(self.secret, body)}",
                "Content-Type": "application/json",
            },
        )

    # A person using the ticket service's UI.
    def act(self, ticket_id: int, actor: str, **changes: Any) -> dict[str, Any]:
        with self.lock:
            ticket = self.tickets[ticket_id]
            ticket.update(changes, updated_at=datetime.now(UTC).isoformat())
            snapshot = dict(ticket)
        self.webhook("updated", snapshot, actor)
        return snapshot

    def open(self, actor: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            ticket = {
                "id": next(self.ids),
                "state": "new",
                "level": 3,
                "subject": "",
                "body": None,
                "hub_id": None,
                "comments": [],
                **fields,
                "updated_at": datetime.now(UTC).isoformat(),
            }
            self.tickets[ticket["id"]] = ticket
            snapshot = dict(ticket)
        self.webhook("created", snapshot, actor)
        return snapshot

    def comment(self, ticket_id: int, actor: str, body: str) -> None:
        with self.lock:
            ticket = self.tickets[ticket_id]
            note = {"id": len(ticket["comments"]) + 1, "body": body, "author": actor}
            ticket["comments"].append(note)
            ticket["updated_at"] = datetime.now(UTC).isoformat()
            snapshot = dict(ticket)
        self.webhook("note", snapshot, actor, note)


def tickets_app(service: TicketService) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def inject(request: Request, call_next: Any) -> Any:
        if service.fail_next:
            return JSONResponse({"error": "injected"}, status_code=service.fail_next.pop(0))
        if request.method != "GET":
            service.writes.append(
                (request.method, request.url.path, json.loads(await request.body() or b"{}"))
            )
        return await call_next(request)

    @app.get("/tickets")
    def list_tickets(hub_id: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        with service.lock:
            found = list(service.tickets.values())
        if hub_id is not None:
            found = [t for t in found if t["hub_id"] == hub_id]
        if since is not None:
            found = [t for t in found if t["updated_at"] >= since]
        return found

    @app.get("/tickets/{ticket_id}")
    def get_ticket(ticket_id: int) -> dict[str, Any]:
        return service.tickets[ticket_id]

    @app.post("/tickets", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        return service.open(service.bot, **(await request.json()))

    @app.patch("/tickets/{ticket_id}")
    async def patch(ticket_id: int, request: Request) -> dict[str, Any]:
        return service.act(ticket_id, service.bot, **(await request.json()))

    @app.post("/tickets/{ticket_id}/comments", status_code=201)
    async def comment(ticket_id: int, request: Request) -> dict[str, Any]:
        body = (await request.json())["body"]
        service.comment(ticket_id, service.bot, body)
        return service.tickets[ticket_id]["comments"][-1]

    return app
