"""The lifecycle durations an incident row keeps (seconds), recomputed from its timestamps by every
transition that moves one, so reports aggregate stored columns."""

from __future__ import annotations

from datetime import datetime

from incident_hub.store.tables import IncidentRow


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """`end - start` in seconds; None unless both are known."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def time_to_detect(first_signal_at: datetime | None, detected_at: datetime) -> float | None:
    """First signal to detection, never negative: a monitor's clock ahead of ours reads as 0."""
    seconds = seconds_between(first_signal_at, detected_at)
    return None if seconds is None else max(seconds, 0.0)


def refresh(row: IncidentRow) -> None:
    """Set the row's durations from its lifecycle timestamps (a reopen clears the resolution ones)."""
    row.time_to_acknowledge_seconds = seconds_between(row.detected_at, row.acknowledged_at)
    row.acknowledge_to_resolve_seconds = seconds_between(row.acknowledged_at, row.resolved_at)
    row.time_to_resolve_seconds = seconds_between(row.detected_at, row.resolved_at)
