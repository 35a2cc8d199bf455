"""Admin UI sessions, kept in the database so any worker or replica serves any of them.

The browser holds a random token in an HttpOnly, SameSite=Strict cookie; the database holds only its hash,
the id of the API key the session was opened with (never the key), the session's CSRF token (checked on
every POST) and its pending flash messages. The login form, before there is a session, carries a token
signed with a key kept in the database and bound to a cookie of its own (a signed double submit)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from incident_hub.api.auth import Principal, Scope
from incident_hub.audit import actor_name
from incident_hub.clock import as_utc, utcnow
from incident_hub.signing import sign_sha256
from incident_hub.store.db import Database
from incident_hub.store.tables import AdminSessionRow, ApiKeyRow, HubSecretRow

log = logging.getLogger(__name__)

COOKIE = "ih_admin_session"
LOGIN_COOKIE = "ih_admin_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# A session ends after an hour without a request, and after twelve hours in any case.
IDLE_SECONDS = 3600.0
LIFETIME_SECONDS = 12 * 3600.0
# A login form can be posted for this long after it was shown.
LOGIN_FORM_SECONDS = 3600.0
# Seen-at is written at most this often per session (a database write per page view is not needed).
TOUCH_SECONDS = 60.0
LOGIN_KEY = "admin-login-form"


class LoginRequired(Exception):
    """No live admin session: the browser is sent to the login page."""


class CsrfRejected(Exception):
    """A POST without this session's CSRF token (or with another's)."""


@dataclass
class AdminSession:
    """A logged-in session, as loaded for one request."""

    id: str  # the token's hash: the cookie's value is never kept
    csrf_token: str
    principal: Principal
    flashes: list[str] = field(default_factory=list)
    store: SessionStore | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        """Who did it, as audit records and mapping versions name an API key: `name (key id)`."""
        return actor_name(self.principal.name, self.principal.key_id)

    def flash(self, message: str) -> None:
        """Show `message` on the next page this session loads, whichever worker serves it."""
        self.flashes.append(message)
        if self.store is not None:
            self.store.set_flashes(self.id, self.flashes)

    def take_flashes(self) -> list[str]:
        taken, self.flashes = self.flashes, []
        if taken and self.store is not None:
            self.store.set_flashes(self.id, [])
        return taken


@dataclass(frozen=True)
class OpenedSession:
    session: AdminSession
    token: str = field(repr=False)  # for the cookie, once: only its hash is stored


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Admin sessions in the `admin_sessions` table; expired ones are deleted when met and at each login."""

    def __init__(
        self,
        db: Database,
        idle_seconds: float = IDLE_SECONDS,
        lifetime_seconds: float = LIFETIME_SECONDS,
        login_form_seconds: float = LOGIN_FORM_SECONDS,
    ) -> None:
        self.db = db
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self.login_form_seconds = login_form_seconds
        self._login_key: bytes | None = None

    def open(self, principal: Principal) -> OpenedSession:
        """A new session for a verified admin key: a fresh token, so a planted cookie is worth nothing."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        row = AdminSessionRow(
            token_hash=_hash(token),
            api_key_id=principal.key_id,
            csrf_token=secrets.token_urlsafe(32),
            flashes=[],
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.lifetime_seconds),
        )
        with self.db.write() as session:
            session.execute(delete(AdminSessionRow).where(self._expired(now)))
            session.add(row)
        return OpenedSession(AdminSession(row.token_hash, row.csrf_token, principal, [], self), token)

    def get(self, token: str | None) -> AdminSession | None:
        """The live session of this cookie value, if its key is still valid and still has the admin scope."""
        if not token:
            return None
        token_hash = _hash(token)
        now = utcnow()
        with self.db.read() as session:
            found = session.execute(
                select(AdminSessionRow, ApiKeyRow)
                .join(ApiKeyRow, ApiKeyRow.id == AdminSessionRow.api_key_id)
                .where(AdminSessionRow.token_hash == token_hash)
            ).one_or_none()
        if found is None:
            return None
        row, key = found
        principal = Principal(key.id, key.name, frozenset(Scope(s) for s in key.scopes))
        if self._has_expired(row, now):
            self.end(token_hash)
            return None
        if key.revoked_at is not None or not principal.allows(Scope.ADMIN):
            self.end(token_hash)
            log.info("admin session ended: key revoked or no longer admin", extra={"key_id": key.id})
            return None
        if (now - as_utc(row.last_seen_at)).total_seconds() >= min(TOUCH_SECONDS, self.idle_seconds / 4):
            with self.db.write() as session:
                session.execute(
                    update(AdminSessionRow)
                    .where(AdminSessionRow.token_hash == token_hash)
                    .values(last_seen_at=now)
                )
        return AdminSession(row.token_hash, row.csrf_token, principal, list(row.flashes), self)

    def end(self, session_id: str) -> None:
        """End a session (by its id, the token's hash) in every worker and replica."""
        with self.db.write() as session:
            session.execute(delete(AdminSessionRow).where(AdminSessionRow.token_hash == session_id))

    def set_flashes(self, session_id: str, flashes: list[str]) -> None:
        with self.db.write() as session:
            session.execute(
                update(AdminSessionRow)
                .where(AdminSessionRow.token_hash == session_id)
                .values(flashes=list(flashes))
            )

    # ---- the login form, before there is a session -------------------------------------------------

    def login_form_token(self, nonce: str) -> str:
        """The token a login form carries, valid with the cookie holding `nonce` for a while."""
        issued = str(int(time.time()))
        return f"{issued}.{self._sign(nonce, issued)}"

    def login_form_valid(self, nonce: str | None, token: str | None) -> bool:
        """The posted form was shown by this hub (any replica) to this browser, not long ago."""
        if not nonce or not token:
            return False
        issued, _, signature = token.partition(".")
        if not issued.isdigit() or not tokens_match(self._sign(nonce, issued), signature):
            return False
        return 0 <= time.time() - int(issued) <= self.login_form_seconds

    def _sign(self, nonce: str, issued: str) -> str:
        return sign_sha256(self._key(), f"{LOGIN_KEY}\n{nonce}\n{issued}".encode())

    def _key(self) -> bytes:
        if self._login_key is None:
            self._login_key = _shared_secret(self.db, LOGIN_KEY).encode()
        return self._login_key

    def _expired(self, now: datetime) -> ColumnElement[bool]:
        return or_(
            AdminSessionRow.expires_at <= now,
            AdminSessionRow.last_seen_at <= now - timedelta(seconds=self.idle_seconds),
        )

    def _has_expired(self, row: AdminSessionRow, now: datetime) -> bool:
        idle = (now - as_utc(row.last_seen_at)).total_seconds()
        return as_utc(row.expires_at) <= now or idle >= self.idle_seconds


def _shared_secret(db: Database, name: str) -> str:
    """The secret called `name`, made the first time any replica asks for it."""
    with db.read() as session:
        value = session.scalar(select(HubSecretRow.value).where(HubSecretRow.name == name))
    if value is not None:
        return value
    try:
        with db.write() as session:
            made = secrets.token_urlsafe(48)
            session.add(HubSecretRow(name=name, value=made, created_at=utcnow()))
        return made
    except IntegrityError:
        # Another replica made it first: everyone uses that one.
        with db.read() as session:
            return str(session.scalar(select(HubSecretRow.value).where(HubSecretRow.name == name)))


def store(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.admin_sessions
    return sessions


def current(request: Request) -> AdminSession | None:
    """The browser's logged-in session, if it has a live one."""
    return store(request).get(request.cookies.get(COOKIE))


def require_admin(request: Request) -> AdminSession:
    """A logged-in session whose key is still valid and still carries the admin scope."""
    session = current(request)
    if session is None:
        raise LoginRequired
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
