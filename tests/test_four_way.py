"""The four-way sync: PagerDuty, Jira, ServiceNow and Opsgenie sandboxes on one hub, over HTTPS, driven by
the vendors' own client libraries. A change made by a person in any one of them reaches the other three
exactly once and never comes back (the sandboxes' ledgers count the hub's writes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from incident_hub.api.app import create_app
from incident_hub.hub import Hub
from incident_hub.model import Severity, Status
from incident_hub.sandbox.world import VENDORS, World, connect
from incident_hub.serving import ServerThread
from tests.conftest import test_settings
from tests.support import settle, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def four(database_url: str, tmp_path: Path) -> Iterator[tuple[Hub, World]]:
    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub: Hub = app.state.hub
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        yield hub, connect(stack, hub, server.url, tmp_path / "sandboxes")


def _settle(hub: Hub, world: World) -> None:
    settle(hub, [side.ledger for side in world.sides.values()])


def _delta(before: dict[str, int], world: World) -> dict[str, int]:
    return {name: count - before[name] for name, count in world.writes().items()}


@pytest.mark.parametrize("origin", VENDORS)
def test_a_change_in_any_system_reaches_the_other_three_once(four: tuple[Hub, World], origin: str) -> None:
    hub, world = four
    side = world[origin]
    others = [world[name] for name in VENDORS if name != origin]
    once = {name: 0 if name == origin else 1 for name in VENDORS}
    title = f"Checkout 5xx, reported in {origin}"

    # Create: one object in each of the other three, nothing written back to the origin.
    ref = side.open(title, Severity.SEV3_MEDIUM)
    wait_until(lambda: all(len(other.refs()) == 1 for other in others), timeout=20)
    _settle(hub, world)
    (incident,) = hub.incidents.search().incidents
    assert (incident.title, incident.severity, incident.source) == (title, Severity.SEV3_MEDIUM, origin)
    assert world.writes() == once
    refs = {other.name: other.refs()[0] for other in others}
    for other in others:
        assert (other.title(refs[other.name]), other.severity(refs[other.name])) == (
            title,
            Severity.SEV3_MEDIUM,
        )

    # Status: acknowledged (or In Progress) in the origin is a working status everywhere else.
    before = world.writes()
    side.acknowledge(ref)
    wait_until(lambda: all(other.status(refs[other.name]) == "working" for other in others), timeout=20)
    _settle(hub, world)
    assert _delta(before, world) == once
    assert hub.incidents.get(str(incident.id)).status in (Status.ACKNOWLEDGED, Status.INVESTIGATING)

    # Severity.
    before = world.writes()
    side.set_severity(ref, Severity.SEV1_CRITICAL)
    wait_until(
        lambda: all(other.severity(refs[other.name]) is Severity.SEV1_CRITICAL for other in others),
        timeout=20,
    )
    _settle(hub, world)
    assert _delta(before, world) == once
    assert hub.incidents.get(str(incident.id)).severity is Severity.SEV1_CRITICAL

    # A note: in each other system once, naming where it was written; never a second copy in the origin.
    before = world.writes()
    side.add_note(ref, "Rolled back deploy 2026.12.02-1")
    wait_until(lambda: all(other.notes(refs[other.name]) for other in others), timeout=20)
    _settle(hub, world)
    assert _delta(before, world) == once
    for other in others:
        (said,) = other.notes(refs[other.name])
        assert said.startswith(f"[{origin}] ") and said.endswith("Rolled back deploy 2026.12.02-1")
    assert side.notes(ref) == ["Rolled back deploy 2026.12.02-1"]

    # Resolve closes the loop the same way.
    before = world.writes()
    side.resolve(ref)
    wait_until(lambda: all(other.status(refs[other.name]) == "resolved" for other in others), timeout=20)
    _settle(hub, world)
    assert _delta(before, world) == once
    assert hub.incidents.get(str(incident.id)).status is Status.RESOLVED
    assert len(hub.incidents.search().incidents) == 1
