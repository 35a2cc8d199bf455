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
    .venv/bin/python bench/signals.py --quick --json-out /tmp/signals.json   # 50 components, 2 repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database  # noqa: E402
from report import header, row, table, write_rows  # noqa: E402

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


def rows(kind: str, phases: list[tuple[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """The protocol's rows: the repeat against the bare statement, statements per repeat, the changes."""
    where = "SQLite" if kind == "sqlite" else "PostgreSQL"
    figures = dict(phases)
    repeat, bare = figures["stuck again: repeat"], figures["baseline: bare SELECT"]
    out = [
        row(
            "signals",
            f"{where}: repeated signal p50 (baseline: its one statement bare)",
            repeat["p50"],
            "ms",
            baseline=bare["p50"],
            higher_is_better=False,
        ),
        row(
            "signals",
            f"{where}: SQL statements per repeated signal",
            repeat["statements"],
            "statements",
            target=1.0,
            higher_is_better=False,
        ),
    ]
    for phase in ("stuck: opens", "stopped: raises", "active: resolves"):
        out.append(row("signals", f"{where}: {phase}", figures[phase]["per_s"], "signals/s"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--components", type=int, default=None, help="200 (--quick 50)")
    parser.add_argument("--repeats", type=int, default=None, help="5 (--quick 2)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="50 components, 2 repeats")
    parser.add_argument("--json-out", type=Path, help="write the rows of bench/report.py here")
    args = parser.parse_args()
    components = args.components or (50 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 5)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(header())
    print("\n| Database | Phase | Signals | p50 (ms) | p99 (ms) | Signals/s | SQL statements / signal |")
    print("|---|---|---:|---:|---:|---:|---:|")
    report: list[dict[str, Any]] = []
    for kind in kinds:
        with database(kind, args.postgres_url) as url:
            phases = run(kind, url, components, repeats)
            for phase, figures in phases:
                print(
                    f"| {kind} | {phase} | {figures['n']:.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} "
                    f"| {figures['per_s']:.0f} | {figures['statements']:.2f} |"
                )
            report += rows(kind, phases)
    print("\n" + table(report))
    if args.json_out:
        write_rows(args.json_out, report)


if __name__ == "__main__":
    main()
