"""Benchmark: component health signals (`Signals.process`), in process, against one bare SELECT.

For each database (SQLite in a temp file, PostgreSQL in a fresh schema dropped afterwards) it migrates a
fresh hub database and sends `--components` components through four phases:

1. `stuck` for each (opens an incident each);
2. `--repeats` rounds of `stuck` again for each (the common case: a fault that persists);
3. `stopped` for each (raises the open incident to SEV1);
4. `active` for each (resolves it with a note).

Per phase it prints p50/p99 latency per signal, signals per second and SQL statements per signal (counted
on the engine, transaction control left out). The baseline is the same engine running the repeat phase's
one statement, bare (`SELECT id ... WHERE dedup_key = ? AND status IN (...)`), one transaction per call.

    .venv/bin/python bench/signals.py                        # both databases, 200 components, 5 repeats
    .venv/bin/python bench/signals.py --db sqlite --components 500
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database  # noqa: E402

from incident_hub.incidents import IncidentService  # noqa: E402
from incident_hub.model import OPEN_STATUSES  # noqa: E402
from incident_hub.settings import Settings  # noqa: E402
from incident_hub.signals import Signal, Signals  # noqa: E402
from incident_hub.store import migrate  # noqa: E402
from incident_hub.store.db import Database  # noqa: E402
from incident_hub.store.tables import IncidentRow  # noqa: E402


class Counter:
    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            self.count += 1


def timed(calls: list[Callable[[], object]], counter: Counter) -> dict[str, float]:
    latencies: list[float] = []
    before = counter.count
    started = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "n": len(calls),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "per_s": len(calls) / elapsed,
        "statements": (counter.count - before) / len(calls),
    }


def run(kind: str, url: str, components: int, repeats: int) -> list[tuple[str, dict[str, float]]]:
    db = Database(url)
    migrate.upgrade(db)
    signals = Signals(IncidentService(db, Settings().sla_policy()))
    counter = Counter(db)

    def signal(n: int, status: str) -> Callable[[], object]:
        body = {"host": f"host-{n % 50}", "device": f"dev-{n}", "component": "disk", "status": status}
        return lambda: signals.process(Signal.model_validate(body))

    def bare(n: int) -> Callable[[], object]:
        key = f"signal:host-{n % 50}/dev-{n}/disk"

        def call() -> object:
            with db.read() as session:
                return session.execute(
                    select(IncidentRow.id, IncidentRow.number, IncidentRow.severity).where(
                        IncidentRow.dedup_key == key, IncidentRow.status.in_(OPEN_STATUSES)
                    )
                ).first()

        return call

    results = [("stuck: opens", timed([signal(n, "stuck") for n in range(components)], counter))]
    repeat = [signal(n, "stuck") for _ in range(repeats) for n in range(components)]
    results.append(("stuck again: repeat", timed(repeat, counter)))
    baseline = [bare(n) for _ in range(repeats) for n in range(components)]
    results.append(("baseline: bare SELECT", timed(baseline, counter)))
    results.append(("stopped: raises", timed([signal(n, "stopped") for n in range(components)], counter)))
    results.append(("active: resolves", timed([signal(n, "active") for n in range(components)], counter)))
    db.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC   machine: {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print("\n| Database | Phase | Signals | p50 (ms) | p99 (ms) | Signals/s | SQL statements / signal |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        with database(kind, args.postgres_url) as url:
            for phase, figures in run(kind, url, args.components, args.repeats):
                print(
                    f"| {kind} | {phase} | {figures['n']:.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} "
                    f"| {figures['per_s']:.0f} | {figures['statements']:.2f} |"
                )


if __name__ == "__main__":
    main()
