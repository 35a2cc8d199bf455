"""Kill loop: changes keep coming through the API while the hub is SIGKILLed again and again.

Changes for 2 minutes through the hub's API, each reaching PagerDuty, Jira, ServiceNow and Opsgenie; the
hub process is SIGKILLed 10 times at random moments (a seeded RNG, each kill logged) and restarted on the
same database. Each kill comes a random 1-8 s after the hub is ready again, so it always catches the hub at
work (on a busy machine a restart takes ~10 s: the last kills then fall into the drain after the run,
while the backlog is being delivered). Afterwards every acknowledged change is in the hub and at every
vendor exactly once, in order, and hub and vendors agree field by field (tests/chaos/world.py says how
each is read). PostgreSQL, production's database; `INCIDENT_HUB_CHAOS_DATABASE=sqlite` runs it on SQLite.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.world import ChaosWorld, Driver, chaos_world, verify
from tests.conftest import _postgres_schema

pytestmark = pytest.mark.slow

# The figure is 20 changes/s; on the shared 2-core machine the hub drains about 16 deliveries/s
# (4 per change), so CI runs 3 changes/s to stay within its time. INCIDENT_HUB_CHAOS_RATE=20 runs the
# issue's rate (docs/RELIABILITY.md).
RATE = float(os.environ.get("INCIDENT_HUB_CHAOS_RATE", "3"))
SECONDS, KILLS, SEED = 120.0, 10, 20261207
UPTIME = (1.0, 8.0)  # seconds of work between a restart and the next kill


@pytest.fixture
def chaos_database(tmp_path: Path) -> Iterator[str]:
    if os.environ.get("INCIDENT_HUB_CHAOS_DATABASE", "postgresql") == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        yield from _postgres_schema()


class Killer(threading.Thread):
    """SIGKILLs the hub `kills` times, each a random `UPTIME` after it was last ready; restarts it."""

    def __init__(self, world: ChaosWorld, kills: int, rng: random.Random) -> None:
        super().__init__(name="killer", daemon=True)
        self.world = world
        self.kills = kills
        self.rng = rng
        self.began = time.monotonic()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n in range(1, self.kills + 1):
                time.sleep(self.rng.uniform(*UPTIME))
                self.world.fault(f"SIGKILL hub (kill {n}) at {time.monotonic() - self.began:.1f} s")
                self.world.kill()
                self.world.start()
                self.world.fault(f"hub restarted at {time.monotonic() - self.began:.1f} s", injected=False)
        except BaseException as error:  # reported by the test
            self.error = error


def test_every_acknowledged_change_reaches_every_vendor_once_through_ten_kills(
    chaos_database: str, tmp_path: Path
) -> None:
    with chaos_world(chaos_database, tmp_path) as world:
        driver = Driver(world, rate=RATE, seconds=SECONDS, seed=SEED)
        killer = Killer(world, KILLS, random.Random(SEED))
        killer.start()
        driver.run()
        killer.join(timeout=600)
        assert killer.error is None, f"kill or restart failed: {killer.error!r}\n{world.hub.log_tail()}"
        assert world.kills == KILLS
        figures = verify(world, driver)
        figures.report(f"kill loop on {chaos_database.split(':')[0]}: {KILLS} SIGKILLs at {RATE:g} changes/s")
        assert figures.lost == figures.duplicates == 0
        assert figures.acknowledged == figures.changes
        assert figures.unknown_outcomes > 0, "no request met a killed hub: the kills missed the load"
