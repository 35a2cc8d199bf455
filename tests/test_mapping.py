"""Shipped default mappings are total and round-trip stably (hypothesis over canonical and vendor values)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incident_hub.mapping.document import (
    DEFAULTS,
    CustomField,
    MappingError,
    TeamMap,
    default_for,
    parse,
    read_severity,
)
from incident_hub.mapping.translate import settled, to_canonical, to_vendor
from incident_hub.model import Incident, Roles, Severity, Status

KINDS = ["pagerduty", "jira", "servicenow", "opsgenie"]


def incident(status: Status = Status.OPEN, severity: Severity = Severity.SEV3_MEDIUM) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        id=uuid.uuid4(),
        number="INC-20261124-001",
        title="t",
        description=None,
        severity=severity,
        status=status,
        affected_services=[],
        assigned_team=None,
        assignee=None,
        roles=Roles(),
        detected_at=now,
        acknowledged_at=None,
        mitigated_at=None,
        resolved_at=None,
        closed_at=None,
        sla_deadline=None,
        sla_breached=False,
        root_cause=None,
        resolution_notes=None,
        summary=None,
        dedup_key=None,
        source=None,
        tags=[],
        version=1,
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize("kind", KINDS)
@given(status=st.sampled_from(list(Status)), severity=st.sampled_from(list(Severity)))
def test_canonical_to_vendor_and_back_is_stable(kind: str, status: Status, severity: Severity) -> None:
    mapping = default_for(kind)
    written = to_vendor(mapping, incident(status, severity))
    # Reading back what we wrote, relative to the same incident, changes nothing.
    assert to_canonical(mapping, incident(status, severity), written).is_empty()
    # Read as a new object, it gives a canonical value that writes the same vendor values again.
    fresh = to_canonical(mapping, None, written)
    assert fresh.status is not None and fresh.severity is not None
    assert to_vendor(mapping, incident(fresh.status, fresh.severity)) == written


@pytest.mark.parametrize("kind", KINDS)
def test_every_vendor_value_in_the_image_round_trips(kind: str) -> None:
    mapping = default_for(kind)
    for vendor_status in set(mapping.status.to_vendor.values()):
        canonical = mapping.status.from_vendor[vendor_status]
        assert mapping.status.to_vendor[canonical] == vendor_status
    for written in mapping.severity.to_vendor.values():
        back = read_severity(mapping.severity, written)
        assert back is not None and mapping.severity.to_vendor[back] == written


def test_lossy_status_does_not_move_a_working_incident_backwards() -> None:
    mapping = default_for("pagerduty")
    patch = to_canonical(mapping, incident(Status.INVESTIGATING), {"status": "acknowledged"})
    assert patch.status is None
    patch = to_canonical(mapping, incident(Status.INVESTIGATING), {"status": "resolved"})
    assert patch.status is Status.RESOLVED


def test_unmapped_vendor_value_is_reported_not_dropped() -> None:
    patch = to_canonical(default_for("jira"), incident(), {"status": "Waiting for customer"})
    assert patch.status is None
    assert patch.unmapped == [("status", "Waiting for customer")]


def test_fields_are_recognised_by_field_id_not_value() -> None:
    # A custom field whose value looks like a priority must not change severity.
    patch = to_canonical(default_for("pagerduty"), incident(), {"customfield_10016": "P1"})
    assert patch.is_empty()


def test_a_mapping_that_is_not_total_is_refused() -> None:
    with pytest.raises(MappingError, match=r"status\.to_vendor misses"):
        parse("""
severity:
  to_vendor: {SEV1_CRITICAL: {p: a}, SEV2_HIGH: {p: b}, SEV3_MEDIUM: {p: c}, SEV4_LOW: {p: d}}
  from_vendor: [{field: p, values: {a: SEV1_CRITICAL, b: SEV2_HIGH, c: SEV3_MEDIUM, d: SEV4_LOW}}]
status:
  to_vendor: {OPEN: open}
  from_vendor: {open: OPEN}
""")


def test_a_mapping_that_cannot_round_trip_is_refused() -> None:
    with pytest.raises(MappingError, match="reads back as"):
        parse("""
severity:
  to_vendor: {SEV1_CRITICAL: {p: a}, SEV2_HIGH: {p: a}, SEV3_MEDIUM: {p: c}, SEV4_LOW: {p: d}}
  from_vendor: [{field: p, values: {a: SEV1_CRITICAL, c: SEV3_MEDIUM, d: SEV4_LOW}}]
status:
  to_vendor: {OPEN: o, ACKNOWLEDGED: o, INVESTIGATING: o, IDENTIFIED: o, MONITORING: o,
              RESOLVED: r, CLOSED: r}
  from_vendor: {o: OPEN, r: RESOLVED}
