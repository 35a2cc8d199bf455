"""What an incident is about: the services it names (each with its impact) and the component its tags
name (`host:`, `device:`, `component:`, as component signals tag their incidents)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from incident_hub.model import Impact, Severity

# Worst first.
IMPACT_ORDER = (Impact.TOTAL_OUTAGE, Impact.PARTIAL_OUTAGE, Impact.DEGRADED)
_COMPONENT_TAGS = ("host", "device", "component")


class EntityKind(StrEnum):
    SERVICE = "service"
    COMPONENT = "component"


def component_of(tags: Iterable[Any]) -> str | None:
    """`host/device/component` from an incident's tags (the parts present, in that order); None when the
    tags name no component."""
    parts: dict[str, str] = {}
    for tag in tags:
        if isinstance(tag, str) and ":" in tag:
            name, value = tag.split(":", 1)
            if name in _COMPONENT_TAGS and name not in parts and value:
                parts[name] = value
    if "component" not in parts:
        return None
    return "/".join(parts[name] for name in _COMPONENT_TAGS if name in parts)


def service_names(services: Sequence[Any]) -> list[str]:
    """The names in a stored `affected_services` list."""
    return [str(s["name"]) for s in services if isinstance(s, dict) and s.get("name")]


def worst_impact(services: Sequence[Any], severity: Severity) -> Impact:
    """The impact an incident has on its component: the worst impact it names on a service, else, for an
    incident naming none (a component signal), a total outage at SEV1 (stopped) and a partial outage below."""
    named = {s.get("impact") for s in services if isinstance(s, dict)}
    for impact in IMPACT_ORDER:
        if impact.value in named:
            return impact
    return Impact.TOTAL_OUTAGE if severity is Severity.SEV1_CRITICAL else Impact.PARTIAL_OUTAGE
