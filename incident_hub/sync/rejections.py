"""Recording refused webhooks without letting anyone fill the table.

Each rejection is kept for audit (reason, body hash, an excerpt with credentials stripped), but only so
many per source address and connector id in a window: beyond that the refusals are counted, and the
next one that is recorded says how many like it were not. A refused call costs the hub no write then,
and a flood of made-up connector ids counts as one source (unknown connector ids share one key).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from incident_hub.clock import utcnow
from incident_hub.store.db import Database
from incident_hub.store.tables import WebhookRejectionRow

log = logging.getLogger(__name__)

EXCERPT_BYTES = 2048
UNKNOWN = "(unknown connector)"


@dataclass
class _Window:
    started: float
    recorded: int = 0
    suppressed: int = 0


class RejectionLog:
    def __init__(
        self,
        db: Database,
        per_window: int = 10,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.db = db
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.clock = clock
        self.max_sources = max_sources
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def record(
        self, connector_id: str, known: bool, status: int, reason: str, kept_body: bytes, remote: str | None
    ) -> bool:
        """Keep one rejection (its body already stripped of credentials); False when it was only counted."""
        key = (remote or "-", connector_id if known else UNKNOWN)
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.started >= self.window_seconds:
                if window is None and len(self._windows) >= self.max_sources:
                    self._windows.clear()
                carried = window.suppressed if window is not None else 0
                window = self._windows[key] = _Window(now, suppressed=carried)
            if window.recorded >= self.per_window:
                window.suppressed += 1
                if window.suppressed == 1:
                    log.warning(
                        "webhook rejections from one source are counted, not stored",
                        extra={"connector": key[1], "remote": remote, "per_window": self.per_window},
                    )
                return False
            window.recorded += 1
            suppressed, window.suppressed = window.suppressed, 0
        if suppressed:
            reason = f"{reason} (and {suppressed} more like it from this source, not stored)"
        log.warning("webhook rejected", extra={"connector": connector_id, "status": status, "reason": reason})
        with self.db.write() as session:
            session.add(
                WebhookRejectionRow(
                    connector_id=connector_id[:200],
                    received_at=utcnow(),
                    status=status,
                    reason=reason[:2000],
                    body_sha256=hashlib.sha256(kept_body).hexdigest(),
                    body_excerpt=kept_body[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
                    remote_addr=remote,
                )
            )
        return True
