"""Kill loop: changes keep coming through the API while the hub is SIGKILLed again and again.

20 changes a second for 2 minutes, through the hub's API, each reaching PagerDuty, Jira, ServiceNow and
Opsgenie; the hub process is SIGKILLed 10 times at random moments (a seeded RNG, each kill logged) and
restarted on the same database. Afterwards every acknowledged change is in the hub and at every vendor
exactly once, in order, and hub and vendors agree field by field (tests/chaos/world.py says how each is
read). PostgreSQL, production's database; `INCIDENT_HUB_CHAOS_DATABASE=sqlite` runs it on SQLite.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.world import Driver, chaos_world, verify
from tests.conftest import _postgres_schema

pytestmark = pytest.mark.slow

# The figures are 20 changes/s; on a shared 2-core machine the hub drains about 16 deliveries/s
# (4 per change), so CI runs 4 changes/s to stay within its time. INCIDENT_HUB_CHAOS_RATE=20 runs the
# issue's rate (docs/RELIABILITY.md).
RATE = float(os.environ.get("INCIDENT_HUB_CHAOS_RATE", "4"))
SECONDS, KILLS, SEED = 120.0, 10, 20261207


@pytest.fixture
def chaos_database(tmp_path: Path) -> Iterator[str]:
    if os.environ.get("INCIDENT_HUB_CHAOS_DATABASE", "postgresql") == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        yield from _postgres_schema()


def kill_moments(rng: random.Random, kills: int, seconds: float) -> list[float]:
    """`kills` random moments in the run, one in each of `kills` equal slices (so restarts never pile up
    and every part of the run sees one), never in the first or last seconds."""
    slice_ = (seconds - 6.0) / kills
    return [3.0 + n * slice_ + rng.uniform(0.0, slice_ * 0.8) for n in range(kills)]


def test_every_acknowledged_change_reaches_every_vendor_once_through_ten_kills(
    chaos_database: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    moments = kill_moments(rng, KILLS, SECONDS)
    print(f"kill moments (s, seed {SEED}): {[round(m, 1) for m in moments]}")
    with chaos_world(chaos_database, tmp_path) as world:
        driver = Driver(world, rate=RATE, seconds=SECONDS, seed=SEED)

        def during(elapsed: float) -> None:
            if moments and elapsed >= moments[0]:
                moments.pop(0)
                world.fault(f"SIGKILL hub at {elapsed:.1f} s (kill {world.kills + 1})")
                world.kill()
                world.start()
                world.fault(f"hub restarted ({len(driver.changes)} changes made so far)")

        driver.run(during)
        assert world.kills == KILLS, f"{world.kills} kills: the run ended before the last moment"
        figures = verify(world, driver)
        figures.report(f"kill loop on {chaos_database.split(':')[0]}: {KILLS} SIGKILLs at {RATE:g} changes/s")
        assert figures.lost == figures.duplicates == 0
        assert figures.acknowledged == figures.changes
        assert figures.unknown_outcomes > 0, "no request was under way at any kill: the kills missed the load"
