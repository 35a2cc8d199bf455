"""What every vendor sandbox shares: a test certificate authority, the request ledger, failure knobs,
signed webhook sending, and the `/_sandbox` control endpoints.

A vendor sandbox is a FastAPI app built by `build_app(state, vendor_router)`; `Sandbox` serves it over
HTTPS on 127.0.0.1 in a background thread. Tests in the same process reach the state directly
(`sandbox.state`); other processes use the control endpoints.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trustme
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incident_hub.serving import ServerThread

CONTROL_PREFIX = "/_sandbox"


class SandboxCA:
    """A throw-away certificate authority and a server certificate for 127.0.0.1 and localhost."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1", "localhost")
        self.ca_bundle = directory / "sandbox-ca.pem"
        self.certfile = directory / "sandbox-server.pem"
        self.keyfile = directory / "sandbox-server.key"
        authority.cert_pem.write_to_path(str(self.ca_bundle))
        server.cert_chain_pems[0].write_to_path(str(self.certfile))
        for extra in server.cert_chain_pems[1:]:
            extra.write_to_path(str(self.certfile), append=True)
        server.private_key_pem.write_to_path(str(self.keyfile))


@dataclass(frozen=True)
class LedgerEntry:
    """One request the sandbox received (`direction="in"`) or one webhook it sent (`"out"`)."""

    seq: int
    at: datetime
    direction: str
    method: str
    path: str
    query: str
    status: int | None
    headers: dict[str, str]
    body: Any
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "direction": self.direction,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "headers": self.headers,
            "body": self.body,
            "note": self.note,
        }


