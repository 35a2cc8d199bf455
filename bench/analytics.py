"""Analytics at scale: every report and every search filter over 10k, 100k and 1M incidents.

A year of incidents with the spreads a busy hub holds (bulk Core inserts, seeded): severities 5/15/40/40 %
SEV1..SEV4, thirty services by popularity (Zipf), one or two per incident with their impact, eight teams,
five sources, acknowledgement and resolution delays drawn per severity (log-normal), 0.3 % still open,
a fifth from component signals (host/device/component tags and a first signal before detection), root
causes from a dozen categories, dedup keys that repeat; the stored lifecycle durations filled as the
transitions fill them. The table grows in place: each size adds the incidents of the next.

At each size, through the API in process (FastAPI's TestClient: routing, validation, SQL, JSON), every
report over its default or a 30-day window (now, response times overall and by service, reliability,
trends by day, recurrence) and every filter of `GET /api/v1/incidents` (a page of 50) is asked
`--requests` times, interleaved; p50/p99 per case. Targets (docs/BENCHMARKS.md): p99 < 200 ms for the
windowed reports and < 50 ms for filtered lists at 1M incidents on PostgreSQL; the baseline of each
figure is the same case at the smallest size. `--plans FILE` writes PostgreSQL's EXPLAIN (ANALYZE,
BUFFERS) of every statement each report and filter issues at the largest size.

    .venv/bin/python bench/analytics.py                         # PostgreSQL, 10k, 100k, 1M
    .venv/bin/python bench/analytics.py --quick                 # PostgreSQL, 10k and 100k, fewer requests
    .venv/bin/python bench/analytics.py --db sqlite --sizes 10000,100000 --json-out /tmp/analytics.json
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database, running_hub  # noqa: E402
from report import header, machine, row, table, write_rows  # noqa: E402

from incident_hub.api.auth import Scope  # noqa: E402
from incident_hub.hub import Hub  # noqa: E402
from incident_hub.store.tables import IncidentRow  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
SEVERITIES = [("SEV1_CRITICAL", 0.05), ("SEV2_HIGH", 0.15), ("SEV3_MEDIUM", 0.40), ("SEV4_LOW", 0.40)]
# Median minutes to acknowledge and to resolve, per severity.
DELAYS = {"SEV1_CRITICAL": (3, 45), "SEV2_HIGH": (10, 120), "SEV3_MEDIUM": (40, 600), "SEV4_LOW": (120, 2000)}
SERVICES = [f"svc-{n:02d}" for n in range(30)]
TEAMS = [f"team-{n}" for n in range(8)]
SOURCES = ["prometheus", "grafana", "datadog", "manual", "signals"]
CAUSES = ["deployment", "configuration", "capacity", "dependency", "hardware", "security", "network",
          "database", "certificate", "dns", "disk full", "memory leak"]  # fmt: skip
IMPACTS = [("degraded", 0.5), ("partial_outage", 0.35), ("total_outage", 0.15)]
OPEN_SHARE = 0.003
TARGET_REPORT_MS, TARGET_LIST_MS = 200.0, 50.0
WINDOW = {"from": (NOW - timedelta(days=30)).isoformat(), "to": NOW.isoformat()}
REPORTS: list[tuple[str, dict[str, str]]] = [
    ("now", {}),
    ("response-times", WINDOW),
    ("response-times", {**WINDOW, "group_by": "service"}),
    ("reliability", WINDOW),
    ("trends", {**WINDOW, "bucket": "day", "tz": "Europe/Berlin"}),
    ("recurrence", WINDOW),
]
FILTERS: list[dict[str, str]] = [
    {},
    {"affected_service": "svc-07"},
    {"component": "capture"},
    {"host": "host-017"},
    {"tag": "env:prod"},
    {"source": "datadog"},
    {"root_cause": "certificate"},
    {"q": "checkout latency"},
    {"created_from": (NOW - timedelta(days=7)).isoformat(), "created_to": NOW.isoformat()},
    {"resolved_from": (NOW - timedelta(days=2)).isoformat()},
    {"sla_breached": "true"},
    {"severity": "SEV1_CRITICAL", "affected_service": "svc-03"},
]


def _pick(spread: random.Random, weighted: list[tuple[str, float]]) -> str:
    return spread.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _zipf(spread: random.Random, names: list[str]) -> str:
    return spread.choices(names, weights=[1 / (rank + 1) for rank in range(len(names))])[0]


def _incident(n: int, spread: random.Random) -> dict[str, Any]:
    severity = _pick(spread, SEVERITIES)
    detected = NOW - YEAR * spread.random()
    ack_median, resolve_median = DELAYS[severity]
    ack = detected + timedelta(minutes=spread.lognormvariate(math.log(ack_median), 0.8))
    resolved = ack + timedelta(minutes=spread.lognormvariate(math.log(resolve_median), 1.0))
    is_open = spread.random() < OPEN_SHARE or resolved > NOW
    from_signal = spread.random() < 0.2
    services = sorted({_zipf(spread, SERVICES) for _ in range(1 + (spread.random() < 0.3))})
    cause = spread.choice(CAUSES) if spread.random() < 0.6 else None
    tags = ["env:prod" if spread.random() < 0.7 else "env:staging"]
    first_signal = None
    if from_signal:
        component = spread.choice(["capture", "encoder", "monitor"])
        host, device = f"host-{spread.randrange(200):03d}", f"dev{spread.randrange(4)}"
        tags += [f"host:{host}", f"device:{device}", f"component:{component}"]
        first_signal = detected - timedelta(seconds=spread.uniform(5, 300))
    acknowledged = None if is_open and spread.random() < 0.5 else min(ack, NOW)
    title = f"{services[0]} {spread.choice(['latency', 'errors', 'down', 'saturation'])} #{n}"
    if n % 997 == 0:
        title = f"checkout latency p99 above target #{n}"
    sla_minutes = resolve_median * 3
    return {
        "id": str(uuid.UUID(int=spread.getrandbits(128), version=4)),
        "number": f"BENCH-{n:08d}",
        "title": title,
        "description": f"Alert fired for {', '.join(services)}" + (f"; suspected {cause}" if cause else ""),
        "severity": severity,
        "status": ("INVESTIGATING" if acknowledged else "OPEN") if is_open else "RESOLVED",
        "affected_services": [{"name": s, "impact": _pick(spread, IMPACTS)} for s in services],
        "assigned_team": spread.choice(TEAMS),
        "detected_at": detected,
        "acknowledged_at": acknowledged,
        "resolved_at": None if is_open else resolved,
        "sla_deadline": detected + timedelta(minutes=sla_minutes),
        "sla_breached": (resolved - detected) > timedelta(minutes=sla_minutes),
        "root_cause": cause,
        "summary": {"root_cause": cause} if cause else None,
        "dedup_key": f"{services[0]}/{spread.randrange(400)}",
        "source": "signals" if from_signal else spread.choice(SOURCES[:4]),
        "tags": tags,
        "version": 1,
        "created_at": detected,
        "updated_at": resolved if not is_open else detected,
        "first_signal_at": first_signal,
        "time_to_detect_seconds": None if first_signal is None else (detected - first_signal).total_seconds(),
        "time_to_acknowledge_seconds": _seconds(detected, acknowledged),
        "acknowledge_to_resolve_seconds": None if is_open else _seconds(acknowledged, resolved),
        "time_to_resolve_seconds": None if is_open else (resolved - detected).total_seconds(),
    }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def fill(hub: Hub, start: int, count: int, batch: int = 5000) -> float:
    """Insert incidents `start` … `start + count - 1`; returns the seconds it took."""
    spread = random.Random(start * 7919 + 1)
    began = time.perf_counter()
    # The open-incident dedup index allows one open incident per key: the few open ones get unique keys.
    rows: list[dict[str, Any]] = []
    with hub.db.engine.begin() as connection:
        for n in range(start, start + count):
            incident = _incident(n, spread)
            if incident["resolved_at"] is None:
                incident["dedup_key"] = f"open/{n}"
            rows.append(incident)
            if len(rows) == batch:
                connection.execute(insert(IncidentRow), rows)
                rows = []
        if rows:
            connection.execute(insert(IncidentRow), rows)
    with hub.db.engine.begin() as connection:
        if hub.db.is_sqlite:
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.exec_driver_sql("ANALYZE incidents")
    return time.perf_counter() - began


def _cases() -> list[tuple[str, str, str, dict[str, str]]]:
    """(kind, name, path, parameters) of each report and each filter."""
    cases = []
    for name, params in REPORTS:
        shown = "".join(f" {k}={v}" for k, v in params.items() if k in ("group_by", "bucket"))
        cases.append(("report", name + shown, f"/api/v1/analytics/{name}", params))
    for filters in FILTERS:
        shown = "+".join(f"{k}={v[:16]}" for k, v in filters.items()) or "none"
        cases.append(("list", f"list {shown}", "/api/v1/incidents", {**filters, "limit": "50"}))
    return cases


def measure(client: TestClient, requests: int) -> dict[str, dict[str, Any]]:
    cases = _cases()
    samples: dict[str, list[float]] = {name: [] for _, name, _, _ in cases}
    for _, _, path, params in cases:  # warm-up
        assert client.get(path, params=params).status_code == 200
    for _ in range(requests):
        for _, name, path, params in cases:
            began = time.perf_counter()
            answer = client.get(path, params=params)
            samples[name].append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
    figures = {}
    for kind, name, _, _ in cases:
        ordered = sorted(samples[name])
        figures[name] = {
            "kind": kind,
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] * 1000,
        }
    return figures


def plans(client: TestClient, hub: Hub, path: Path) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement each case issues (PostgreSQL)."""
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    out: list[str] = []
    for _, name, route, params in _cases():
        statements.clear()
        event.listen(hub.db.engine, "before_cursor_execute", seen)
        try:
            client.get(route, params=params)
        finally:
            event.remove(hub.db.engine, "before_cursor_execute", seen)
        for statement, parameters in statements:
            if "incidents" not in statement or "api_keys" in statement:
                continue
            with hub.db.engine.connect() as connection:
                raw = connection.connection.driver_connection
                with raw.cursor() as cursor:
                    cursor.execute("SET jit = off")
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = "\n".join(r[0] for r in cursor.fetchall())
            out.append(f"### {name}\n\n```\n{plan}\n```\n")
    path.write_text("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--requests", type=int, default=40, help="per case and size (p99 of 40: the worst)")
    parser.add_argument("--quick", action="store_true", help="10k and 100k, 10 requests per case")
    parser.add_argument("--plans", type=Path, help="write EXPLAIN ANALYZE at the largest size (PostgreSQL)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    requests = 10 if args.quick else args.requests
    info = machine()
    print(header(info), flush=True)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with database(args.db, args.postgres_url) as url, running_hub(url, Scope.READ) as (client, hub):
        have = 0
        for size in sizes:
            took = fill(hub, have, size - have)
            have = size
            print(f"[{args.db}] {size:,} incidents (filled in {took:.1f} s)", flush=True)
            results[size] = measure(client, requests)
            for name, figure in results[size].items():
                p50, p99 = figure["p50_ms"], figure["p99_ms"]
                print(f"  {name:60} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms", flush=True)
        if args.plans and not hub.db.is_sqlite:
            plans(client, hub, args.plans)
            print(f"plans written to {args.plans}")
    rows = []
    smallest = sizes[0]
    for size in sizes:
        for name, figure in results[size].items():
            is_list = figure["kind"] == "list"
            rows.append(
                row(
                    "analytics",
                    f"{args.db} {name} at {size:,} incidents, p99",
                    figure["p99_ms"],
                    "ms",
                    target=TARGET_LIST_MS if is_list else TARGET_REPORT_MS,
                    baseline=results[smallest][name]["p99_ms"] if size != smallest else None,
                    higher_is_better=False,
                    note=f"p50 {figure['p50_ms']:.1f} ms; baseline: the same at {smallest:,}; "
                    f"{requests} requests; load average {info['load average']}",
                )
            )
    print()
    print(table(rows))
    if args.json_out:
        write_rows(args.json_out, rows)


if __name__ == "__main__":
    main()
