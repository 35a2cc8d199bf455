"""Canonical incident types and the status lifecycle: the one vocabulary the core speaks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    WithJsonSchema,
    model_validator,
)


class Severity(StrEnum):
    SEV1_CRITICAL = "SEV1_CRITICAL"
    SEV2_HIGH = "SEV2_HIGH"
    SEV3_MEDIUM = "SEV3_MEDIUM"
    SEV4_LOW = "SEV4_LOW"

    def raised(self) -> Severity:
        """One level more severe; SEV1 stays SEV1."""
        order = list(Severity)
        return order[max(order.index(self) - 1, 0)]

    def rank(self) -> int:
        """1 for SEV1 .. 4 for SEV4."""
        return list(Severity).index(self) + 1


class Status(StrEnum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    INVESTIGATING = "INVESTIGATING"
    IDENTIFIED = "IDENTIFIED"
    MONITORING = "MONITORING"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"

    @property
    def is_open(self) -> bool:
        return self not in (Status.RESOLVED, Status.CLOSED)


OPEN_STATUSES: tuple[Status, ...] = tuple(s for s in Status if s.is_open)

_ACTIVE = (Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.IDENTIFIED, Status.MONITORING)

# Which status moves are allowed. Working statuses move forward, or one step back when a hypothesis fails
# (IDENTIFIED -> INVESTIGATING, MONITORING -> INVESTIGATING/IDENTIFIED, ACKNOWLEDGED -> OPEN to hand it
# back); any of them may be RESOLVED. RESOLVED may be reopened (a recorded move back to INVESTIGATING or
# OPEN) or CLOSED; CLOSED moves only through an explicit reopen (see `transition(..., reopen=True)`).
LIFECYCLE: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({*_ACTIVE, Status.RESOLVED, Status.CLOSED}),
    Status.ACKNOWLEDGED: frozenset(
        {Status.OPEN, Status.INVESTIGATING, Status.IDENTIFIED, Status.MONITORING, Status.RESOLVED}
    ),
    Status.INVESTIGATING: frozenset(
        {Status.ACKNOWLEDGED, Status.IDENTIFIED, Status.MONITORING, Status.RESOLVED}
    ),
    Status.IDENTIFIED: frozenset({Status.INVESTIGATING, Status.MONITORING, Status.RESOLVED}),
    Status.MONITORING: frozenset({Status.INVESTIGATING, Status.IDENTIFIED, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.OPEN, Status.INVESTIGATING, Status.CLOSED}),
    Status.CLOSED: frozenset(),
}
REOPEN_FROM_CLOSED: frozenset[Status] = frozenset({Status.OPEN, Status.INVESTIGATING})


class IllegalTransition(Exception):
    """A status move the lifecycle does not allow."""

    def __init__(self, current: Status, target: Status, allowed: list[Status]) -> None:
        super().__init__(f"cannot move from {current} to {target}")
        self.current = current
        self.target = target
        self.allowed = allowed


def allowed_moves(current: Status, *, reopen: bool = False) -> list[Status]:
    moves = set(LIFECYCLE[current])
    if reopen and current is Status.CLOSED:
        moves |= REOPEN_FROM_CLOSED
    return sorted(moves, key=list(Status).index)


@dataclass(frozen=True)
class Transition:
    """The effect of one status move: which lifecycle timestamps it sets and whether it reopens."""

    previous: Status
    status: Status
    timestamps: dict[str, datetime]
    clears: tuple[str, ...]
    reopened: bool


def transition(
    current: Status,
    target: Status,
    at: datetime,
    *,
    reopen: bool = False,
    already_set: frozenset[str] = frozenset(),
) -> Transition:
    """Check a move against the lifecycle and say which timestamps it sets (never overwriting one set)."""
    if target == current:
        raise IllegalTransition(current, target, allowed_moves(current, reopen=reopen))
    if target not in allowed_moves(current, reopen=reopen):
        raise IllegalTransition(current, target, allowed_moves(current, reopen=reopen))
    stamps: dict[str, datetime] = {}

    def stamp(name: str) -> None:
        if name not in already_set:
            stamps[name] = at

    reopened = not current.is_open and target.is_open
    if target is not Status.OPEN and target.is_open:
        stamp("acknowledged_at")
    if target is Status.MONITORING:
        stamp("mitigated_at")
    if target in (Status.RESOLVED, Status.CLOSED):
        stamp("acknowledged_at")
        stamp("resolved_at")
    if target is Status.CLOSED:
        stamp("closed_at")
    clears: tuple[str, ...] = ("resolved_at", "closed_at") if reopened else ()
    return Transition(current, target, stamps, clears, reopened)


@dataclass(frozen=True)
class SlaPolicy:
    """Deadlines per severity: acknowledge within, and resolve within, counted from detection."""

    acknowledge: dict[Severity, timedelta]
    resolve: dict[Severity, timedelta]

    def deadline(
        self,
        severity: Severity,
        detected_at: datetime,
        acknowledged_at: datetime | None,
        resolved_at: datetime | None,
    ) -> tuple[str, datetime] | None:
        """The next deadline still to meet, as (kind, when); None once resolved."""
        if resolved_at is not None:
            return None
        if acknowledged_at is None:
            return "acknowledge", detected_at + self.acknowledge[severity]
        return "resolve", detected_at + self.resolve[severity]

    def missed(
        self,
        severity: Severity,
        detected_at: datetime,
        acknowledged_at: datetime | None,
        resolved_at: datetime | None,
        now: datetime,
    ) -> str | None:
        """Which deadline was missed by `now` ("acknowledge" or "resolve"), if any."""
        ack_due = detected_at + self.acknowledge[severity]
        if (acknowledged_at or now) > ack_due:
            return "acknowledge"
        resolve_due = detected_at + self.resolve[severity]
        if (resolved_at or now) > resolve_due:
            return "resolve"
        return None


class TimelineType(StrEnum):
    DETECTED = "DETECTED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    STATUS_CHANGE = "STATUS_CHANGE"
    NOTE = "NOTE"
    ROLE_ASSIGNED = "ROLE_ASSIGNED"
    ESCALATED = "ESCALATED"
    RESOLUTION_STEP = "RESOLUTION_STEP"
    AUTOMATED_RESPONSE = "AUTOMATED_RESPONSE"
    SYNC = "SYNC"


class Impact(StrEnum):
    TOTAL_OUTAGE = "total_outage"
    PARTIAL_OUTAGE = "partial_outage"
    DEGRADED = "degraded"


class Role(StrEnum):
    COMMANDER = "commander"
    TECH_LEAD = "tech_lead"
    COMMS_LEAD = "comms_lead"


class ExecutionStatus(StrEnum):
    """The seed's execution statuses. `running`, this API's word before it followed the seed, is still
    read as `in_progress` so that older clients keep working; it is never written or returned."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def _missing_(cls, value: object) -> ExecutionStatus | None:
        if value == LEGACY_RUNNING:
            return cls.IN_PROGRESS
        return None


