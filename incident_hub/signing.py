"""The one HMAC helper: signatures the hub sends, and vendor signatures it checks."""

from __future__ import annotations

import hashlib
import hmac


def sign_sha256(secret: str | bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of `body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_matches(secret: str | bytes, body: bytes, presented: str) -> bool:
    """Constant-time check of one presented hex signature."""
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is attacker-controlled.
    return hmac.compare_digest(sign_sha256(secret, body).encode(), presented.strip().lower().encode())
