"""Vendor and database faults during a driven run: nothing acknowledged is lost, the vendors not at fault
stay in step, backlogs drain in order, API clients get 503 with Retry-After (never a reset, never a 500).

One run on PostgreSQL through tests/chaos/proxy.py, changes made through the API all along:
- PagerDuty answers 503 (with Retry-After) to everything for 60 s: its deliveries wait, the circuit
  breaker pauses the connector after `INCIDENT_HUB_CONNECTOR_FAILURE_THRESHOLD` failures in a row, tries
  again after each cool-down (pausing again while PagerDuty is still down), and catches up once it is back;
- Jira answers storms of 429 with Retry-After: the connector pauses for the wait Jira asks and never opens
  the breaker (a 429 is the vendor working as it should);
- the database is cut for 12 s: the proxy between the hub and PostgreSQL drops every connection and
  refuses new ones. This stands for a PostgreSQL restart; the shared server itself is never restarted.

And SQLite on a disk that fills up (a small tmpfs): writes answer 503 with Retry-After while it is full,
and the hub recovers without a restart once space is freed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from incident_hub.store.tables import ConnectorRow, DeliveryRow
from tests.chaos.proxy import Proxy
from tests.chaos.world import ChaosWorld, Driver, chaos_world, verify

pytestmark = pytest.mark.slow

RATE = float(os.environ.get("INCIDENT_HUB_CHAOS_FAULTS_RATE", "3"))
SECONDS = 120.0
OUTAGE = (10.0, 60.0)  # PagerDuty: from, for how long
STORMS = (20.0, 45.0, 70.0, 95.0)  # Jira: 429 storms
STORM_SIZE, STORM_RETRY_AFTER = 30, 2
DATABASE_CUT = (82.0, 12.0)
BREAKER = {"INCIDENT_HUB_CONNECTOR_FAILURE_THRESHOLD": "5", "INCIDENT_HUB_CONNECTOR_COOL_DOWN_SECONDS": "8"}


def oldest_pending_age(world: ChaosWorld) -> dict[str, float]:
    """Per target connector, how long its oldest pending delivery has waited (s)."""
    now = datetime.now(UTC)
    ages: dict[str, float] = {}
    with world.db.read() as session:
        for target, created in session.execute(
            select(DeliveryRow.target_id, DeliveryRow.created_at).where(DeliveryRow.state == "pending")
        ):
            stamp = created if created.tzinfo else created.replace(tzinfo=UTC)
            ages[str(target)] = max(ages.get(str(target), 0.0), (now - stamp).total_seconds())
    return ages


def paused(world: ChaosWorld) -> dict[str, bool]:
    now = datetime.now(UTC)
    with world.db.read() as session:
        return {
            row.id: row.paused_until is not None
            and (row.paused_until if row.paused_until.tzinfo else row.paused_until.replace(tzinfo=UTC)) > now
            for row in session.scalars(select(ConnectorRow))
        }


def test_vendor_outage_429_storms_and_a_database_cut_lose_nothing(
    proxied_postgres: tuple[str, Proxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    # The test reads the hub's database directly (its figures go on while the hub's connections are cut).
    direct = make_url(url).set(host=proxy.upstream[0], port=proxy.upstream[1]).render_as_string(False)
    with chaos_world(url, tmp_path, observe_url=direct, **BREAKER) as world:
        pd, jira = world.vendors["pagerduty"], world.vendors["jira"]
        done: set[str] = set()
        lag: dict[str, float] = {}
        was_paused: dict[str, bool] = {}

        def once(name: str, elapsed: float, at: float) -> bool:
            if elapsed >= at and name not in done:
                done.add(name)
                return True
            return False

        def during(elapsed: float) -> None:
            if once("outage", elapsed, OUTAGE[0]):
                world.fault(f"PagerDuty answers 503 for {OUTAGE[1]:.0f} s")
                pd.sandbox.state.knobs.retry_after_seconds = 5
                pd.sandbox.state.outage(OUTAGE[1])
            for n, at in enumerate(STORMS):
                if once(f"storm {n}", elapsed, at):
                    world.fault(
                        f"Jira 429 storm: the next {STORM_SIZE} calls, Retry-After {STORM_RETRY_AFTER}"
                    )
                    with jira.sandbox.state.lock:
                        jira.sandbox.state.knobs.retry_after_seconds = STORM_RETRY_AFTER
                        jira.sandbox.state.knobs.rate_limit_next = STORM_SIZE
            if once("cut", elapsed, DATABASE_CUT[0]):
                world.fault(
                    f"database cut (the proxy drops and refuses connections) for {DATABASE_CUT[1]:.0f} s"
                )
                proxy.cut()
            if once("restore", elapsed, DATABASE_CUT[0] + DATABASE_CUT[1]):
                world.fault("database back", injected=False)
                proxy.start()
            if int(elapsed * 10) % 10 == 0:  # about once a second
                for target, age in oldest_pending_age(world).items():
                    window = "outage" if OUTAGE[0] + 15 <= elapsed <= sum(OUTAGE) else "other"
                    lag[f"{target} {window}"] = max(lag.get(f"{target} {window}", 0.0), age)
                for connector, now_paused in paused(world).items():
                    was_paused[connector] = was_paused.get(connector, False) or now_paused

        driver = Driver(world, rate=RATE, seconds=SECONDS, seed=7)
        driver.run(during)
        figures = verify(world, driver)
        figures.report(
            f"vendor and database faults: PagerDuty 503 {OUTAGE[1]:.0f} s, {len(STORMS)} Jira 429 storms, "
            f"database cut {DATABASE_CUT[1]:.0f} s"
        )
        print(f"oldest pending delivery (s): { {k: round(v, 1) for k, v in sorted(lag.items())} }")
        print(f"breaker opened: {was_paused}")

        assert figures.lost == figures.duplicates == 0
        # Clients were told to come back while the database was away, and were never reset (the driver
        # fails the test on a reset or a 500) nor left without Retry-After.
        assert figures.retried_503 > 0, "no request met the database cut"
        assert driver.retry_after_missing == 0
        # PagerDuty's backlog waited out its outage; the others kept up meanwhile.
        assert lag.get("pagerduty outage", 0.0) >= 30, lag
        for other in ("servicenow", "opsgenie"):
            assert lag.get(f"{other} outage", 0.0) < 20, (
                f"{other} fell behind during PagerDuty's outage: {lag}"
            )
        # The breaker opened for the vendor that was down, never for the one answering 429.
        assert was_paused.get("pagerduty"), was_paused
        assert not was_paused.get("jira"), was_paused
        assert not any(paused(world).values()), "a connector is still paused after the drain"
        assert sum(e.status == 429 for e in jira.ledger.entries(direction="in")) >= STORM_SIZE


# ---- SQLite on a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    return filler


def test_sqlite_disk_full_answers_503_and_recovers_without_a_restart(tmp_path: Path) -> None:
    with (
        small_disk(tmp_path / "disk", "24m") as disk,
        chaos_world(f"sqlite:///{disk / 'hub.db'}", tmp_path) as world,
    ):
        state: dict[str, Path] = {}

        def during(elapsed: float) -> None:
            if elapsed >= 8 and "filler" not in state:
                world.fault("disk full (a file takes every free byte of the tmpfs)")
                state["filler"] = fill(disk)
            if elapsed >= 20 and "freed" not in state:
                world.fault("space freed", injected=False)
                state["filler"].unlink()
                state["freed"] = disk

        driver = Driver(world, rate=3, seconds=30, seed=11)
        driver.run(during)
        refused = sum(driver.retried_503.values())
        with httpx.Client(base_url=world.hub.url, timeout=5) as probe:
            ready = probe.get("/readyz").status_code
        figures = verify(world, driver)
        figures.report("SQLite disk full for 12 s")
        assert refused > 0, "no write met the full disk"
        assert driver.retry_after_missing == 0
        assert ready == 200, "the hub is not ready again after space was freed"
        assert world.hub.process is not None and world.hub.process.poll() is None, "the hub restarted"
        assert figures.lost == figures.duplicates == 0
        assert world.kills == 0
