"""Admin actions taken in the UI go to the hub's audit log, as the API's do."""

from __future__ import annotations

from typing import Any

from incident_hub.admin.session import AdminSession
from incident_hub.hub import Hub


def record_action(hub: Hub, session: AdminSession, action: str, target: str, detail: dict[str, Any]) -> None:
    hub.audit.record(session.actor, action, target, {**detail, "via": "admin-ui"})