class Ledger:
    """Every request in and webhook out, in order (thread-safe)."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def record(
        self,
        direction: str,
        method: str,
        path: str,
        query: str,
        status: int | None,
        headers: Mapping[str, str],
        body: bytes | Any,
        note: str | None = None,
    ) -> LedgerEntry:
        parsed: Any = body
        if isinstance(body, bytes | bytearray):
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = body.decode(errors="replace")
        kept = {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
        with self._lock:
            entry = LedgerEntry(
                len(self._entries) + 1,
                datetime.now(UTC),
                direction,
                method,
                path,
                query,
                status,
                kept,
                parsed,
                note,
            )
            self._entries.append(entry)
            return entry

    def entries(
        self, *, direction: str | None = None, method: str | None = None, path_prefix: str | None = None
    ) -> list[LedgerEntry]:
        with self._lock:
            found = list(self._entries)
        return [
            e
            for e in found
            if (direction is None or e.direction == direction)
            and (method is None or e.method == method)
            and (path_prefix is None or e.path.startswith(path_prefix))
        ]

    def writes(self) -> list[LedgerEntry]:
        """Requests in that change something (POST, PUT, PATCH, DELETE) and succeeded."""
        return [e for e in self.entries(direction="in") if e.method in _WRITES and (e.status or 0) < 400]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Never keep credentials in the ledger (it is served by the control API).
# Credentials and shared webhook secrets never reach the ledger (it is served over `/_sandbox/ledger`).
_SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "x-incident-hub-secret"})


class Knobs(BaseModel):
    """Failure injection for the vendor API (never for `/_sandbox`)."""

    latency_ms: float = Field(default=0.0, ge=0, description="Added to every vendor API request.")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of requests answered 500.")
    fail_next: list[int] = Field(
        default_factory=list, description="Statuses for the next requests, in order."
    )
    rate_limit_next: int = Field(
        default=0,
        ge=0,
        description="The next N requests get 429 (a storm), with the vendor's rate-limit headers saying "
        "`retry_after_seconds`.",
    )
    retry_after_seconds: int = Field(default=1, ge=0, description="Retry-After sent with 429 and 503.")
    unavailable_seconds: float = Field(
        default=0.0,
        ge=0,
        description="An outage: every request for this many seconds from when the knobs are set gets 503 "
        "with `retry_after_seconds` (the vendor down for maintenance). Nothing is applied meanwhile.",
    )
    rate_limit: int | None = Field(
        default=None,
        ge=1,
        description="Enforce the vendor's limit: this many requests per `rate_limit_period_seconds` (a "
        "token bucket that holds one period's worth and refills evenly); a request beyond it gets 429 "
        "with the vendor's headers saying when a request goes through again. None: no limit.",
    )
    rate_limit_period_seconds: float = Field(default=60.0, gt=0)
    timeout_next: int = Field(default=0, ge=0, description="The next N requests hang, then get 504.")
    timeout_seconds: float = Field(default=30.0, ge=0)
    slow_creates: int = Field(
        default=0,
        ge=0,
        description="The next N creates (the vendor's create call) are held `create_lands_after_seconds`, "
        "then applied and answered: a client with a shorter timeout has given up by then, as on a busy "
        "instance that commits the record late.",
    )
    swallowed_creates: int = Field(
        default=0,
        ge=0,
        description="The next N creates never land: held `create_lands_after_seconds`, then answered 504 "
        "with nothing made.",
    )
    create_lands_after_seconds: float = Field(default=40.0, ge=0)
    answers_lost_next: int = Field(
        default=0,
        ge=0,
        description="The next N writes (POST, PUT, PATCH, DELETE) are applied, then answered 504 as by a "
        "gateway that gave up: the vendor did the work, the client cannot know it.",
    )
    answers_lost_path: str = Field(
        default="", description="Only writes whose path this regular expression finds; empty: any."
    )
    drop_webhook_rate: float = Field(default=0.0, ge=0, le=1, description="Share of webhooks never sent.")
    webhooks_enabled: bool = True


class WebhookTarget(BaseModel):
    url: str
    secret: str | None = None


RateLimitHeaders = Callable[[float, Knobs], dict[str, str]]
"""The headers a vendor sends with a 429, given the seconds until a request goes through again."""


def retry_after_headers(wait: float, knobs: Knobs) -> dict[str, str]:
    return {"retry-after": str(math.ceil(wait))}


@dataclass
class SandboxState:
    """Shared by a vendor's routes, the knobs middleware and the control endpoints."""

    vendor: str
    ledger: Ledger = field(default_factory=Ledger)
    knobs: Knobs = field(default_factory=Knobs)
    webhook_targets: list[WebhookTarget] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    random: random.Random = field(default_factory=lambda: random.Random(7))
    counter: int = 0
    # (method, path pattern) of the vendor's create call, which the create knobs hold.
    create_call: tuple[str, str] | None = None
    rate_limit_headers: RateLimitHeaders = retry_after_headers
    # The enforced limit's bucket: tokens left, and when they were last counted (monotonic).
    tokens: float | None = None
    tokens_at: float = 0.0
    # The outage `knobs.unavailable_seconds` started: requests get 503 until then (monotonic).
    unavailable_until: float = 0.0

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def take_held_create(self, method: str, path: str) -> str | None:
        """ "slow" or "swallowed" when this request is a create the knobs hold, else None."""
        if self.create_call is None or method != self.create_call[0]:
            return None
        if not re.fullmatch(self.create_call[1], path):
            return None
        with self.lock:
            if self.knobs.swallowed_creates:
                self.knobs.swallowed_creates -= 1
                return "swallowed"
            if self.knobs.slow_creates:
                self.knobs.slow_creates -= 1
                return "slow"
        return None

    def take_lost_answer(self, method: str, path: str) -> bool:
        """True when this request is a write whose answer the knobs lose (`answers_lost_next`)."""
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            return False
        with self.lock:
            knobs = self.knobs
            if knobs.answers_lost_next and re.search(knobs.answers_lost_path, path):
                self.knobs.answers_lost_next -= 1
                return True
        return False

    def set_knobs(self, knobs: Knobs) -> None:
        """Use `knobs` from now on; an outage they ask for starts now."""
        with self.lock:
            self.knobs = knobs
            self.unavailable_until = (
                time.monotonic() + knobs.unavailable_seconds if knobs.unavailable_seconds else 0.0
            )

    def outage(self, seconds: float) -> None:
        """Answer every vendor API request 503 (with Retry-After) for `seconds` from now."""
        self.set_knobs(self.knobs.model_copy(update={"unavailable_seconds": seconds}))

    def take_failure(self) -> tuple[int, float] | None:
        """The injected failure for this request, if any: (status, seconds to wait first)."""
        with self.lock:
            knobs = self.knobs
            if self.unavailable_until and time.monotonic() < self.unavailable_until:
                return 503, 0.0
            if knobs.fail_next:
                return knobs.fail_next.pop(0), 0.0
            if knobs.timeout_next:
                knobs.timeout_next -= 1
                return 504, knobs.timeout_seconds
            if knobs.rate_limit_next:
                knobs.rate_limit_next -= 1
                return 429, 0.0
            if knobs.error_rate and self.random.random() < knobs.error_rate:
                return 500, 0.0
        return None

    def take_token(self) -> float | None:
        """Under an enforced limit (`knobs.rate_limit`): None when this request may go (it takes a token),
        else the seconds until one will."""
        with self.lock:
            knobs = self.knobs
            if knobs.rate_limit is None:
                self.tokens = None
                return None
            now = time.monotonic()
            per_second = knobs.rate_limit / knobs.rate_limit_period_seconds
            if self.tokens is None:
                self.tokens = float(knobs.rate_limit)
            else:
                self.tokens = min(float(knobs.rate_limit), self.tokens + (now - self.tokens_at) * per_second)
            self.tokens_at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return None
            return (1.0 - self.tokens) / per_second


