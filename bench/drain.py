"""Benchmark: draining a backlog of deliveries to one vendor at its documented rate limit, through a storm
of 429s, against the same backlog pushed bare.

For each vendor it builds an in-process hub (`Hub(settings)`, migrated, SQLite or PostgreSQL), starts
that vendor's sandbox over HTTPS (`incident_hub.sandbox.world.connect`, webhooks off) and opens
`--backlog` incidents with the dispatcher stopped, so each leaves one pending delivery (not measured).
Then the dispatcher runs until every delivery is delivered (or `--timeout`), twice:

- **bare**: the connector's pace unlimited, the sandbox enforcing nothing: what the hub can push.
- **limited**: the sandbox enforces the vendor's documented limit (PagerDuty: 960 REST requests a minute
  per key; Jira Cloud: Atlassian publishes no number for API-token traffic, so 10 a second, the hub's
  default pace, as a per-second burst limit), the connector paced at that limit, and once a third of
  the backlog is delivered the sandbox answers the next `--storm` requests 429 with the vendor's headers
  asking for `--storm-wait` seconds.

Reported per vendor: vendor calls that succeeded per second over the drain and that rate as a share of
the limit (target >= 90 %), deliveries lost (not delivered, or not exactly one vendor object per
incident: target 0), the 429s the hub received (injected and enforced), the longest gap between two
successful vendor calls (target: the storm's waits as the calls in flight use it up, plus one second:
no breaker pause),
and the time to drain, beside the bare run's.

    .venv/bin/python bench/drain.py                  # PagerDuty and Jira, 480 deliveries each, SQLite
    .venv/bin/python bench/drain.py --quick          # PagerDuty only, 240 deliveries (under a minute)
    .venv/bin/python bench/drain.py --db postgresql --json-out drain.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database  # noqa: E402
from report import row  # noqa: E402

from incident_hub.commands import IncidentDraft  # noqa: E402
from incident_hub.hub import Hub  # noqa: E402
from incident_hub.sandbox.common import LedgerEntry  # noqa: E402
from incident_hub.sandbox.world import Side, connect  # noqa: E402
from incident_hub.settings import Settings  # noqa: E402
from incident_hub.store.tables import DeliveryRow  # noqa: E402


@dataclass(frozen=True)
class Limit:
    """A vendor's limit as its sandbox enforces it: `calls` per `period` seconds."""

    calls: int
    period: float
    source: str

    @property
    def per_second(self) -> float:
        return self.calls / self.period


LIMITS = {
    "pagerduty": Limit(960, 60.0, "960 a minute per API key (support.pagerduty.com REST API Rate Limits)"),
    "jira": Limit(10, 1.0, "10 a second (no number published for API-token traffic: the hub's default)"),
}
UNLIMITED = 1_000_000.0
CONCURRENCY = 4  # the connectors' default max_concurrency: calls in flight at once


@dataclass
class Drain:
    seconds: float
    calls: int  # vendor calls that succeeded
    refused: int  # 429s received
    injected: int
    lost: int
    longest_gap: float
    pauses: float  # rate-limit pauses the connector took (from the prometheus counter)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def run_drain(kind: str, url: str, vendor: str, args: argparse.Namespace, limited: bool) -> Drain:
    limit = LIMITS[vendor]
    workdir = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    settings = Settings.model_validate(
        {"database_url": url, "data_dir": workdir, "log_json": False, "dispatch_poll_seconds": 0.05}
    )
    hub = Hub(settings)
    hub.migrate()
    pace = limit.per_second if limited else UNLIMITED
    with ExitStack() as stack:
        side = connect(stack, hub, "http://127.0.0.1:9", workdir, (vendor,), {"rate_limit_per_second": pace})[
            vendor
        ]
        knobs = side.sandbox.state.knobs
        knobs.webhooks_enabled = False
        for n in range(args.backlog):
            hub.incidents.create(IncidentDraft(title=f"Backlog {n}"))
        if limited:
            knobs.rate_limit, knobs.rate_limit_period_seconds = limit.calls, limit.period
        side.ledger.clear()
        pauses_before = _pauses(vendor)
        seconds, injected = asyncio.run(_drain(hub, side, args, limited))
        entries = side.ledger.entries(direction="in")
        ok = [e for e in entries if (e.status or 500) < 400]
        delivered = _delivered(hub)
        objects = len(side.refs())
        lost = (args.backlog - delivered) + abs(objects - args.backlog)
        drain = Drain(
            seconds=seconds,
            calls=len(ok),
            refused=sum(1 for e in entries if e.status == 429),
            injected=injected,
            lost=lost,
            longest_gap=_longest_gap(ok),
            pauses=_pauses(vendor) - pauses_before,
        )
    asyncio.run(hub.stop())
    return drain


async def _drain(hub: Hub, side: Side, args: argparse.Namespace, limited: bool) -> tuple[float, int]:
    """Run the dispatcher until the backlog is delivered; the storm starts a third of the way in."""
    stop = asyncio.Event()
    started = time.monotonic()
    runner = asyncio.create_task(hub.dispatcher.run(stop))
    injected = 0
    try:
        while time.monotonic() - started < args.timeout:
            delivered = await asyncio.to_thread(_delivered, hub)
            if delivered >= args.backlog:
                break
            if limited and not injected and delivered >= args.backlog // 3:
                knobs = side.sandbox.state.knobs
                knobs.rate_limit_next, knobs.retry_after_seconds = args.storm, args.storm_wait
                injected = args.storm
            await asyncio.sleep(0.02)
        return time.monotonic() - started, injected
    finally:
        stop.set()
        await runner


