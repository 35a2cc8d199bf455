"""What callers ask of the hub: typed inputs for creating and changing incidents.

Unknown fields are refused (`extra="forbid"`), so a typo is a 422 naming the field, not a silent no-op.
Lifecycle timestamps are not here: status moves set them.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    UrlConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from incident_hub.model import (
    AffectedService,
    AutomatedResponse,
    Role,
    ServiceInput,
    Severity,
    Status,
    Summary,
    Timestamp,
    merge_services,
)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentDraft(_Command):
    """A new incident."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Portfolio valuation delayed",
                    "severity": "SEV2_HIGH",
                    "affected_services": ["portfolio_management_service"],
                    "assigned_team": "portfolio-platform",
                    "automated_responses": [
                        {"action_type": "restart_service", "execution_status": "in_progress"}
                    ],
                },
                {
                    "title": "Checkout API returning 502s",
                    "description": "Error rate above 20% since 14:02 UTC",
                    "severity": "SEV2_HIGH",
                    "affected_services": ["checkout-api", {"name": "payments-db", "impact": "degraded"}],
                    "service_impacts": [{"name": "checkout-api", "impact": "partial_outage"}],
                    "assigned_team": "payments",
                    "dedup_key": "checkout-api/5xx",
                    "source": "prometheus",
                    "automated_responses": [
                        {
                            "action_type": "page_oncall",
                            "details": {"team": "payments"},
                            "execution_status": "succeeded",
                        }
                    ],
                },
            ]
        },
    )

    title: str = Field(min_length=1, max_length=500)
    description: str | None = None
    severity: Severity = Severity.SEV3_MEDIUM
    affected_services: list[ServiceInput] = Field(
        default_factory=list,
        description="Service names (the seed's shape), `{name, impact}` objects, or both mixed; a name "
        "alone is `degraded`.",
    )
    service_impacts: list[AffectedService] = Field(
        default_factory=list, description="Impacts of named services; a service listed here is affected."
    )
    assigned_team: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    commander: str | None = Field(default=None, max_length=200)
    tech_lead: str | None = Field(default=None, max_length=200)
    comms_lead: str | None = Field(default=None, max_length=200)
    detected_at: Timestamp | None = Field(default=None, description="When the problem began; default now.")
    first_signal_at: Timestamp | None = Field(
        default=None,
        description="When the first alert or signal about the problem fired, if the incident came from "
        "one: the start of its time to detect (MTTD).",
    )
    dedup_key: str | None = Field(
        default=None,
        max_length=255,
        description="At most one open incident per key: creating with an open incident's key returns it.",
    )
    source: str | None = Field(default=None, max_length=100, examples=["prometheus"])
    tags: list[str] = Field(default_factory=list)
    automated_responses: list[AutomatedResponse] = Field(default_factory=list)
    author: str | None = Field(default=None, max_length=200, description="Who reports it.")

    @model_validator(mode="after")
    def _one_impact_per_service(self) -> Self:
        self.services()
        return self

    def services(self) -> list[AffectedService]:
        """The affected services, each with its impact (see `merge_services`)."""
        return merge_services(self.affected_services, self.service_impacts)


class IncidentPatch(_Command):
    """Fields to change; omitted fields stay as they are. Status has its own endpoint."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"title": "Checkout 502s (EU only)", "assignee": "carol"}]},
    )

    # Fields a patch may leave out but not clear: no `null` in their schema.
    title: Annotated[str, Field(min_length=1, max_length=500)] | SkipJsonSchema[None] = None
    description: str | None = None
    severity: Severity | SkipJsonSchema[None] = None
    affected_services: list[ServiceInput] | SkipJsonSchema[None] = Field(
        default=None,
        description="Replaces the list. Names the incident already lists keep their impact; new ones "
        "are `degraded` unless given as `{name, impact}` or in `service_impacts`.",
    )
    service_impacts: list[AffectedService] | SkipJsonSchema[None] = Field(
        default=None, description="Replaces the list of affected services and their impacts."
    )
    assigned_team: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    root_cause: str | None = None
    resolution_notes: str | None = None
    summary: Summary | None = None
    tags: list[str] | SkipJsonSchema[None] = None
    author: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _required_fields_stay_set(self) -> Self:
        cleared = sorted(
            f for f in _PATCH_REQUIRED if f in self.model_fields_set and getattr(self, f) is None
        )
        if cleared:
            raise ValueError(f"cannot clear required field(s): {', '.join(cleared)}")
        merge_services(self.affected_services or [], self.service_impacts or [])
        return self


_PATCH_REQUIRED = ("title", "severity", "affected_services", "service_impacts", "tags")


class StatusChange(_Command):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "ACKNOWLEDGED", "message": "Looking", "author": "alice"}]},
    )

    status: Status
    message: str | None = Field(default=None, max_length=10_000)
    author: str | None = Field(default=None, max_length=200)
    reopen: StrictBool = Field(default=False, description="Required to move a CLOSED incident back to work.")


class EscalationRequest(_Command):
    """Raise severity and/or hand to another team; with neither, severity rises one level."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "Error budget burning", "target_severity": "SEV1_CRITICAL"}]
        },
    )

    reason: str = Field(min_length=1, max_length=10_000)
    target_severity: Severity | None = None
    target_team: str | None = Field(default=None, max_length=200)
    author: str | None = Field(default=None, max_length=200)


class NoteDraft(_Command):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"message": "Rollback started", "author": "bob", "is_public": False}]
        },
    )

    message: str = Field(min_length=1, max_length=100_000)
    author: str | None = Field(default=None, max_length=200)
    is_public: StrictBool = Field(
        default=True, description="Public notes are customer-facing; internal ones are not."
    )


class ResolutionStepDraft(_Command):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"action_taken": "Rolled back to v41", "performed_by": "bob"}]},
    )

    action_taken: str = Field(min_length=1, max_length=10_000)
    performed_by: str | None = Field(default=None, max_length=200)
    timestamp: Timestamp | None = None


class RoleAssignment(_Command):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "commander", "person": "alice"}]}
    )

    role: Role
    person: str | None = Field(description="Who takes the role; null clears it.", max_length=200)
    author: str | None = Field(default=None, max_length=200)


SUBSCRIPTION_URL_MAX = 2000


class SubscriptionDraft(_Command):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://chatops.example.com/hooks/incidents",
                    "event_types": ["incident_created", "incident_resolved"],
                    "secret": "s3cr3t-value",
                }
            ]
        },
    )

    # The stored column holds 2000 characters (PostgreSQL refuses more).
    url: Annotated[HttpUrl, UrlConstraints(max_length=SUBSCRIPTION_URL_MAX)]
    event_types: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='Event names, or ["*"] for all; every event when omitted.',
    )
    secret: str = Field(min_length=8, max_length=500, description="HMAC key; never shown again.")
    name: str | None = Field(default=None, max_length=200)

    @field_validator("url")
    @classmethod
    def _fits_once_normalized(cls, url: HttpUrl) -> HttpUrl:
        # Normalizing can lengthen a URL (a trailing slash, a host in punycode).
        if len(str(url)) > SUBSCRIPTION_URL_MAX:
            raise ValueError(f"the URL is longer than {SUBSCRIPTION_URL_MAX} characters once normalized")
        return url

    @model_validator(mode="after")
    def _known_events(self) -> Self:
        from incident_hub.events import EVENT_TYPES

        unknown = sorted(set(self.event_types) - set(EVENT_TYPES) - {"*"})
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return self
