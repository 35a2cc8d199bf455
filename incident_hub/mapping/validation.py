"""Validation of a mapping document with a location and a sentence per problem.

A document is usable when it is well formed, total (every canonical severity and status maps to vendor
values), round-trips (every vendor value it writes reads back as a canonical value that writes it again;
a value several canonical values write must say which one it reads as), names only fields the vendor has,
and every value transform works on a sample incident.
"""

from __future__ import annotations

import string
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from incident_hub.mapping.document import MappingDocument, read_severity
from incident_hub.mapping.translate import custom_value
from incident_hub.mapping.vendor_fields import vendor_fields
from incident_hub.model import Incident, Severity, Status

READ_ONLY = ("disabled_reason", "disabled_until")


class Problem(BaseModel):
    """One thing wrong with a mapping document: where (`$.status.to_vendor.MONITORING`) and what."""

    model_config = ConfigDict(frozen=True)

    location: str
    message: str


def sample_incident() -> Incident:
    """The API's documented example incident: every transform is tried on it."""
    extra: Any = Incident.model_config.get("json_schema_extra")
    return Incident.model_validate(extra["examples"][0])


def load(text: str) -> tuple[Any, list[Problem]]:
    """The YAML (or JSON) text as data, or the problem with it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = getattr(error, "problem", None) or str(error)
        return None, [Problem(location="$", message=f"This is not valid YAML{where}: {reason}.")]
    if not isinstance(data, dict):
        return None, [Problem(location="$", message="A mapping document is a YAML mapping (key: value).")]
    return data, []


def check(kind: str, data: dict[str, Any]) -> tuple[MappingDocument | None, list[Problem]]:
    """The document these data describe for a connector of `kind`, and every problem found."""
    problems = [
        Problem(
            location=f"$.{name}",
            message=f"{name} is read-only: the circuit breaker sets it from the connector's state.",
        )
        for name in READ_ONLY
        if name in data
    ]
    data = {k: v for k, v in data.items() if k not in READ_ONLY}
    try:
        document = MappingDocument.model_validate(data, context={"structure_only": True})
    except ValidationError as error:
        return None, problems + [_structural(e) for e in error.errors()]
    listed = vendor_fields(kind)
    if document.teams is not None and document.teams.field is None and listed and listed.team_field:
        teams = document.teams.model_copy(update={"field": listed.team_field})
        document = document.model_copy(update={"teams": teams})
    problems += _totality(document) + _round_trip(document) + _fields(kind, document)
    problems += _teams(kind, document) + _transforms(document)
    return (document if not problems else None), problems


def _structural(error: Any) -> Problem:
    location = "$"
    for part in error.get("loc", ()):
        if part == "[key]":
            continue
        location += f"[{part}]" if isinstance(part, int) else f".{part}"
    kind, message = error.get("type", ""), error.get("msg", "")
    if kind == "extra_forbidden":
        message = "Unknown key: this section does not take it."
    elif kind == "missing":
        message = "Required, and missing."
    elif kind == "enum":
        message = f"Not a canonical value: {message.removeprefix('Input should be ')}."
    else:
        message = f"{message[:1].upper()}{message[1:]}."
    return Problem(location=location, message=message)


def _totality(document: MappingDocument) -> list[Problem]:
    problems = [
        Problem(
            location=f"$.severity.to_vendor.{severity.value}",
            message=f"{severity.value} is not mapped: every canonical severity needs vendor values.",
        )
        for severity in Severity
        if severity not in document.severity.to_vendor
    ]
    problems += [
        Problem(
            location=f"$.status.to_vendor.{status.value}",
            message=f"{status.value} is not mapped: every canonical status needs a vendor status.",
        )
        for status in Status
        if status not in document.status.to_vendor
    ]
    return problems


def _round_trip(document: MappingDocument) -> list[Problem]:
    problems: list[Problem] = []
    written = document.status.to_vendor
    for vendor in dict.fromkeys(written.values()):
        writers = [s.value for s, v in written.items() if v == vendor]
        back = document.status.from_vendor.get(vendor)
        if back is None:
            which = "ambiguous: " if len(writers) > 1 else ""
            problems.append(
                Problem(
                    location="$.status.from_vendor",
                    message=f"{which}{vendor!r} is written for {', '.join(writers)} but never read back: "
                    f"add {vendor!r} with the canonical status it reads as.",
                )
            )
        elif written.get(back) != vendor:
            problems.append(
                Problem(
                    location=f"$.status.from_vendor.{vendor}",
                    message=f"{vendor!r} (written for {', '.join(writers)}) reads as {back.value}, which "
                    f"writes {written.get(back)!r}: the round trip is not stable.",
                )
            )
    for index, rule in enumerate(document.severity.from_vendor):
        if not rule.values:
            problems.append(
                Problem(location=f"$.severity.from_vendor[{index}].values", message="Maps no vendor value.")
            )
    for severity, values in document.severity.to_vendor.items():
        location = f"$.severity.to_vendor.{severity.value}"
        if not values:
            problems.append(Problem(location=location, message="Writes no vendor field."))
            continue
        read = read_severity(document.severity, values)
        if read is None:
            problems.append(
                Problem(
                    location=location,
                    message=f"Writes {values} which no severity.from_vendor rule reads back.",
                )
            )
        elif read != severity and document.severity.to_vendor.get(read) == values:
            problems.append(
                Problem(
                    location=location,
                    message=f"Ambiguous: {severity.value} and {read.value} both write {values}, which "
                    f"reads back as {read.value}; give them different vendor values.",
                )
            )
        elif read != severity:
            problems.append(
                Problem(
                    location=location,
                    message=f"Writes {values} which reads back as {read.value}: the round trip is not "
                    "stable.",
                )
            )
    return problems


def _fields(kind: str, document: MappingDocument) -> list[Problem]:
    named: list[tuple[str, str]] = [("$.status.field", document.status.field)]
    for severity, values in document.severity.to_vendor.items():
        named += [(f"$.severity.to_vendor.{severity.value}.{name}", name) for name in values]
    named += [
        (f"$.severity.from_vendor[{i}].field", rule.field)
        for i, rule in enumerate(document.severity.from_vendor)
    ]
    named += [(f"$.fields.{canonical}", vendor) for canonical, vendor in document.fields.items()]
    named += [(f"$.custom_fields[{i}].field", rule.field) for i, rule in enumerate(document.custom_fields)]
    if document.teams is not None and document.teams.field:
        named.append(("$.teams.field", document.teams.field))
    listed = vendor_fields(kind)
    problems = [
        Problem(location=location, message=f"{kind} has no field {name!r} (see docs/mappings.md).")
        for location, name in named
        if listed is not None and not listed.knows(name)
    ]
    sample = sample_incident()
    for canonical in document.fields:
        if canonical not in type(sample).model_fields:
            problems.append(
                Problem(location=f"$.fields.{canonical}", message=f"{canonical!r} is not a canonical field.")
            )
    fixed = {document.status.field} | {n for v in document.severity.to_vendor.values() for n in v}
    fixed |= set(document.fields.values())
    for index, rule in enumerate(document.custom_fields):
        if rule.field in fixed:
            problems.append(
                Problem(
                    location=f"$.custom_fields[{index}].field",
                    message=f"{rule.field!r} is already written by another section.",
                )
            )
        fixed.add(rule.field)
    return problems


def _teams(kind: str, document: MappingDocument) -> list[Problem]:
    teams = document.teams
    if teams is None:
        return []
    problems: list[Problem] = []
    listed = vendor_fields(kind)
    if listed is not None:
        expected = listed.team_field
        if expected is None:
            problems.append(
                Problem(location="$.teams", message=f"The {kind} connector cannot route to teams yet.")
            )
        elif teams.field != expected:
            problems.append(
                Problem(
                    location="$.teams.field",
                    message=f"The {kind} connector carries the team in {expected!r}, not {teams.field!r}.",
                )
            )
    if "assigned_team" in document.fields:
        problems.append(
            Problem(
                location="$.fields.assigned_team",
                message="assigned_team is routed by `teams`: remove it from `fields`.",
            )
        )
    for target in dict.fromkeys(teams.to_vendor.values()):
        owners = [team for team, t in teams.to_vendor.items() if t == target]
        if len(owners) > 1 and target not in teams.from_vendor:
            problems.append(
                Problem(
                    location="$.teams.to_vendor",
                    message=f"Ambiguous reverse map: {', '.join(owners)} all route to {target!r}; say in "
                    "teams.from_vendor which team it reads as.",
                )
            )
    return problems


def _transforms(document: MappingDocument) -> list[Problem]:
    problems: list[Problem] = []
    sample = sample_incident()
    for index, rule in enumerate(document.custom_fields):
        location = f"$.custom_fields[{index}]"
        given = [name for name in ("source", "template", "value") if getattr(rule, name) is not None]
        if len(given) != 1:
            problems.append(
                Problem(
                    location=location,
                    message="Give exactly one of source, template or value"
                    + (f" (given: {', '.join(given)})." if given else "."),
                )
            )
            continue
        if rule.map is not None and rule.source is None:
            problems.append(Problem(location=f"{location}.map", message="A map needs a source."))
            continue
        if rule.inbound:
            if rule.source is None:
                problems.append(
                    Problem(location=f"{location}.inbound", message="Only a source can be read back.")
                )
            elif rule.map is not None:
                seen: list[Any] = []
                for canonical, vendor in rule.map.items():
                    if vendor in seen:
                        problems.append(
                            Problem(
                                location=f"{location}.map.{canonical}",
                                message=f"Ambiguous reverse map: {vendor!r} is written for more than one "
                                "canonical value, so it cannot be read back.",
                            )
                        )
                    seen.append(vendor)
        try:
            custom_value(rule, sample)
        except (KeyError, AttributeError, ValueError, IndexError, TypeError) as error:
            part = "template" if rule.template is not None else "source"
            problems.append(
                Problem(
                    location=f"{location}.{part}",
                    message=f"Fails on a sample incident: {type(error).__name__}: {error}.",
                )
            )
    try:
        string.Formatter().vformat(document.notes.format, (), {"origin": "o", "author": "a", "message": "m"})
    except (KeyError, AttributeError, ValueError, IndexError) as error:
        problems.append(
            Problem(
                location="$.notes.format",
                message=f"Fails on a sample note: {type(error).__name__}: {error} "
                "(placeholders: origin, author, message).",
            )
        )
    return problems
