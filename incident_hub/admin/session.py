"""Admin UI sessions: the admin API key is kept here, server-side; the browser holds only a random session
id in an HttpOnly, SameSite=Strict cookie. Every session carries its own CSRF token, checked on each POST."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from incident_hub.api.auth import ApiKeys, Principal, Scope
from incident_hub.audit import actor_name

log = logging.getLogger(__name__)

COOKIE = "ih_admin_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# A session ends after an hour without a request, and after twelve hours in any case.
IDLE_SECONDS = 3600.0
LIFETIME_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000


class LoginRequired(Exception):
    """No live admin session: the browser is sent to the login page."""


class CsrfRejected(Exception):
    """A POST without this session's CSRF token (or with another's)."""


@dataclass
class AdminSession:
    id: str
    csrf_token: str
    created: float
    last_seen: float
    # The key is needed to re-check it on every request (revocation ends the session); never shown.
    key: SecretStr | None = field(default=None, repr=False)
    principal: Principal | None = None
    flashes: list[str] = field(default_factory=list)

    @property
    def actor(self) -> str:
        """Who did it, as audit records and mapping versions name an API key: `name (key id)`."""
        if self.principal is None:
            return "anonymous"
        return actor_name(self.principal.name, self.principal.key_id)

    def flash(self, message: str) -> None:
        self.flashes.append(message)

    def take_flashes(self) -> list[str]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    """Sessions in this process's memory. Several worker processes need sticky routing (docs/admin.md)."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        lifetime_seconds: float = LIFETIME_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self.max_sessions = max_sessions
        self._sessions: dict[str, AdminSession] = {}
        self._lock = threading.Lock()

    def new(self) -> AdminSession:
        """An anonymous session: it only carries the CSRF token of the login form."""
        now = time.monotonic()
        session = AdminSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= self.max_sessions:
                # Under a flood of login-page visits, the logged-in sessions are the last to go.
                anonymous = [s for s in self._sessions.values() if s.key is None]
                oldest = min(anonymous or self._sessions.values(), key=lambda s: s.last_seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> AdminSession | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session

    def log_in(self, anonymous: AdminSession, key: str, principal: Principal) -> AdminSession:
        """A fresh session (new id and CSRF token, so a planted id is worth nothing) holding the key."""
        self.end(anonymous.id)
        session = self.new()
        session.key = SecretStr(key)
        session.principal = principal
        return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _expired(self, session: AdminSession, now: float) -> bool:
        return now - session.last_seen > self.idle_seconds or now - session.created > self.lifetime_seconds

    def _expire(self, now: float) -> None:
        for session_id in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[session_id]


def store(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.admin_sessions
    return sessions


def current(request: Request) -> AdminSession | None:
    """The browser's session, logged in or not, if it has a live one."""
    return store(request).get(request.cookies.get(COOKIE))


def require_admin(request: Request) -> AdminSession:
    """A logged-in session whose key is still valid and still carries the admin scope."""
    session = current(request)
    if session is None or session.key is None:
        raise LoginRequired
    keys: ApiKeys = request.app.state.hub.api_keys
    principal = keys.verify(session.key.get_secret_value())
    if principal is None or not principal.allows(Scope.ADMIN):
        store(request).end(session.id)
        key_id = session.principal.key_id if session.principal is not None else None
        log.info("admin session ended: key revoked or no longer admin", extra={"key_id": key_id})
        raise LoginRequired
    session.principal = principal
    return session


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def csrf_token_of(request: Request) -> str | None:
    """The CSRF token a POST carries: the hidden form field, or the header htmx sends."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def require_admin_post(
    request: Request, session: Annotated[AdminSession, Depends(require_admin)]
) -> AdminSession:
    """`require_admin`, and the request carries the session's CSRF token."""
    if not tokens_match(session.csrf_token, await csrf_token_of(request)):
        raise CsrfRejected
    return session


Admin = Annotated[AdminSession, Depends(require_admin)]
AdminPost = Annotated[AdminSession, Depends(require_admin_post)]
