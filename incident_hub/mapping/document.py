"""Mapping documents: one per connector, YAML in, validated here; defaults shipped per vendor kind.

Shape (see docs/mappings.md):

    severity:
      to_vendor:   {SEV1_CRITICAL: {urgency: high, priority: P1}, ...}   # canonical -> vendor fields
      from_vendor:                                                      # first rule whose field is present
        - field: priority
          values: {P1: SEV1_CRITICAL, P2: SEV2_HIGH, ...}
    status:
      field: status
      to_vendor:   {OPEN: triggered, ACKNOWLEDGED: acknowledged, ...}
      from_vendor: {triggered: OPEN, acknowledged: ACKNOWLEDGED, resolved: RESOLVED}
    fields:        {title: title, description: description}              # canonical -> vendor field, copied

Optional sections (see docs/mappings.md): `custom_fields` (vendor field paths filled by a value transform:
copy, map table, template, constant), `teams` (canonical team <-> vendor target), `routing` (which
incidents go to the connector), `notes` (whether notes sync, and how they are signed). `disabled_reason`
and `disabled_until` are read-only: the circuit breaker's state, shown with the stored document.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, model_validator

from incident_hub.model import Incident, Severity, Status

DEFAULTS = Path(__file__).parent / "defaults"


class MappingError(Exception):
    """A mapping document that cannot be used, with what is wrong."""


class SeverityRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    values: dict[str, Severity]


class SeverityMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_vendor: dict[Severity, dict[str, Any]]
    from_vendor: list[SeverityRule]


class StatusMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = "status"
    to_vendor: dict[Status, str]
    from_vendor: dict[str, Status]


class CustomField(BaseModel):
    """One vendor field filled from the incident (PagerDuty's Jira rule `custom_fields`, gone further):
    exactly one of `source` (a canonical field, optionally through `map`), `template` or `value`."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="Vendor field path, e.g. customfield_10042 or u_business_service.")
    source: str | None = Field(default=None, description="Canonical field copied (type `attribute`).")
    map: dict[str, Any] | None = Field(
        default=None, description="Canonical value -> vendor value, applied to `source`."
    )
    template: str | None = Field(
        default=None, description="Python format string over canonical fields: '{number}: {title}'."
    )
    value: Any = Field(default=None, description="A constant vendor value, sent as is (any JSON).")
    default: Any = Field(default=None, description="Sent when `source` is empty or has no entry in `map`.")
    # Flags are strict: pydantic would read 1 or "yes" (quoted) as true.
    inbound: StrictBool = Field(
        default=False, description="Also read the vendor field back into `source` (through `map` reversed)."
    )


class TeamMap(BaseModel):
    """Canonical team <-> vendor target (PagerDuty escalation policy id, ServiceNow assignment group
    sys_id, Opsgenie team name). The vendor field carries the canonical team; the connector turns it
    into the target (these entries win over the connector's own option for the same team)."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = Field(default=None, description="Vendor field that carries the team.")
    to_vendor: dict[str, str] = Field(default_factory=dict)
    from_vendor: dict[str, str] = Field(
        default_factory=dict, description="Vendor target -> canonical team; default: `to_vendor` reversed."
    )

    def targets(self) -> dict[str, str]:
        return dict(self.to_vendor)

    def teams(self) -> dict[str, str]:
        """Vendor target -> canonical team: `from_vendor`, then the first team `to_vendor` names for it."""
        found: dict[str, str] = {}
        for team, target in self.to_vendor.items():
            found.setdefault(target, team)
        return {**found, **self.from_vendor}


class RoutingRules(BaseModel):
    """Which incidents open an object at this connector; empty lists admit all. Incidents already linked
    keep syncing whatever the rules say."""

    model_config = ConfigDict(extra="forbid")

    severities: list[Severity] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    def admits(self, incident: Incident) -> bool:
        if self.severities and incident.severity not in self.severities:
            return False
        if self.teams and incident.assigned_team not in self.teams:
            return False
        services = set(incident.affected_services)
        if self.services and not services & set(self.services):
            return False
        return not self.tags or bool(set(incident.tags) & set(self.tags))


class NotesRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outbound: StrictBool = Field(default=True, description="Hub notes are added to the vendor object.")
    inbound: StrictBool = Field(default=True, description="Vendor comments become hub notes.")
    format: str = Field(
        default="[{origin}] {author}: {message}",
        description="How a note reads in the vendor: placeholders origin, author, message.",
    )


class MappingDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: SeverityMap
    status: StatusMap
    fields: dict[str, str] = Field(default_factory=dict, description="Canonical field -> vendor field.")
    custom_fields: list[CustomField] = Field(default_factory=list)
    teams: TeamMap | None = None
    routing: RoutingRules | None = Field(
        default=None, description="Wins over the connector configuration's `routing` when given."
    )
    notes: NotesRule = Field(default_factory=NotesRule)
    disabled_reason: str | None = Field(
        default=None, description="Read-only: why the circuit breaker paused the connector."
    )
    disabled_until: datetime | None = Field(default=None, description="Read-only: until when.")

    @model_validator(mode="after")
    def _total_and_stable(self, info: ValidationInfo) -> MappingDocument:
        if info.context and info.context.get("structure_only"):
            return self  # `mapping.validation` reports these problems one by one, with locations
        problems: list[str] = []
        missing = [s.value for s in Severity if s not in self.severity.to_vendor]
        if missing:
            problems.append(f"severity.to_vendor misses {', '.join(missing)}")
        missing = [s.value for s in Status if s not in self.status.to_vendor]
        if missing:
            problems.append(f"status.to_vendor misses {', '.join(missing)}")
        # Round trip: every vendor value we write must read back to a canonical value that writes it again.
        for status, vendor in self.status.to_vendor.items():
            back = self.status.from_vendor.get(vendor)
            if back is None:
                problems.append(f"status.from_vendor has no entry for {vendor!r} (written for {status})")
            elif self.status.to_vendor[back] != vendor:
                problems.append(
                    f"status {vendor!r} reads as {back} which writes {self.status.to_vendor[back]!r}"
                )
        for severity, written in self.severity.to_vendor.items():
            back_severity = read_severity(self.severity, written)
            if back_severity is None:
                problems.append(f"severity {severity} writes {written} which no from_vendor rule reads")
            elif back_severity != severity:
                problems.append(f"severity {severity} writes {written} which reads back as {back_severity}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def read_severity(mapping: SeverityMap, fields: dict[str, Any]) -> Severity | None:
    """The canonical severity the first applicable rule gives for these vendor fields."""
    for rule in mapping.from_vendor:
        if rule.field in fields and fields[rule.field] is not None:
            found = rule.values.get(str(fields[rule.field]))
            if found is not None:
                return found
    return None


def parse(text: str) -> MappingDocument:
    try:
        return MappingDocument.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValueError) as error:
        raise MappingError(str(error)) from error


@cache
def default_for(kind: str) -> MappingDocument:
    path = DEFAULTS / f"{kind}.yaml"
    if not path.exists():
        raise MappingError(f"no default mapping for connector kind {kind!r}")
    return parse(path.read_text())