LEGACY_RUNNING = "running"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class AffectedService(_Model):
    """A service and how badly it is hit. A service named without an impact is `degraded`: the weakest
    impact, since the name alone says the service is affected but not how."""

    name: str = Field(min_length=1, max_length=200, examples=["checkout-api"])
    impact: Impact = Field(default=Impact.DEGRADED, examples=["partial_outage"])


class ServiceMention(_Model):
    """A service as a caller names it: the seed's plain name (`"checkout-api"`) or `{name, impact}`."""

    name: str = Field(min_length=1, max_length=200)
    impact: Impact | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


# How a mention reads in the OpenAPI schema: what callers send, not the object it is parsed into.
ServiceInput = Annotated[
    ServiceMention,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 200},
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        # null, like leaving it out: the impact the incident already lists, else degraded.
                        "impact": {"enum": [*(impact.value for impact in Impact), None]},
                    },
                    "required": ["name"],
                    "additionalProperties": False,
                },
            ],
            "examples": [
                "portfolio_management_service",
                {"name": "checkout-api", "impact": "partial_outage"},
            ],
        }
    ),
]


class ServiceImpactConflict(ValueError):
    """One service given two different impacts in the same request."""


def merge_services(
    affected: Sequence[str | ServiceMention | AffectedService | Mapping[str, Any]],
    impacts: Sequence[str | ServiceMention | AffectedService | Mapping[str, Any]] = (),
    known: Sequence[AffectedService] = (),
) -> list[AffectedService]:
    """One list of services from the seed's names, `{name, impact}` objects (both may be mixed in
    `affected`) and `impacts`, in first-mention order. A plain name keeps the impact `known` holds for
    it (so a client that only speaks names does not downgrade impacts it never saw), else `degraded`;
    an explicit impact wins over a plain name; two different explicit impacts are refused."""
    previous = {service.name: service.impact for service in known}
    explicit: dict[str, Impact] = {}
    order: list[str] = []
    for item in [*affected, *impacts]:
        mention = (
            item
            if isinstance(item, ServiceMention | AffectedService)
            else ServiceMention.model_validate(item)
        )
        name, impact = mention.name, mention.impact
        if name not in order:
            order.append(name)
        if impact is None:
            continue
        if explicit.get(name, impact) != impact:
            raise ServiceImpactConflict(
                f"service {name!r} is given two impacts: {explicit[name].value} and {impact.value}"
            )
        explicit[name] = impact
    return [
        AffectedService(name=name, impact=explicit.get(name) or previous.get(name, Impact.DEGRADED))
        for name in order
    ]


