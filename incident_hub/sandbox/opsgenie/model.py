"""What an Opsgenie alert is made of, who acts on it, and the errors Opsgenie answers with.

Field names and limits follow the Alert API v2 (`vendor/opsgenie/opsgenie-oas/swagger.json`, definitions
`BaseAlert`, `Alert`, `AlertRequestStatus`, `ErrorResponse`) and docs.opsgenie.com "Alert API" (message at
most 130 characters, alias 512, description 15000, note 25000, at most 20 tags).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15_000
NOTE_MAX = 25_000
TAGS_MAX = 20
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")


class OpsgenieError(Exception):
    """A request Opsgenie answers with `ErrorResponse`: `{message, took, requestId}` (plus `errors`)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def unprocessable(field_name: str, problem: str) -> OpsgenieError:
    return OpsgenieError(
        422, "Request body is not processable. Please check the errors.", {field_name: problem}
    )


@dataclass(frozen=True)
class Person:
    id: str
    username: str
    full_name: str


@dataclass(frozen=True)
class Team:
    id: str
    name: str


@dataclass(frozen=True)
class Escalation:
    id: str
    name: str


@dataclass(frozen=True)
class Actor:
    """Who acts: the API integration (the key's owner) or a person in Opsgenie's web UI.

    `username` is what webhooks report as `alert.username`: a person's login, or for API calls the
    payload's `user` field (docs: "Display name of the request owner"), else the integration's name.
    """

    kind: Literal["api", "user"]
    username: str
    user_id: str = ""
    source_name: str = ""


@dataclass(frozen=True)
class AlertLog:
    """One line of an alert's activity log (Alert API, "List Alert Logs"): what was done, by whom."""

    log: str
    type: str
    owner: str
    created_at: datetime
    action: str
    value: str | None = None


@dataclass(frozen=True)
class Note:
    note: str
    owner: str
    created_at: datetime
    offset: str


@dataclass
class Alert:
    id: str
    tiny_id: str
    alias: str
    message: str
    created_at: datetime
    updated_ns: int
    source: str
    integration: dict[str, str]
    description: str = ""
    priority: str = "P3"
    tags: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    entity: str = ""
    team_ids: list[str] = field(default_factory=list)
    status: Literal["open", "closed"] = "open"
    acknowledged: bool = False
    owner: str = ""
    count: int = 1
    last_occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    notes: list[Note] = field(default_factory=list)
    acknowledged_by: str | None = None
    closed_by: str | None = None
    ack_time_ms: int | None = None
    close_time_ms: int | None = None


@dataclass
class RequestRecord:
    """One asynchronous request (202) and how it ended, for `GET /v2/alerts/requests/{requestId}`."""

    id: str
    action: str
    integration_id: str
    visible_at: datetime
    is_success: bool
    status: str
    alert_id: str = ""
    alias: str = ""
    processed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Occurrence:
    """One webhook to send: the action, who made it, the alert right after, action-specific fields."""

    action: str
    actor: Actor
    alert: Alert
    extra: dict[str, Any] = field(default_factory=dict)
