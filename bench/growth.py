"""Benchmark: does the incident list stay flat as the table grows, and does create slow down?

For each database (SQLite in a temp file, PostgreSQL in a fresh schema dropped afterwards) the hub runs
in-process (its real app and lifespan, requests through Starlette's test client: the same route, auth and
serialisation a served hub runs). The incidents table is grown with bulk inserts (`tests/incident_fill.py`:
a hundredth still open, twenty teams, few SEV1s) to 1k, 10k and 100k incidents (and 1M with `--million`);
PostgreSQL is ANALYZEd after each growth, as autovacuum would, and SQLite's WAL checkpointed. At each size:

- `GET /api/v1/incidents?limit=20` with every filter the list offers, first page and a page half way back
  (a cursor), `--requests` times each, interleaved;
- `POST /api/v1/incidents`, `--creates` times, one after another.

Each figure is the median latency; the baseline is the same figure at 1k incidents in the same run, and
the target is at most 1.5x it.

    .venv/bin/python bench/growth.py                 # both databases, 1k / 10k / 100k (~3 min)
    .venv/bin/python bench/growth.py --quick         # SQLite, 1k and 100k (< 60 s)
    .venv/bin/python bench/growth.py --million       # also 1M (several minutes per database)
    .venv/bin/python bench/growth.py --json-out rows.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database, running_hub  # noqa: E402
from report import row  # noqa: E402

from incident_hub.api.auth import Scope  # noqa: E402
from incident_hub.hub import Hub  # noqa: E402
from incident_hub.incident_pages import encode_cursor  # noqa: E402
from tests.incident_fill import NEWEST_CREATED, SPACING, every_filter, fill_incidents, filter_name  # noqa: E402

TARGET_RATIO = 1.5
INCIDENTS = "/api/v1/incidents"
# A page every filter fills at 1k incidents too (half way back included), so each size returns as many.
PAGE = 20


@dataclass(frozen=True)
class Figure:
    db: str
    what: str
    size: int
    median_ms: float
    p90_ms: float
    items: int = 1


# ---- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--exclude", "*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpus": str(os.cpu_count()),
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
    }


# ---- measuring --------------------------------------------------------------------------------------


def _params(filters: dict[str, Any], cursor: str | None) -> list[tuple[str, str]]:
    params = [("limit", str(PAGE))]
    for name, value in filters.items():
        params += [(name, str(v)) for v in (value if isinstance(value, list) else [value])]
    if cursor is not None:
        params.append(("cursor", cursor))
    return params


def _summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.9 * (len(ordered) - 1))] * 1000


def measure_lists(client: TestClient, db: str, size: int, requests: int) -> list[Figure]:
    """Every filter, first page and half way back, `requests` rounds interleaved (a busy moment on a
    shared machine then touches every filter alike)."""
    half_way = encode_cursor(NEWEST_CREATED - SPACING * (size // 2), "z")
    cases = [(f, None) for f in every_filter()] + [(f, half_way) for f in every_filter()]
    samples: dict[int, list[float]] = {n: [] for n in range(len(cases))}
    items: dict[int, int] = {}
    for filters, cursor in cases:  # warm-up: statement caches, pages in memory
        client.get(INCIDENTS, params=_params(filters, cursor))
    for _ in range(requests):
        for n, (filters, cursor) in enumerate(cases):
            started = time.perf_counter()
            response = client.get(INCIDENTS, params=_params(filters, cursor))
            samples[n].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code} {response.text[:300]}")
            items[n] = len(response.json()["items"])
    figures = []
    for n, (filters, cursor) in enumerate(cases):
        median, p90 = _summary(samples[n])
        what = f"list {filter_name(filters)}" + (" (after cursor)" if cursor else "")
        figures.append(Figure(db, what, size, median, p90, items[n]))
    return figures


_CREATED = "SELECT id FROM incidents WHERE number NOT LIKE 'BULK-%'"


def measure_creates(client: TestClient, hub: Hub, db: str, size: int, creates: int) -> Figure:
    samples = []
    for n in range(creates + 3):
        started = time.perf_counter()
        response = client.post(INCIDENTS, json={"title": f"growth {size} {n}", "severity": "SEV3_MEDIUM"})
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code} {response.text[:300]}")
        if n >= 3:
            samples.append(time.perf_counter() - started)
    # The created incidents are the newest and open: gone before the next size, lists see only the fill.
    with hub.db.engine.begin() as connection:
        for table in ("timeline_entries", "events"):
            connection.execute(text(f"DELETE FROM {table} WHERE incident_id IN ({_CREATED})"))
        connection.execute(text("DELETE FROM incidents WHERE number NOT LIKE 'BULK-%'"))
    median, p90 = _summary(samples)
    return Figure(db, "create", size, median, p90)


def bench_db(db: str, sizes: list[int], options: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    with database(db, options.postgres_url) as url, running_hub(url, Scope.WRITE) as (client, hub):
        held = 0
        for size in sizes:
            started = time.monotonic()
            fill_incidents(hub.db, size - held, start=held)
            held = size
            # Settle the bulk insert first: SQLite's WAL would be checkpointed by the first creates.
            if hub.db.is_sqlite:
                raw = hub.db.engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
            else:
                with hub.db.engine.begin() as connection:
                    connection.execute(text("ANALYZE incidents"))
            print(f"{db}: {size:>9,} incidents (filled in {time.monotonic() - started:.1f} s)", flush=True)
            figures += measure_lists(client, db, size, options.requests)
            figures.append(measure_creates(client, hub, db, size, options.creates))
    return figures


# ---- reporting --------------------------------------------------------------------------------------


def rows(figures: list[Figure]) -> list[dict[str, Any]]:
    """The shared benchmark rows: each figure against the same one at the smallest size."""
    smallest = min(f.size for f in figures)
    base = {(f.db, f.what): f.median_ms for f in figures if f.size == smallest}
    items = {(f.db, f.what): f.items for f in figures if f.size == smallest}
    out = []
    for f in figures:
        if f.size == smallest:
            continue
        baseline = base[(f.db, f.what)]
        ratio = f.median_ms / baseline
        out.append(
            row(
                "growth",
                f"{f.db} {f.what} at {f.size:,} incidents",
                f.median_ms,
                "ms",
                target=baseline * TARGET_RATIO,
                baseline=baseline,
                higher_is_better=False,
                met=ratio <= TARGET_RATIO,
                note=f"median; baseline: the same at {smallest:,} incidents; p90 {f.p90_ms:.2f} ms; "
                f"{f.items} items (at {smallest:,}: {items[(f.db, f.what)]})",
            )
        )
    return out


def table(figures: list[Figure], sizes: list[int]) -> str:
    smallest = sizes[0]
    base = {(f.db, f.what): f.median_ms for f in figures if f.size == smallest}
    header = " | ".join(f"{s:,}" for s in sizes)
    lines = [f"| db | what | {header} | worst ratio |", "|---|---|" + "---|" * (len(sizes) + 1)]
    keys = list(dict.fromkeys((f.db, f.what) for f in figures))
    by_key = {(f.db, f.what, f.size): f for f in figures}
    for db, what in keys:
        cells = [f"{by_key[(db, what, s)].median_ms:.2f} ({by_key[(db, what, s)].items})" for s in sizes]
        worst = max(by_key[(db, what, s)].median_ms / base[(db, what)] for s in sizes)
        mark = "" if worst <= TARGET_RATIO else " ✗"
        lines.append(f"| {db} | {what} | {' | '.join(cells)} | {worst:.2f}x{mark} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="SQLite, 1k and 100k, fewer requests (< 60 s)")
    parser.add_argument("--million", action="store_true", help="also 1M incidents")
    parser.add_argument("--requests", type=int, default=30, help="rounds of every list request per size")
    parser.add_argument("--creates", type=int, default=60, help="creates per size")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--json-out", type=Path, help="write the benchmark rows (JSON list) here")
    options = parser.parse_args()
    sizes = [1_000, 10_000, 100_000] + ([1_000_000] if options.million else [])
    dbs = ["sqlite", "postgresql"] if options.db == "both" else [options.db]
    if options.quick:
        sizes, dbs = [1_000, 100_000], ["sqlite"]
        options.requests, options.creates = min(options.requests, 15), min(options.creates, 30)
    info = machine()
    print(" · ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    figures: list[Figure] = []
    for db in dbs:
        figures += bench_db(db, sizes, options)
    print()
    print(f"Median ms ({options.requests} requests per list, {options.creates} creates per size); ", end="")
    print(f"(n): items returned; ✗: more than {TARGET_RATIO}x the figure at {sizes[0]:,}.")
    print(table(figures, sizes))
    info["load after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(" · ".join(f"{k} {v}" for k, v in info.items()))
    if options.json_out:
        options.json_out.write_text(json.dumps(rows(figures), indent=2) + "\n")


if __name__ == "__main__":
    main()