class Roles(_Model):
    commander: str | None = Field(default=None, examples=["alice"])
    tech_lead: str | None = None
    comms_lead: str | None = None


def _not_a_number(value: object) -> object:
    # Pydantic would read 0, or "0.5" in a query string, as 1970-01-01: a time is written as one (RFC 3339).
    if (isinstance(value, int | float) and not isinstance(value, bool)) or _is_number(value):
        raise ValueError("a time is an RFC 3339 string, e.g. 2026-12-07T10:00:00Z, not a number")
    return value


def _is_number(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


# A time given by a caller: an RFC 3339 string or a datetime, never a number.
Timestamp = Annotated[datetime, BeforeValidator(_not_a_number)]


class ResolutionStep(_Model):
    step_number: int = Field(ge=1, examples=[1])
    action_taken: str = Field(min_length=1, examples=["Rolled back deploy 2026.11.24-3"])
    performed_by: str | None = Field(default=None, examples=["bob"])
    timestamp: Timestamp


class AutomatedResponse(_Model):
    response_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    action_type: str = Field(min_length=1, examples=["restart_service"])
    details: dict[str, Any] = Field(default_factory=dict, examples=[{"service": "checkout-api"}])
    execution_status: ExecutionStatus = ExecutionStatus.PENDING
    executed_at: Timestamp | None = None


class Summary(_Model):
    """Structured post-incident summary."""

    impact: str | None = Field(default=None, examples=["12% of checkouts failed for 18 minutes"])
    affected_services: list[str] = Field(default_factory=list)
    root_cause: str | None = None
    resolution_steps: list[str] = Field(default_factory=list)
    # Strict: pydantic would read `true` as 1.0.
    time_taken_minutes: StrictFloat | None = Field(default=None, description="Detection to resolution.")


class TimelineEntry(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "type": "NOTE",
                    "message": "Rollback started",
                    "author": "bob",
                    "is_public": False,
                    "timestamp": "2026-11-24T14:10:00Z",
                    "origin_connector": None,
                    "external_comment_id": None,
                }
            ]
        },
    )

    id: int
    type: TimelineType
    message: str
    author: str | None
    is_public: bool
    timestamp: datetime
    origin_connector: str | None = None
    external_comment_id: str | None = None


