"""What a PagerDuty incident is made of, who acts on it, and the errors PagerDuty answers with.

Error codes and messages come from PagerDuty's table (developer-docs `docs/REST-API/14-Errors.md`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Status = Literal["triggered", "acknowledged", "resolved"]


class PagerDutyError(Exception):
    """A request PagerDuty answers with an error body `{"error": {"message", "code", "errors"}}`."""

    def __init__(self, status: int, message: str, code: int, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors or []


def not_found(what: str) -> PagerDutyError:
    return PagerDutyError(404, "Not Found", 2100, [f"{what} Not Found"])


def invalid(*errors: str) -> PagerDutyError:
    return PagerDutyError(400, "Invalid Input Provided", 2001, list(errors))


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user (API `From` header, or a person in the UI) or a service's integration."""

    kind: Literal["user", "service"]
    id: str


@dataclass(frozen=True)
class Note:
    id: str
    user_id: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Responder:
    user_id: str
    requester_id: str
    message: str
    requested_at: datetime
    state: str = "pending"


@dataclass
class Incident:
    id: str
    number: int
    title: str
    service_id: str
    policy_id: str
    incident_key: str
    urgency: str
    created_at: datetime
    last_status_change_by: Actor
    first_trigger_log_entry_id: str
    status: Status = "triggered"
    priority_id: str | None = None
    details: str | None = None
    escalation_level: int = 1
    assigned_via: str = "escalation_policy"
    assignments: list[tuple[str, datetime]] = field(default_factory=list)
    acknowledgements: list[tuple[Actor, datetime]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    responders: list[Responder] = field(default_factory=list)
    resolved_at: datetime | None = None
    reopened_at: datetime | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_status_change_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class LogEntry:
    id: str
    type: str
    incident_id: str
    created_at: datetime
    agent: Actor
    channel: str
    summary: str
    note: str | None = None
    assignees: tuple[str, ...] = ()


@dataclass(frozen=True)
class Occurrence:
    """One V3 webhook event to send: what happened, who did it, and the incident right after."""

    event_type: str
    at: datetime
    agent: Actor
    incident: Incident
    note: Note | None = None
    responder: Responder | None = None
