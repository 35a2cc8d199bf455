"""The sandbox's account, alerts and asynchronous requests, and the changes people and the API make.

Every change returns the `Occurrence`s it causes (each with a copy of the alert right after), so the
caller sends the webhooks after the change, in order. Refusals raise `OpsgenieError` for synchronous
checks; an action on an alert that does not exist is accepted (202) and its request ends failed with
"Alert does not exist" (docs.opsgenie.com Alert API, "Get Request Status", second sample response).
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from incident_hub.sandbox.common import SandboxState
from incident_hub.sandbox.opsgenie.model import (
    Actor,
    Alert,
    AlertLog,
    Escalation,
    Note,
    Occurrence,
    OpsgenieError,
    Person,
    RequestRecord,
    Team,
)

INTEGRATION_ID = "4f1c1e38-6a7e-4d1b-9a65-0b6f5f1c2a11"
INTEGRATION_NAME = "incident-hub API"
PEOPLE = (
    Person("8d43133c-a002-4e95-bf2b-2d6f95e47c96", "mia@example.com", "Mia Krystof"),
    Person("daed1180-0ce8-438b-8f8e-57e1a5920a2d", "sam@example.com", "Sam Okafor"),
)
TEAMS = (
    Team("a1b2c3d4-0000-4000-8000-000000000001", "payments"),
    Team("a1b2c3d4-0000-4000-8000-000000000002", "platform"),
)
ESCALATIONS = (
    Escalation("e5c4b3a2-0000-4000-8000-000000000001", "payments_escalation"),
    Escalation("e5c4b3a2-0000-4000-8000-000000000002", "platform_escalation"),
)
DOES_NOT_EXIST = "Alert does not exist"


@dataclass
class RequestKnobs:
    """How the sandbox processes asynchronous requests (beside the common knobs)."""

    delay_seconds: float = 0.0
    """A request status answers 404 ("not processed yet") for this long after the 202."""
    fail_next: list[str] = field(default_factory=list)
    """Status texts: each of the next asynchronous requests ends failed with one (202, then failed)."""


@dataclass
class OpsgenieState(SandboxState):
    """Alerts and requests; every method takes `lock` (routes run concurrently)."""

    api_key: str = ""
    people: dict[str, Person] = field(default_factory=lambda: {p.username: p for p in PEOPLE})
    teams: dict[str, Team] = field(default_factory=lambda: {t.name: t for t in TEAMS})
    escalations: dict[str, Escalation] = field(default_factory=lambda: {e.name: e for e in ESCALATIONS})
    alerts: dict[str, Alert] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)
    logs: dict[str, list[AlertLog]] = field(default_factory=dict)
    """Alert id -> its activity log, oldest first."""
    request_knobs: RequestKnobs = field(default_factory=RequestKnobs)
    webhook_auth: str = "header"
    webhook_header: str = "X-Incident-Hub-Secret"
    webhook_username: str = "opsgenie"
    _last_ns: int = 0

    # ---- lookups -------------------------------------------------------------------------------------

    def find(self, identifier: str, identifier_type: str = "id") -> Alert | None:
        """An alert by id, tiny id, or alias; an alias names only an open alert (alert search help)."""
        with self.lock:
            if identifier_type == "id":
                return self.alerts.get(identifier)
            if identifier_type == "tiny":
                return next((a for a in self.alerts.values() if a.tiny_id == identifier), None)
            return self.open_with_alias(identifier)

    def open_with_alias(self, alias: str) -> Alert | None:
        with self.lock:
            return next((a for a in self.alerts.values() if a.alias == alias and a.status == "open"), None)

    def team_named(self, name_or_id: str) -> str:
        """A team's name, given its name or id (recipients name a team either way)."""
        return next((t.name for t in self.teams.values() if t.id == name_or_id), name_or_id)

    def team_name(self, team_id: str) -> str:
        return next((t.name for t in self.teams.values() if t.id == team_id), team_id)

    def api_actor(self, user: object = None, source: object = None) -> Actor:
        name = user if isinstance(user, str) and user else INTEGRATION_NAME
        return Actor("api", name, "", source if isinstance(source, str) else "")

    def person(self, username: str) -> Actor:
        found = self.people.get(username)
        if found is None:
            raise OpsgenieError(422, f"User {username} does not exist")
        return Actor("user", found.username, found.id)

    def _tick(self) -> int:
        """A strictly increasing nanosecond clock: `alert.updatedAt` in webhooks is nanoseconds."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    # ---- asynchronous requests -----------------------------------------------------------------------

    def take_request_failure(self) -> str | None:
        with self.lock:
            return self.request_knobs.fail_next.pop(0) if self.request_knobs.fail_next else None

    def record_request(
        self, action: str, *, ok: bool, status: str, alert: Alert | None = None
    ) -> RequestRecord:
        with self.lock:
            now = datetime.now(UTC)
            record = RequestRecord(
                id=str(uuid.uuid4()),
                action=action,
                integration_id=INTEGRATION_ID,
                visible_at=now + timedelta(seconds=self.request_knobs.delay_seconds),
                is_success=ok,
                status=status,
                alert_id=alert.id if alert and ok else "",
                alias=alert.alias if alert and ok else "",
                processed_at=now,
            )
            self.requests[record.id] = record
            return record

    # ---- changes -------------------------------------------------------------------------------------

    def create_alert(
        self,
        actor: Actor,
        *,
        message: str,
        alias: str | None = None,
        description: str = "",
        priority: str = "P3",
        tags: list[str] | None = None,
        details: dict[str, str] | None = None,
        entity: str = "",
        team_names: list[str] | None = None,
        source: str = "",
    ) -> tuple[Alert, str, list[Occurrence]]:
        """A new alert, or (an open alert has the alias) that alert's count raised: no new alert."""
        with self.lock:
            if alias:
                existing = self.open_with_alias(alias)
                if existing is not None:
                    existing.count += 1
                    existing.last_occurred_at = datetime.now(UTC)
                    existing.updated_ns = self._tick()
                    return existing, "Alert is updated", []
            unknown = [name for name in team_names or [] if name not in self.teams]
            if unknown:
                raise OpsgenieError(422, f"Team {unknown[0]} does not exist")
            now = datetime.now(UTC)
            alert_id = str(uuid.uuid4())
            alert = Alert(
                id=alert_id,
                tiny_id=str(self.next_number()),
                # "Opsgenie will assign a unique value for this field ... if one is not specified" (Alerts
                # and Alert Fields); the request status sample shows it equal to the alert id.
                alias=alias or alert_id,
                message=message,
                created_at=now,
                updated_ns=self._tick(),
                source=source or (actor.username if actor.kind == "user" else actor.source_name),
                integration={"id": INTEGRATION_ID, "name": INTEGRATION_NAME, "type": "API"}
                if actor.kind == "api"
                else {"id": "", "name": "Web", "type": "Web"},
                description=description,
                priority=priority,
                tags=list(tags or []),
                details=dict(details or {}),
                entity=entity,
                team_ids=[self.teams[name].id for name in team_names or []],
                last_occurred_at=now,
            )
            self.alerts[alert.id] = alert
            self._log(alert, "Create", actor, message)
            return alert, "Created alert", [Occurrence("Create", actor, copy.deepcopy(alert))]

    def acknowledge(self, alert: Alert, actor: Actor) -> list[Occurrence]:
        with self.lock:
            if alert.acknowledged or alert.status == "closed":
                return []
            alert.acknowledged = True
            alert.acknowledged_by = actor.username
            alert.ack_time_ms = _elapsed_ms(alert)
            return self._changed(alert, "Acknowledge", actor)

    def unacknowledge(self, alert: Alert, actor: Actor) -> list[Occurrence]:
        with self.lock:
            if not alert.acknowledged or alert.status == "closed":
                return []
            alert.acknowledged = False
            return self._changed(alert, "UnAcknowledge", actor)

    def close(self, alert: Alert, actor: Actor) -> list[Occurrence]:
        with self.lock:
            if alert.status == "closed":
                return []
            alert.status = "closed"
            alert.closed_by = actor.username
            alert.close_time_ms = _elapsed_ms(alert)
            return self._changed(alert, "Close", actor)

    def add_note(self, alert: Alert, actor: Actor, text: str) -> list[Occurrence]:
        with self.lock:
            now = datetime.now(UTC)
            alert.notes.append(Note(text, actor.username, now, str(time.time_ns())))
            return self._changed(alert, "AddNote", actor, note=text)

    def set_priority(self, alert: Alert, actor: Actor, priority: str) -> list[Occurrence]:
        with self.lock:
            if alert.priority == priority:
                return []
            alert.priority = priority
            self._log(alert, "UpdatePriority", actor, priority)
            return self._changed(alert, "UpdatePriority", actor, priority=int(priority[1]))

    def set_message(self, alert: Alert, actor: Actor, message: str) -> list[Occurrence]:
        with self.lock:
            if alert.message == message:
                return []
            alert.message = message
            self._log(alert, "UpdateMessage", actor, message)
            return self._changed(alert, "UpdateMessage", actor)

    def set_description(self, alert: Alert, actor: Actor, description: str) -> list[Occurrence]:
        with self.lock:
            if alert.description == description:
                return []
            alert.description = description
            return self._changed(alert, "UpdateDescription", actor, description=description[:1000])

    def assign(self, alert: Alert, actor: Actor, username: str) -> list[Occurrence]:
        with self.lock:
            if username not in self.people:
                raise OpsgenieError(422, f"User {username} does not exist")
            alert.owner = username
            if actor.kind == "user" and actor.username == username:
                return self._changed(alert, "TakeOwnership", actor)
            return self._changed(alert, "AssignOwnership", actor, owner=username)

    def add_team(self, alert: Alert, actor: Actor, name: str) -> list[Occurrence]:
        with self.lock:
            team = self.teams.get(name)
            if team is None:
                raise OpsgenieError(422, f"Team {name} does not exist")
            if team.id in alert.team_ids:
                return []
            alert.team_ids.append(team.id)
            return self._changed(alert, "AddTeam", actor, team=name)

    def escalate(self, alert: Alert, actor: Actor, name: str) -> list[Occurrence]:
        with self.lock:
            if name not in self.escalations:
                raise OpsgenieError(422, f"Escalation {name} does not exist")
            # The webhook for it has its own shape (zulip-fixtures/escalate.json): no alert fields, and
            # `escalationId`, `escalationName`, `escalationNotify` instead.
            return self._changed(alert, "Escalate", actor, escalation=self.escalations[name])

    def delete(self, alert: Alert, actor: Actor) -> list[Occurrence]:
        with self.lock:
            self.alerts.pop(alert.id, None)
            return self._changed(alert, "Delete", actor)

    def alert_log(self, alert_id: str) -> list[AlertLog]:
        with self.lock:
            return list(self.logs.get(alert_id, ()))

    def _log(self, alert: Alert, action: str, actor: Actor, value: str | None = None) -> None:
        kind = "note" if action == "AddNote" else "system" if actor.kind == "api" else "alertUser"
        text = f"{action} by {actor.username}" + (f": {value}" if value is not None else "")
        entry = AlertLog(text, kind, actor.username, datetime.now(UTC), action, value)
        self.logs.setdefault(alert.id, []).append(entry)

    def _changed(self, alert: Alert, action: str, actor: Actor, **extra: object) -> list[Occurrence]:
        if action not in ("UpdatePriority", "UpdateMessage"):
            self._log(alert, action, actor, str(extra["note"]) if "note" in extra else None)
        alert.updated_ns = self._tick()
        return [Occurrence(action, actor, copy.deepcopy(alert), dict(extra))]


def _elapsed_ms(alert: Alert) -> int:
    return int((datetime.now(UTC) - alert.created_at).total_seconds() * 1000)