Signer = Callable[[bytes, str], dict[str, str]]
"""Headers that sign a webhook body with a target's secret, the way the vendor does."""


class WebhookSender:
    """Sends the vendor's webhooks to every registered target, signed; honours the drop knob."""

    def __init__(self, state: SandboxState, signer: Signer) -> None:
        self.state = state
        self.signer = signer

    async def send(self, body: dict[str, Any], extra_headers: Mapping[str, str] | None = None) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        for target in list(self.state.webhook_targets):
            headers = {"Content-Type": "application/json", **(extra_headers or {})}
            if target.secret:
                headers |= self.signer(raw, target.secret)
            if not self.state.knobs.webhooks_enabled or (
                self.state.knobs.drop_webhook_rate
                and self.state.random.random() < self.state.knobs.drop_webhook_rate
            ):
                self.state.ledger.record("out", "POST", target.url, "", None, headers, raw, note="dropped")
                continue
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.post(target.url, content=raw, headers=headers)
                status: int | None = response.status_code
                note = None
            except httpx.HTTPError as error:
                status, note = None, f"{type(error).__name__}: {error}"
            self.state.ledger.record("out", "POST", target.url, "", status, headers, raw, note=note)

    def send_soon(self, body: dict[str, Any], extra_headers: Mapping[str, str] | None = None) -> None:
        """Send after the current response, as vendors do (fire and forget on the running loop)."""
        task = asyncio.get_running_loop().create_task(self.send(body, extra_headers))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