""")


def test_one_changed_severity_field_is_read_with_the_others_the_vendor_holds() -> None:
    mapping = default_for("pagerduty")
    current = incident(Status.OPEN, Severity.SEV3_MEDIUM)
    held = {"status": "acknowledged", "priority": "P3", "urgency": "high"}
    # Only urgency differs from what we wrote; priority P3 still says SEV3 (priority wins over urgency).
    patch = to_canonical(mapping, current, {"status": "acknowledged", "urgency": "high"}, held=held)
    assert patch.severity is None
    assert patch.status is Status.ACKNOWLEDGED
    # Without what the vendor holds, urgency alone would read as SEV2.
    assert to_canonical(mapping, current, {"urgency": "high"}).severity is Severity.SEV2_HIGH


def test_vendor_values_that_already_say_the_canonical_value_are_not_overwritten() -> None:
    pagerduty, jira = default_for("pagerduty"), default_for("jira")
    sev3 = incident(Status.OPEN, Severity.SEV3_MEDIUM)
    assert {"urgency", "priority"} <= settled(pagerduty, sev3, {"priority": "P3", "urgency": "high"})
    sev2 = incident(Status.OPEN, Severity.SEV2_HIGH)
    assert not {"urgency", "priority"} & settled(pagerduty, sev2, {"priority": "P3", "urgency": "high"})
    resolved = incident(Status.RESOLVED)
    done = [value for value, status in jira.status.from_vendor.items() if status is Status.RESOLVED]
    assert len(done) > 1
    for value in done:
        assert jira.status.field in settled(jira, resolved, {jira.status.field: value})
    assert jira.status.field not in settled(jira, incident(Status.OPEN), {jira.status.field: done[0]})


# ---- validation with locations, and round trips of the extended document ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_default_passes_validation(kind: str) -> None:
    from incident_hub.mapping.validation import check, load

    data, problems = load((DEFAULTS / f"{kind}.yaml").read_text())
    assert problems == []
    document, problems = check(kind, data)
    assert problems == [] and document == default_for(kind)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_vendor_to_canonical_to_vendor_returns_every_value_in_the_image(
    kind: str, data: st.DataObject
) -> None:
    mapping = default_for(kind)
    vendor_status = data.draw(st.sampled_from(sorted(set(mapping.status.to_vendor.values()))))
    read = to_canonical(mapping, None, {mapping.status.field: vendor_status})
    assert read.status is not None
    assert to_vendor(mapping, incident(read.status))[mapping.status.field] == vendor_status
    written = data.draw(st.sampled_from(list(mapping.severity.to_vendor.values())))
    severity = to_canonical(mapping, None, written).severity
    assert severity is not None and mapping.severity.to_vendor[severity] == written


@given(
    teams=st.dictionaries(st.text("abcdef", min_size=1, max_size=6), st.text("PQRS", min_size=3, max_size=5)),
    levels=st.lists(st.text("xyz", min_size=1, max_size=4), min_size=4, max_size=4, unique=True),
    team=st.text("abcdef", min_size=1, max_size=6),
    severity=st.sampled_from(list(Severity)),
)
def test_team_and_custom_field_maps_round_trip(
    teams: dict[str, str], levels: list[str], team: str, severity: Severity
) -> None:
    document = default_for("servicenow").model_copy(
        update={
            "teams": TeamMap(field="assignment_group", to_vendor=teams),
            "custom_fields": [
                CustomField(
                    field="u_level",
                    source="severity",
                    map=dict(zip([s.value for s in Severity], levels, strict=True)),
                    inbound=True,
                )
            ],
        }
    )
    current = incident(severity=severity).model_copy(update={"assigned_team": team})
    written = to_vendor(document, current)
    assert written["assignment_group"] == team and written["u_level"] == levels[severity.rank() - 1]
    assert to_canonical(document, current, written).is_empty()
    fresh = to_canonical(document, None, written)
    assert fresh.fields == {"assigned_team": team, "severity": severity.value, "title": "t"} | {
        "description": None,
        "resolution_notes": None,
    }
    assert document.teams is not None
    for target, owner in document.teams.teams().items():
        assert document.teams.to_vendor[owner] == target


def test_validation_reports_each_problem_at_its_location() -> None:
    from incident_hub.mapping.validation import check

    data = {
        "severity": {
            "to_vendor": {"SEV1_CRITICAL": {"priority": "P1"}, "SEV2_HIGH": {"priority": "P1"}},
            "from_vendor": [{"field": "priority", "values": {"P1": "SEV1_CRITICAL"}}],
        },
        "status": {
            "to_vendor": {"OPEN": "triggered", "CLOSED": "resolved", "RESOLVED": "resolved"},
            "from_vendor": {"triggered": "OPEN", "resolved": "RESOLVED", "acked": "DONE"},
        },
        "teams": {"to_vendor": {"a": "P1", "b": "P1"}},
    }
    document, problems = check("pagerduty", data)
    assert document is None
    assert {p.location for p in problems} == {"$.status.from_vendor.acked"}
    del data["status"]["from_vendor"]["acked"]
    document, problems = check("pagerduty", data)
    found = {p.location: p.message for p in problems}
    assert found["$.severity.to_vendor.SEV2_HIGH"].startswith("Ambiguous: SEV2_HIGH and SEV1_CRITICAL")
    assert "SEV3_MEDIUM is not mapped" in found["$.severity.to_vendor.SEV3_MEDIUM"]
    assert "MONITORING is not mapped" in found["$.status.to_vendor.MONITORING"]
    assert "Ambiguous reverse map" in found["$.teams.to_vendor"]
    assert "$.status.from_vendor.resolved" not in found  # resolved reads as RESOLVED, which writes it
