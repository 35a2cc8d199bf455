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
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incident_hub.model import Severity, Status

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


class MappingDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: SeverityMap
    status: StatusMap
    fields: dict[str, str] = Field(default_factory=dict, description="Canonical field -> vendor field.")

    @model_validator(mode="after")
    def _total_and_stable(self) -> MappingDocument:
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
