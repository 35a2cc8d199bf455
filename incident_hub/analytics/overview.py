"""The overview: the headline figures of a window against their targets, each green, amber or red, and
the five questions a team asks of its incidents answered in words — all from the reports, nothing new
computed, so the page and the API always agree.

Colours (docs/analytics.md, "Overview"): a time (MTTD, MTTA, MTTR) is green at or under its target,
amber up to half as long again, red beyond; an SLA share is green from 95 %, amber from 80 %; recurrence
is green at or under its target, amber up to half as much again; availability is green when the least
available service meets the target, amber within one point of it, red below. A figure with nothing to
measure is grey, never green.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from incident_hub.analytics.now import NowReport
from incident_hub.analytics.recurrence import RecurrenceReport
from incident_hub.analytics.reliability import ReliabilityReport
from incident_hub.analytics.reports import Analytics
from incident_hub.analytics.response_times import Durations, ResponseTimesReport, SlaShare
from incident_hub.clock import utcnow

SLA_GOOD, SLA_FAIR = 95.0, 80.0
SLACK = 1.5  # amber up to this many times a target that should not be exceeded
AVAILABILITY_SLACK_POINTS = 1.0
MOST_AND_LEAST = 3


class State(StrEnum):
    GOOD = "good"
    WARN = "warn"
    BAD = "bad"
    NONE = "none"


@dataclass(frozen=True)
class Figure:
    """One headline figure: `value` in its `unit` as the API gives it (None: nothing to measure)."""

    key: str
    label: str
    value: float | None
    unit: str
    target: str
    state: State
    detail: str


@dataclass(frozen=True)
class Overview:
    generated_at: datetime
    days: int
    now: NowReport
    response_times: ResponseTimesReport
    reliability: ReliabilityReport
    recurrence: RecurrenceReport
    figures: list[Figure]
    answers: list[tuple[str, str]]


def overview(analytics: Analytics, days: int) -> Overview:
    """The overview of the `days` before now."""
    end = utcnow()
    start = end - timedelta(days=days)
    response = analytics.response_times(start, end)
    reliability = analytics.reliability(start, end)
    recurrence = analytics.recurrence(start, end)
    now = analytics.now()
    return Overview(
        generated_at=end,
        days=days,
        now=now,
        response_times=response,
        reliability=reliability,
        recurrence=recurrence,
        figures=_figures(response, reliability, recurrence),
        answers=_answers(days, now, response, reliability),
    )


def duration(seconds: float | None) -> str:
    """A duration the way the page shows it: 45 s, 4.5 min, 2.3 h, 1.5 d."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f} %"


def _at_most(value: float | None, target: float) -> State:
    if value is None:
        return State.NONE
    if value <= target:
        return State.GOOD
    return State.WARN if value <= target * SLACK else State.BAD


def _time(key: str, label: str, durations: Durations, target_minutes: float) -> Figure:
    mean = durations.mean_seconds
    return Figure(
        key=key,
        label=label,
        value=mean,
        unit="s",
        target=f"< {target_minutes:g} min",
        state=_at_most(mean, target_minutes * 60),
        detail=f"over {durations.count} incidents; p90 {duration(durations.p90_seconds)}",
    )


def _sla(key: str, label: str, share: SlaShare) -> Figure:
    value = None if share.share_met is None else share.share_met * 100
    state = State.NONE
    if value is not None:
        state = State.GOOD if value >= SLA_GOOD else State.WARN if value >= SLA_FAIR else State.BAD
    return Figure(
        key=key,
        label=label,
        value=value,
        unit="%",
        target=f"≥ {SLA_GOOD:g} %",
        state=state,
        detail=f"{share.met} met, {share.missed} missed, {share.pending} running",
    )