def _delivered(hub: Hub) -> int:
    with hub.db.read() as session:
        return session.scalar(select(func.count()).where(DeliveryRow.state == "delivered")) or 0


def _longest_gap(entries: list[LedgerEntry]) -> float:
    times = sorted(e.at for e in entries)
    return max(((b - a).total_seconds() for a, b in itertools.pairwise(times)), default=0.0)


def _pauses(vendor: str) -> float:
    from incident_hub.metrics import REGISTRY

    return REGISTRY.get_sample_value("incident_hub_rate_limit_pauses_total", {"connector": vendor}) or 0.0


# ---- report -----------------------------------------------------------------------------------------


def rows_for(
    vendor: str, kind: str, bare: Drain, run: Drain, args: argparse.Namespace
) -> list[dict[str, Any]]:
    limit = LIMITS[vendor]
    share = run.rate / limit.per_second
    possible = min(bare.rate, limit.per_second)
    storm = f"{args.storm} x 429 asking {args.storm_wait} s"
    # The storm is used up by the calls in flight (the connector's concurrency) each time its wait is
    # over: that many rounds of the wait the vendor asked for, plus a second; the breaker's pause is 300 s.
    gap_target = math.ceil(args.storm / CONCURRENCY) * args.storm_wait + 1.0
    name = f"{vendor} ({kind}) drain of {args.backlog} at {limit.calls}/{limit.period:g} s, {storm}"

    def add(what: str, measured: float, unit: str, **figures: Any) -> dict[str, Any]:
        return row("drain", f"{name}: {what}", measured, unit, **figures)

    return [
        add(
            "share of the allowed rate used",
            share * 100,
            "% of limit",
            target=90.0,
            baseline=bare.rate / limit.per_second * 100,
            ratio=run.rate / possible if possible else None,
            higher_is_better=True,
            met=share >= 0.9,
            note=f"{run.rate:.2f} successful calls/s vs limit {limit.per_second:g}/s; "
            f"bare {bare.rate:.2f}/s; "
            "ratio = rate / min(bare rate, limit)",
        ),
        add(
            "deliveries lost",
            run.lost,
            "deliveries",
            target=0.0,
            baseline=bare.lost,
            ratio=None,
            higher_is_better=False,
            met=run.lost == 0,
            note="not delivered, or not exactly one vendor object per incident",
        ),
        add(
            "longest gap between vendor calls",
            run.longest_gap,
            "s",
            target=gap_target,
            baseline=bare.longest_gap,
            ratio=None,
            higher_is_better=False,
            met=run.longest_gap <= gap_target,
            note=f"{run.refused} x 429 received ({run.injected} injected), {run.pauses:g} pauses taken; the "
            "breaker's pause would be 300 s",
        ),
        add(
            "time to drain",
            run.seconds,
            "s",
            target=args.backlog / (0.9 * limit.per_second),
            baseline=bare.seconds,
            ratio=run.seconds / bare.seconds if bare.seconds else None,
            higher_is_better=False,
            met=run.seconds <= args.backlog / (0.9 * limit.per_second),
            note="bare: no limit, no 429",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--vendors", type=lambda v: v.split(","), default=list(LIMITS))
    parser.add_argument("--backlog", type=int, default=480)
    parser.add_argument("--storm", type=int, default=10, help="429s injected a third of the way in")
    parser.add_argument("--storm-wait", type=int, default=1, help="seconds the storm's 429s ask for")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="PagerDuty only, 240 deliveries")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.vendors, args.backlog = ["pagerduty"], min(args.backlog, 240)
    logging.getLogger("pagerduty").setLevel(logging.CRITICAL)  # its client logs every 429 as an error

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(
        f"# drain benchmark: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"commit {commit.stdout.strip()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    print()
    print("| vendor | db | run | drain s | calls/s | % of limit | 429s | pauses | longest gap s | lost |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows: list[dict[str, Any]] = []
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        for vendor in args.vendors:
            runs: dict[str, Drain] = {}
            for label, limited in (("bare", False), ("limited + storm", True)):
                with database(kind, args.postgres_url) as url:
                    result = runs[label] = run_drain(kind, url, vendor, args, limited)
                share = result.rate / LIMITS[vendor].per_second * 100
                print(
                    f"| {vendor} | {kind} | {label} | {result.seconds:.1f} | {result.rate:.2f} "
                    f"| {share:.0f} % | {result.refused} | {result.pauses:g} | {result.longest_gap:.2f} "
                    f"| {result.lost} |",
                    flush=True,
                )
            rows += rows_for(vendor, kind, runs["bare"], runs["limited + storm"], args)
    print()
    for item in rows:
        verdict = {True: "met", False: "MISSED", None: "-"}[item["met"]]
        print(f"- {item['what']}: {item['measured']} {item['unit']} (target {item['target']}) {verdict}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
