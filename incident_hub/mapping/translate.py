"""Translate between canonical values and a connector's vendor fields, with a mapping document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from incident_hub.mapping.document import CustomField, MappingDocument, read_severity
from incident_hub.model import Incident, Severity, Status


@dataclass
class CanonicalPatch:
    """What an inbound vendor change means for the canonical incident."""

    status: Status | None = None
    severity: Severity | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    unmapped: list[tuple[str, str]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return self.status is None and self.severity is None and not self.fields


def to_vendor(mapping: MappingDocument, incident: Incident) -> dict[str, Any]:
    """Every vendor field the mapping derives from the incident."""
    values: dict[str, Any] = {mapping.status.field: mapping.status.to_vendor[incident.status]}
    values |= mapping.severity.to_vendor[incident.severity]
    for canonical, vendor in mapping.fields.items():
        values[vendor] = getattr(incident, canonical)
    if mapping.teams is not None and mapping.teams.field:
        values[mapping.teams.field] = incident.assigned_team
    for rule in mapping.custom_fields:
        values[rule.field] = custom_value(rule, incident)
    return values


def canonical_value(incident: Incident, name: str) -> Any:
    """A canonical field by name (`title`, `roles.commander`), as plain JSON: enums by value, times in
    ISO 8601; raises AttributeError for a name the incident does not have."""
    value: Any = incident
    for part in name.split("."):
        value = getattr(value, part)
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        # Service impacts by name: the part a vendor field can say (affected_services are names already).
        return [_plain(getattr(item, "name", item)) for item in value]
    return value


class _Placeholders(Mapping[str, Any]):
    """Canonical fields for a template; empty ones read as ''."""

    def __init__(self, incident: Incident) -> None:
        self.incident = incident

    def __getitem__(self, name: str) -> Any:
        try:
            value = canonical_value(self.incident, name)
        except AttributeError:
            raise KeyError(name) from None
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return "" if value is None else value

    def __iter__(self) -> Any:
        return iter(type(self.incident).model_fields)

    def __len__(self) -> int:
        return len(type(self.incident).model_fields)


def custom_value(rule: CustomField, incident: Incident) -> Any:
    """The vendor value a custom-field rule gives for this incident; raises KeyError, AttributeError,
    ValueError or IndexError when the rule cannot be applied (validation tries it on a sample)."""
    if rule.template is not None:
        return rule.template.format_map(_Placeholders(incident))
    if rule.source is None:
        return rule.value
    value = canonical_value(incident, rule.source)
    if rule.map is not None:
        key = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        value = rule.map.get(str(key)) if key is not None else None
    return rule.default if value is None or value == [] else value


def _read_custom(rule: CustomField, value: Any) -> tuple[bool, Any]:
    """The canonical value an inbound custom field gives: (found, value)."""
    if rule.map is None:
        return True, value
    for canonical, written in rule.map.items():
        if written == value:
            return True, canonical
    return False, None


def to_canonical(
    mapping: MappingDocument,
    incident: Incident | None,
    vendor: dict[str, Any],
    held: dict[str, Any] | None = None,
) -> CanonicalPatch:
    """The canonical change these vendor field values ask for, relative to `incident` (None: a new one).

    `vendor` holds the fields that changed; `held`, if given, everything the vendor object holds now.
    A canonical value read from several vendor fields (severity from PagerDuty's priority and urgency)
    is read from all of them, so a change of one never reads as if the others were absent.

    Lossy maps stay stable: a vendor value that the incident's current canonical value already writes
    (INVESTIGATING and ACKNOWLEDGED both write PagerDuty's "acknowledged") changes nothing.
    """
    patch = CanonicalPatch()
    current = to_vendor(mapping, incident) if incident is not None else {}
    status_field = mapping.status.field
    if status_field in vendor and vendor[status_field] is not None:
        value = str(vendor[status_field])
        status = mapping.status.from_vendor.get(value)
        if status is None:
            patch.unmapped.append((status_field, value))
        elif incident is None or current.get(status_field) != value:
            patch.status = status
    severity_fields = {rule.field for rule in mapping.severity.from_vendor}
    given = {k: v for k, v in vendor.items() if k in severity_fields and v is not None}
    if given:
        whole = {k: v for k, v in (held or {}).items() if k in severity_fields and v is not None}
        severity = read_severity(mapping.severity, {**whole, **given})
        if severity is None:
            patch.unmapped.extend((k, str(v)) for k, v in given.items())
        elif incident is None or (
            any(current.get(k) != v for k, v in given.items()) and severity != incident.severity
        ):
            patch.severity = severity
    for canonical, vendor_field in mapping.fields.items():
        if vendor_field in vendor and (incident is None or vendor[vendor_field] != current.get(vendor_field)):
            patch.fields[canonical] = vendor[vendor_field]
    team_field = mapping.teams.field if mapping.teams is not None else None
    if team_field and team_field in vendor:
        changed = incident is None or vendor[team_field] != current.get(team_field)
        if changed:
            patch.fields["assigned_team"] = vendor[team_field]
    for rule in mapping.custom_fields:
        if not (rule.inbound and rule.source and rule.field in vendor):
            continue
        if incident is not None and vendor[rule.field] == current.get(rule.field):
            continue
        found, value = _read_custom(rule, vendor[rule.field])
        if found:
            patch.fields[rule.source] = value
        else:
            patch.unmapped.append((rule.field, str(vendor[rule.field])))
    return patch


def settled(mapping: MappingDocument, incident: Incident, held: dict[str, Any]) -> set[str]:
    """Vendor fields whose held values already say what the incident says, though not in the words
    `to_vendor` would use: Jira "Cancelled" for RESOLVED (which writes "Done"), PagerDuty P3 with
    urgency high for SEV3 (which writes urgency low). Writing them would overrule a person's choice
    in the vendor for no canonical change, so a push leaves them alone."""
    fields: set[str] = set()
    status_field = mapping.status.field
    if status_field in held and mapping.status.from_vendor.get(str(held[status_field])) == incident.status:
        fields.add(status_field)
    severity_fields = {rule.field for rule in mapping.severity.from_vendor}
    given = {k: v for k, v in held.items() if k in severity_fields and v is not None}
    if given and read_severity(mapping.severity, given) == incident.severity:
        fields |= set(mapping.severity.to_vendor[incident.severity]) | severity_fields
    return fields
