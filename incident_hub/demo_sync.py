"""The second half of `incident-hub demo`: PagerDuty, Jira, ServiceNow and Opsgenie sandboxes kept in step
through the hub.

Each step is done as a person would, in one vendor's UI (the sandbox's control API), and the time until
each of the other three shows the change is measured. At the end every vendor must have received exactly
one write per change made elsewhere, and none for its own.
"""

from __future__ import annotations

import itertools
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from incident_hub.hub import Hub
from incident_hub.model import Severity, Status
from incident_hub.sandbox.world import VENDORS, Side, World, connect

LABELS = {"pagerduty": "PagerDuty", "jira": "Jira", "servicenow": "ServiceNow", "opsgenie": "Opsgenie"}


class StepFailed(Exception):
    pass


def _until_all(
    what: str, sides: list[Side], shown: Callable[[Side], bool], timeout: float = 15.0
) -> dict[str, float]:
    """Milliseconds until each side shows the change."""
    started = time.monotonic()
    seen: dict[str, float] = {}
    while time.monotonic() - started < timeout:
        for side in sides:
            if side.name not in seen and shown(side):
                seen[side.name] = (time.monotonic() - started) * 1000
        if len(seen) == len(sides):
            return seen
        time.sleep(0.005)
    missing = ", ".join(LABELS[s.name] for s in sides if s.name not in seen)
    raise StepFailed(f"{what}: not seen in {missing} within {timeout:.0f} s")


def duration(seconds: float) -> str:
    """A person's reading of a duration: seconds under a minute, minutes under an hour, else hours."""
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def excerpt(text: str, width: int = 50) -> str:
    """`text` on one line, at most `width` characters, cut between words (marked with …)."""
    return textwrap.shorten(text, width=width, placeholder=" …")


def run_sync(
    hub: Hub, hub_url: str, workdir: Path, say: Callable[[str], None], *, first_step: int = 1
) -> bool:
    """Run the four-way scenario against a running hub, numbering its steps from `first_step`; True when
    every step arrived once everywhere."""
    with ExitStack() as stack:
        world = connect(stack, hub, hub_url, workdir)
        say("\nPagerDuty, Jira, ServiceNow and Opsgenie sandboxes over HTTPS (throw-away CA)")
        try:
            _scenario(hub, world, say, itertools.count(first_step))
        except StepFailed as error:
            say(f"   FAILED: {error}")
            return False
        time.sleep(0.5)  # late echoes would show as extra writes
        writes = world.writes()
        exact = all(count == 3 for count in writes.values())
        said = ", ".join(f"{LABELS[name]} {count}" for name, count in writes.items())
        say(
            f"\n   hub writes: {said} (three changes made elsewhere each): "
            + ("one per change, no echoes" if exact else "NOT one per change")
        )
        return exact


def _report(step: str, timings: dict[str, float], shows: dict[str, str]) -> str:
    lines = [step]
    for name, ms in timings.items():
        lines.append(f"   {LABELS[name]:<11} {shows[name]:<52} after {duration(ms / 1000):>7}")
    return "\n".join(lines)


def _scenario(hub: Hub, world: World, say: Callable[[str], None], steps: Iterator[int]) -> None:
    og, jira, sn, pd = world["opsgenie"], world["jira"], world["servicenow"], world["pagerduty"]

    def others(origin: Side) -> list[Side]:
        return [world[name] for name in VENDORS if name != origin.name]

    title = "Checkout API 5xx above 20%"
    alert = og.open(title, Severity.SEV1_CRITICAL)
    timings = _until_all("the new incident", others(og), lambda side: bool(side.refs()))
    refs = {side.name: side.refs()[0] for side in others(og)} | {"opsgenie": alert}
    incident = next(i for i in hub.incidents.search().incidents if i.source == "opsgenie")
    shows = {name: world[name].describe(ref) for name, ref in refs.items()}
    step = f"{next(steps)}. Opsgenie: Mia opens a P1 alert; hub {incident.number} {incident.severity.value}"
    say(_report(step, timings, shows))

    jira.acknowledge(refs["jira"])
    timings = _until_all("In Progress", others(jira), lambda side: side.status(refs[side.name]) == "working")
    say(
        _report(
            f"{next(steps)}. Jira: Mia moves the issue to In Progress",
            timings,
            {name: world[name].vendor_status(refs[name]) for name in timings},
        )
    )

    sn.add_note(refs["servicenow"], "Rolling back deploy 2026.12.02-3")
    timings = _until_all("the comment", others(sn), lambda side: bool(side.notes(refs[side.name])))
    say(
        _report(
            f"{next(steps)}. ServiceNow: Beth adds a comment",
            timings,
            {n: f"'{excerpt(world[n].notes(refs[n])[0])}'" for n in timings},
        )
    )

    pd.resolve(refs["pagerduty"])
    timings = _until_all("resolved", others(pd), lambda side: side.status(refs[side.name]) == "resolved")
    say(
        _report(
            f"{next(steps)}. PagerDuty: the responder resolves",
            timings,
            {name: world[name].vendor_status(refs[name]) for name in timings},
        )
    )

    final = hub.incidents.get(str(incident.id))
    say(f"   hub: {final.number} {final.status.value}, version {final.version}")
    if final.status is not Status.RESOLVED:
        raise StepFailed("the hub incident is not resolved at the end")