def _figures(
    response: ResponseTimesReport, reliability: ReliabilityReport, recurrence: RecurrenceReport
) -> list[Figure]:
    overall, targets = response.overall, response.targets
    worst = min(reliability.services, key=lambda s: s.availability_percent, default=None)
    availability = None if worst is None else worst.availability_percent
    target = reliability.target_percent
    if availability is None:
        # No service had an incident in the window: every one was fully available.
        available, detail = State.GOOD, "no service had an incident"
    else:
        available = (
            State.GOOD
            if availability >= target
            else State.WARN
            if availability >= target - AVAILABILITY_SLACK_POINTS
            else State.BAD
        )
        below = sum(1 for s in reliability.services if not s.meets_target)
        detail = f"least available: {worst.name if worst else ''}; {below} below target"
    return [
        _time("mttd", "MTTD", overall.mttd, targets.mttd_minutes),
        _time("mtta", "MTTA", overall.mtta, targets.mtta_minutes),
        _time("mttr", "MTTR", overall.mttr, targets.mttr_minutes),
        _sla("sla_acknowledge", "SLA: acknowledged in time", overall.sla_acknowledge),
        _sla("sla_resolve", "SLA: resolved in time", overall.sla_resolve),
        Figure(
            key="availability",
            label="Availability (least available service)",
            value=100.0 if availability is None else availability,
            unit="%",
            target=f"≥ {target:g} %",
            state=available,
            detail=detail,
        ),
        Figure(
            key="recurrence",
            label="Recurrence",
            value=recurrence.recurrence_percent,
            unit="%",
            target=f"< {recurrence.target_percent:g} %",
            state=_at_most(recurrence.recurrence_percent, recurrence.target_percent),
            detail=f"{recurrence.recurring} of {recurrence.incidents} incidents came back",
        ),
    ]


def _answers(
    days: int, now: NowReport, response: ResponseTimesReport, reliability: ReliabilityReport
) -> list[tuple[str, str]]:
    span = "the last day" if days == 1 else f"the last {days} days"
    return [
        ("What is broken right now?", _broken(now)),
        (f"What was our uptime over {span}?", _uptime(reliability)),
        ("How quickly do we resolve incidents?", _resolving(response, span)),
        (f"Are we meeting our {reliability.target_percent:g} % availability target?", _meeting(reliability)),
        ("Which services are most and least reliable?", _ranking(reliability)),
    ]


def _broken(now: NowReport) -> str:
    if not now.active:
        return "Nothing: no incident is active."
    counts = ", ".join(f"{c.count} {c.key}" for c in now.by_severity)
    oldest = min(now.incidents, key=lambda i: i.detected_at)
    unacknowledged = f"; {now.unacknowledged} not acknowledged" if now.unacknowledged else ""
    return (
        f"{now.active} active incident{'s' if now.active != 1 else ''} ({counts}){unacknowledged}. "
        f"The oldest, {oldest.number} “{oldest.title}”, has run for {duration(oldest.running_seconds)}."
    )


def _uptime(reliability: ReliabilityReport) -> str:
    hit = reliability.services
    if not hit:
        return "100 %: no service had an incident."
    worst = hit[-1]
    return (
        f"{len(hit)} service{'s' if len(hit) != 1 else ''} had incidents; availability ranged from "
        f"{percent(worst.availability_percent, 3)} ({worst.name}) to "
        f"{percent(hit[0].availability_percent, 3)} ({hit[0].name}). Every other service was at 100 %."
    )


def _resolving(response: ResponseTimesReport, span: str) -> str:
    overall, target = response.overall, response.targets.mttr_minutes
    if not overall.incidents:
        return f"No incident was detected in {span}."
    still = f" {overall.open} still open (not counted as resolved)." if overall.open else ""
    if overall.mttr.mean_seconds is None:
        return f"None of the {overall.incidents} incidents of {span} is resolved yet.{still}"
    verdict = "within" if overall.mttr.mean_seconds <= target * 60 else "over"
    return (
        f"MTTR {duration(overall.mttr.mean_seconds)} over {overall.mttr.count} resolved incidents, {verdict} "
        f"the {target:g} min target (p90 {duration(overall.mttr.p90_seconds)}).{still}"
    )


def _meeting(reliability: ReliabilityReport) -> str:
    below = [s for s in reliability.services if not s.meets_target]
    if not below:
        return "Yes: every service is at or above the target."
    names = ", ".join(f"{s.name} {percent(s.availability_percent, 3)}" for s in below)
    return f"No: {names} {'is' if len(below) == 1 else 'are'} below it."


def _ranking(reliability: ReliabilityReport) -> str:
    hit = reliability.services
    if not hit:
        return "All services were equally reliable: none had an incident."
    most = ", ".join(s.name for s in hit[:MOST_AND_LEAST])
    least = ", ".join(s.name for s in reversed(hit[-MOST_AND_LEAST:]))
    return f"Most reliable: {most}. Least reliable: {least}."
