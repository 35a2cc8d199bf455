"""Translate between canonical values and a connector's vendor fields, with a mapping document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incident_hub.mapping.document import MappingDocument, read_severity
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
    return values


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
