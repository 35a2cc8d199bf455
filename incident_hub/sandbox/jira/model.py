"""What a Jira Cloud site holds: users and their API tokens, projects, the workflow, priorities, custom
fields, and the issues with their comments, entity properties and change history."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from incident_hub.sandbox.common import SandboxState

Document = dict[str, Any]
"""An Atlassian Document Format (ADF) document: REST v3 rich text (description, comment body)."""


class JiraError(Exception):
    """A Jira error answer: `{"errorMessages": [...], "errors": {field: message}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        messages: list[str] | None = None,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {messages or ''} {errors or ''}")
        self.status = status
        self.messages = messages or []
        self.errors = errors or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


@dataclass(frozen=True)
class User:
    account_id: str
    display_name: str
    email: str
    time_zone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str
    """Jira's status category key: `new`, `indeterminate` or `done`."""


# Jira Cloud's fixed status categories: key -> (id, name, colour).
STATUS_CATEGORIES: dict[str, tuple[int, str, str]] = {
    "new": (2, "To Do", "blue-gray"),
    "indeterminate": (4, "In Progress", "yellow"),
    "done": (3, "Done", "green"),
}


@dataclass(frozen=True)
class Resolution:
    id: str
    name: str
    description: str


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str
    """Target status id."""
    sources: frozenset[str] = frozenset()
    """Status ids it is available from; empty means a global transition (from any other status)."""
    resolution: str | None = None
    """Resolution id set on entering a done status; leaving done always clears the resolution."""

    def available_from(self, status_id: str) -> bool:
        return status_id != self.to and (not self.sources or status_id in self.sources)


@dataclass(frozen=True)
class Priority:
    id: str
    name: str
    color: str


@dataclass(frozen=True)
class CustomField:
    id: str
    name: str
    options: tuple[tuple[str, str], ...] = ()
    """(option id, value) for a single-select list; a free-text field when empty."""

    def option(self, wanted: Any) -> tuple[str, str] | None:
        """The option named by a REST value `{"value": ...}` or `{"id": ...}`."""
        if not isinstance(wanted, dict):
            return None
        for option_id, value in self.options:
            if wanted.get("id") == option_id or wanted.get("value") == value:
                return option_id, value
        return None


@dataclass(frozen=True)
class IssueType:
    id: str
    name: str
    description: str


@dataclass
class Project:
    id: str
    key: str
    name: str
    lead: str
    issue_types: tuple[IssueType, ...]
    required: dict[str, str] = field(default_factory=dict)
    """Custom field id -> the error message Jira gives when it is missing on create."""
    issue_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))


@dataclass(frozen=True)
class ChangeItem:
    """One line of a changelog, as Jira words it (`field` is the display name, `fieldId` the id)."""

    field: str
    fieldtype: str
    field_id: str
    from_: str | None
    from_string: str | None
    to: str | None
    to_string: str | None
    is_user: bool = False
    """Assignee and reporter items carry `tmpFromAccountId`/`tmpToAccountId` in Cloud webhooks."""


@dataclass(frozen=True)
class History:
    id: str
    author: User
    created: datetime
    items: tuple[ChangeItem, ...]


@dataclass
class Comment:
    id: str
    issue_id: str
    author: User
    body: Document
    created: datetime
    updated: datetime
    update_author: User


@dataclass
class Issue:
    id: str
    key: str
    project: Project
    issue_type: IssueType
    summary: str
    status: Status
    priority: Priority
    reporter: User
    creator: User
    created: datetime
    updated: datetime
    status_changed: datetime
    description: Document | None = None
    labels: list[str] = field(default_factory=list)
    assignee: User | None = None
    resolution: Resolution | None = None
    resolution_date: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    """Custom field id -> text, or (option id, value) for select lists."""
    comments: list[Comment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    histories: list[History] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JiraState(SandboxState):
    """One Jira Cloud site. Guard reads and writes with `lock` (the API runs on its own thread)."""

    users: dict[str, User] = field(default_factory=dict)
    api_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Email -> (API token, account id)."""
    service_account: str = ""
    """The account the hub's connector signs in as (the API account)."""
    projects: dict[str, Project] = field(default_factory=dict)
    statuses: dict[str, Status] = field(default_factory=dict)
    initial_status: str = ""
    transitions: tuple[Transition, ...] = ()
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    priorities: dict[str, Priority] = field(default_factory=dict)
    default_priority: str = ""
    custom_fields: dict[str, CustomField] = field(default_factory=dict)
    issues: dict[str, Issue] = field(default_factory=dict)
    indexed_properties: frozenset[str] = frozenset()
    """Entity property keys JQL can search. Real Jira indexes only properties an app declares
    (Connect `jiraEntityProperties`, Forge `jira:entityProperty`); others are unknown to JQL."""
    search_lag_seconds: float = 0.0
    """Issues changed this recently are not yet visible to `/search/jql` unless named in
    `reconcileIssues` (the endpoint is eventually consistent, see its description in the spec)."""
    clock: Callable[[], datetime] = _utcnow
    issue_ids: Iterator[int] = field(default_factory=lambda: itertools.count(10000))
    comment_ids: Iterator[int] = field(default_factory=lambda: itertools.count(10000))
    history_ids: Iterator[int] = field(default_factory=lambda: itertools.count(10100))

    def now(self) -> datetime:
        """Jira keeps milliseconds."""
        moment = self.clock()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def find_issue(self, id_or_key: str) -> Issue:
        wanted = id_or_key.upper()
        for issue in self.issues.values():
            if issue.id == wanted or issue.key == wanted:
                return issue
        raise JiraError(404, ["Issue does not exist or you do not have permission to see it."])

    def find_project(self, id_or_key: str) -> Project | None:
        return next((p for p in self.projects.values() if id_or_key in (p.id, p.key)), None)

    def authenticate(self, email: str, token: str) -> User | None:
        known = self.api_tokens.get(email)
        if known is None or known[0] != token:
            return None
        return self.users[known[1]]


def jira_time(moment: datetime, zone: ZoneInfo) -> str:
    """Jira's timestamp format, in the viewer's time zone: `2026-11-24T14:05:00.000+0000`."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.strftime("%z")
