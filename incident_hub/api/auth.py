"""API keys: `Authorization: Bearer ih_<prefix>_<secret>`, stored as SHA-256 hashes, with scopes
`read` < `write` < `admin` (each includes the ones before it)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from incident_hub.api.throttle import FailureThrottle
from incident_hub.clock import utcnow
from incident_hub.errors import HubError
from incident_hub.store.db import Database
from incident_hub.store.tables import ApiKeyRow


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


class Unauthenticated(HubError):
    status = 401
    title = "Unauthorized"


class Forbidden(HubError):
    status = 403
    title = "Forbidden"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return any(_RANK[s] >= _RANK[scope] for s in self.scopes)


@dataclass(frozen=True)
class IssuedKey:
    id: str
    name: str
    scopes: list[Scope]
    key: str


@dataclass(frozen=True)
class KeyInfo:
    """An issued key as an operator may see it: no hash, only the public prefix."""

    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Issue, verify and revoke keys. Verified keys are trusted for `cache_seconds` (revocation lag)."""

    def __init__(
        self, db: Database, cache_seconds: float = 30.0, failures: FailureThrottle | None = None
    ) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        # Failed attempts per client address (API and admin login share it).
        self.failures = failures if failures is not None else FailureThrottle()
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scopes: list[Scope]) -> IssuedKey:
        prefix = secrets.token_hex(6)
        key = f"ih_{prefix}_{secrets.token_urlsafe(32)}"
        key_id = str(uuid.uuid4())
        with self.db.write() as session:
            session.add(
                ApiKeyRow(
                    id=key_id,
                    name=name,
                    prefix=prefix,
                    key_hash=_hash(key),
                    scopes=sorted(s.value for s in scopes),
                    created_at=utcnow(),
                )
            )
        return IssuedKey(key_id, name, scopes, key)

    def issued(self) -> list[KeyInfo]:
        """Every key ever issued, oldest first, without anything that could authenticate."""
        with self.db.read() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))
            return [
                KeyInfo(
                    id=r.id,
                    name=r.name,
                    prefix=r.prefix,
                    scopes=[Scope(s) for s in r.scopes],
                    created_at=r.created_at,
                    revoked_at=r.revoked_at,
                )
                for r in rows
            ]

    def revoke(self, key_id: str) -> bool:
        with self.db.write() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
        with self._lock:
            self._cache.clear()
        return True

    def cached(self, key: str) -> Principal | None:
        """The principal of a key verified within `cache_seconds`, without touching the database."""
        digest = _hash(key)
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    def verify(self, key: str, remote: str | None = None) -> Principal | None:
        """The key's principal, or None. A caller at a throttled `remote` address gets an answer only
        for keys verified recently (no database lookup); otherwise `Throttled` is raised. A failure
        counts against `remote`."""
        cached = self.cached(key)
        if cached is not None:
            return cached
        self.failures.refuse(remote)
        principal = self._lookup(key, _hash(key), time.monotonic())
        if principal is None:
            self.failures.failed(remote, "api key")
        return principal

    def _lookup(self, key: str, digest: str, now: float) -> Principal | None:
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "ih":
            return None
        with self.db.read() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == parts[1]))
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
            return None
        principal = Principal(row.id, row.name, frozenset(Scope(s) for s in row.scopes))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_seconds, principal)
        return principal


_bearer = HTTPBearer(auto_error=False, description="An API key made by `incident-hub apikey create`.")


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers whose key carries `scope` (or a higher one)."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        keys: ApiKeys = request.app.state.hub.api_keys
        # A key seen lately is answered on the event loop; only a database look-up takes a thread.
        principal = keys.cached(credentials.credentials)
        if principal is None:
            remote = request.client.host if request.client else None
            principal = await run_in_threadpool(keys.verify, credentials.credentials, remote)
        if principal is None:
            raise Unauthenticated("unknown or revoked API key")
        if not principal.allows(scope):
            raise Forbidden(f"this key lacks the '{scope}' scope")
        return principal

    dependency.required_scope = scope  # type: ignore[attr-defined]  # read by the route-walk test
    return dependency


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