class ExternalRef(_Model):
    """Link to the same incident in a vendor system."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "connector_id": "jira",
                    "external_id": "10042",
                    "external_key": "OPS-17",
                    "url": "https://example.atlassian.net/browse/OPS-17",
                    "last_synced_version": 3,
                    "last_vendor_timestamp": "2026-11-24T14:05:00Z",
                    "fingerprint": "9f2c…",
                }
            ]
        },
    )

    connector_id: str
    external_id: str
    external_key: str | None = None
    url: str | None = None
    last_synced_version: int | None = None
    last_vendor_timestamp: datetime | None = None
    fingerprint: str | None = None


class Escalation(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "reason": "Error budget burning",
                    "from_severity": "SEV2_HIGH",
                    "to_severity": "SEV1_CRITICAL",
                    "from_team": "payments",
                    "to_team": "payments",
                    "escalated_by": "alice",
                    "escalated_at": "2026-11-24T14:07:00Z",
                }
            ]
        },
    )

    id: int
    reason: str
    from_severity: Severity
    to_severity: Severity
    from_team: str | None
    to_team: str | None
    escalated_by: str | None
    escalated_at: datetime


_PAIRED_FIELDS = (("incident_id", "number"), ("affected_services", "service_impacts"))


class Incident(_Model):
    """The canonical incident, as the API returns it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f",
                    "incident_id": "INC-20261124-001",
                    "number": "INC-20261124-001",
                    "title": "Checkout API returning 502s",
                    "description": "Error rate above 20%",
                    "severity": "SEV2_HIGH",
                    "status": "ACKNOWLEDGED",
                    "affected_services": ["checkout-api"],
                    "service_impacts": [{"name": "checkout-api", "impact": "partial_outage"}],
                    "assigned_team": "payments",
                    "assignee": "alice",
                    "roles": {"commander": "alice", "tech_lead": "bob", "comms_lead": None},
                    "detected_at": "2026-11-24T14:02:00Z",
                    "acknowledged_at": "2026-11-24T14:04:10Z",
                    "mitigated_at": None,
                    "resolved_at": None,
                    "closed_at": None,
                    "sla_deadline": "2026-11-24T18:02:00Z",
                    "sla_breached": False,
                    "root_cause": None,
                    "resolution_notes": None,
                    "summary": None,
                    "dedup_key": "checkout-api/5xx",
                    "source": "prometheus",
                    "tags": ["customer-facing"],
                    "version": 2,
                    "created_at": "2026-11-24T14:02:05Z",
                    "updated_at": "2026-11-24T14:04:10Z",
                    "automated_responses": [
                        {
                            "response_id": "r-1",
                            "action_type": "page_oncall",
                            "details": {"team": "payments"},
                            "execution_status": "succeeded",
                            "executed_at": "2026-11-24T14:02:06Z",
                        }
                    ],
                    "resolution_steps": [],
                    "external_refs": [],
                }
            ]
        },
    )

    id: uuid.UUID
    incident_id: str = Field(
        examples=["INC-20261124-001"],
        description="The human id (`INC-YYYYMMDD-NNN`), the seed's `incident_id`; same as `number`. Every "
        "`/api/v1/incidents/{incident_id}/...` route takes it as well as the uuid.",
    )
    number: str = Field(examples=["INC-20261124-001"], description="The human id; kept for older clients.")
    title: str
    description: str | None
    severity: Severity
    status: Status
    affected_services: list[str] = Field(
        examples=[["checkout-api"]], description="Names of the affected services (the seed's shape)."
    )
    service_impacts: list[AffectedService] = Field(
        default_factory=list, description="How each affected service is hit, in the same order."
    )
    assigned_team: str | None
    assignee: str | None
    roles: Roles
    detected_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    sla_deadline: datetime | None
    sla_breached: bool
    root_cause: str | None
    resolution_notes: str | None
    summary: Summary | None
    dedup_key: str | None
    source: str | None
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    automated_responses: list[AutomatedResponse] = Field(default_factory=list)
    resolution_steps: list[ResolutionStep] = Field(default_factory=list)
    external_refs: list[ExternalRef] = Field(default_factory=list)

    def replaced(self, values: Mapping[str, Any]) -> Incident:
        """This incident with `values` in place of its own (validated); a field given in one of its two
        shapes (`number`/`incident_id`, `affected_services`/`service_impacts`) replaces both."""
        base = self.model_dump()
        for pair in _PAIRED_FIELDS:
            if any(name in values for name in pair):
                for name in pair:
                    base.pop(name)
        return Incident.model_validate({**base, **values})

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, values: Any) -> Any:
        """Fill `incident_id` and `number` from each other, and `affected_services` (names) and
        `service_impacts` from each other, so either shape builds the same incident."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if "incident_id" not in values and "number" in values:
            values["incident_id"] = values["number"]
        if "number" not in values and "incident_id" in values:
            values["number"] = values["incident_id"]
        if values.get("incident_id") != values.get("number"):
            raise ValueError("incident_id and number are the same human id")
        if "affected_services" in values or "service_impacts" in values:
            services = merge_services(
                values.get("affected_services") or [], values.get("service_impacts") or []
            )
            values["affected_services"] = [service.name for service in services]
            values["service_impacts"] = services
        return values