class KnobsMiddleware:
    """Applies the knobs to vendor API requests and records every request and its status in the ledger."""

    def __init__(
        self, app: ASGIApp, state: SandboxState, error_body: Callable[[int], dict[str, Any]]
    ) -> None:
        self.app = app
        self.state = state
        self.error_body = error_body

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
        body = b"".join(chunks)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        method, path = scope["method"], scope["path"]
        knobs = self.state.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        held = self.state.take_held_create(method, path)
        if held is not None:
            # The client gives up meanwhile; the vendor applies the create (or not) all the same.
            await asyncio.sleep(knobs.create_lands_after_seconds)
        failure = (504, 0.0) if held == "swallowed" else None if held else self.state.take_failure()
        limited: dict[str, str] = {}
        if failure is not None:
            status, wait = failure
            if wait:
                await asyncio.sleep(wait)
            note = (
                "swallowed"
                if held
                else ("unavailable" if time.monotonic() < self.state.unavailable_until else "injected")
            )
            if status == 429:
                limited = self.state.rate_limit_headers(knobs.retry_after_seconds, knobs)
                limited.setdefault("retry-after", str(knobs.retry_after_seconds))
            elif status == 503:
                limited = {"retry-after": str(knobs.retry_after_seconds)}
        elif not held and (until := self.state.take_token()) is not None:
            status, note = 429, "rate limited"
            limited = self.state.rate_limit_headers(until, knobs)
        lost = failure is None and not limited and not held and self.state.take_lost_answer(method, path)
        if lost:
            await self._apply_unanswered(scope, body)
            status, note = 504, "answer lost"
        if failure is not None or limited or lost:
            self.state.ledger.record("in", method, path, query, status, headers, body, note=note)
            payload = json.dumps(self.error_body(status)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        *((name.encode(), value.encode()) for name, value in limited.items()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        status_seen = 500
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        recorded = False

        async def recording_send(message: Message) -> None:
            nonlocal status_seen, recorded
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                # Recorded before the client can see the answer, so a test that reads the ledger right
                # after its call finds the call there.
                self.state.ledger.record(
                    "in",
                    method,
                    path,
                    query,
                    status_seen,
                    headers,
                    body,
                    note="landed late" if held else None,
                )
                recorded = True
            await send(message)

        try:
            await self.app(scope, replay, recording_send)
        finally:
            if not recorded:
                self.state.ledger.record("in", method, path, query, status_seen, headers, body)

    async def _apply_unanswered(self, scope: Scope, body: bytes) -> None:
        """Run the request through the vendor app and drop its answer."""
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def dropped(message: Message) -> None:
            return None

        await self.app(scope, replay, dropped)


def control_router(state: SandboxState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX, tags=["sandbox control"])

    @router.get("/ledger")
    def ledger(direction: str | None = None) -> list[dict[str, Any]]:
        return [e.as_json() for e in state.ledger.entries(direction=direction)]

    @router.delete("/ledger", status_code=204)
    def clear_ledger() -> None:
        state.ledger.clear()

    @router.get("/knobs")
    def get_knobs() -> Knobs:
        return state.knobs

    @router.put("/knobs")
    def put_knobs(knobs: Knobs) -> Knobs:
        state.set_knobs(knobs)
        return knobs

    @router.put("/webhooks")
    def put_webhooks(targets: list[WebhookTarget]) -> list[str]:
        state.webhook_targets = targets
        return [t.url for t in targets]

    return router


def build_app(
    state: SandboxState, vendor_router: APIRouter, error_body: Callable[[int], dict[str, Any]], title: str
) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None)
    app.include_router(vendor_router)
    app.include_router(control_router(state))
    app.add_middleware(KnobsMiddleware, state=state, error_body=error_body)
    return app


class Sandbox:
    """Serves a vendor sandbox app over HTTPS on 127.0.0.1: `with Sandbox(app, state) as sandbox:`."""

    def __init__(
        self, app: FastAPI, state: SandboxState, *, directory: Path | None = None, port: int | None = None
    ) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix=f"sandbox-{state.vendor}-")
        self.directory = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        self.tls = SandboxCA(self.directory)
        self.state = state
        self._server = ServerThread(
            app, port=port, ssl_certfile=str(self.tls.certfile), ssl_keyfile=str(self.tls.keyfile)
        )
        self.url = self._server.url

    @property
    def ca_bundle(self) -> Path:
        return self.tls.ca_bundle

    def __enter__(self) -> Sandbox:
        self._server.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.__exit__(kind, error, trace)
        if self._tmp is not None:
            self._tmp.cleanup()

    def wait_for_webhooks(self, count: int, timeout: float = 10.0) -> list[LedgerEntry]:
        """Wait until `count` webhooks have gone out (sent or dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.state.ledger.entries(direction="out")
            if len(sent) >= count:
                return sent
            time.sleep(0.02)
        raise TimeoutError(
            f"{self.state.vendor} sandbox sent {len(self.state.ledger.entries(direction='out'))}"
            f" webhooks, expected {count}"
        )
