"""Soak: the whole road (PagerDuty webhook → hub inbox → apply → outbox → Jira) held at half its
saturation for `--minutes`, watching for what only time shows: memory that grows, lag that builds up.

The pieces are bench/propagation.py's: the PagerDuty and Jira sandboxes in this process, the hub as
`incident-hub serve` (one uvicorn worker) on a fresh database with both connectors, and the open-loop
stream of changes made in PagerDuty's UI (trigger, acknowledge, priority, resolve; each should make one
Jira write). The default `--rate` of 10 changes/s is half of the 20/s at which one hub process is at the
edge of keeping up on this 2-vCPU machine (docs/BENCHMARKS.md, propagation), with the connectors'
rate limit at 25 calls/s as in those runs (`--rate-limit`).

Every `--sample-seconds` (from its own thread, so the stream keeps its schedule) it reads:
- the hub's resident memory (VmRSS of the server process);
- inbox lag: how long the oldest webhook not yet applied has waited, and how many wait;
- outbox lag: how long the oldest delivery due and not yet delivered has waited, and how many wait;
- webhooks not yet sent: PagerDuty sends its webhooks one at a time, each after the hub answered the one
  before, so a hub slow to take webhooks shows as changes whose webhook still waits in the sandbox.

Per minute it prints RSS, mean and max inbox/outbox lag, and the p50/p99 propagation of the changes made
in that minute (PagerDuty control call → Jira write that shows it; matched after the run, once drained).
The baseline is the run's own first minute (the first and second half of a one-minute run). It exits 1
when RSS grows 10 % or more (from the end of the warm-up, `max(10 s, 10 %)` of the run, to the end) or
either lag rises (the last minute's mean above twice the first's plus half a second) or the webhooks
waiting do (the last minute's most above twice the first's plus one second of changes).

    .venv/bin/python bench/soak.py                       # SQLite, 10 minutes at 10 changes/s
    .venv/bin/python bench/soak.py --db postgresql --minutes 3
    .venv/bin/python bench/soak.py --quick --json-out /tmp/soak.json     # 1 minute
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api_create import BIN, DEFAULT_POSTGRES, Server, free_port, hub_env, serving
from propagation import (
    Change,
    Stopped,
    Stream,
    Vendors,
    _on_sigterm,
    child_env,
    control_client,
    database_url,
    hub_config,
    match,
    percentile,
    vendors,
)
from report import header, machine, row, table, write_rows
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from incident_hub.store.tables import DeliveryRow, InboxRow
from incident_hub.sync.dispatcher import PENDING

RSS_GROWTH_LIMIT = 10.0  # %
TARGET_P99_MS = 250.0


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the stream started
    rss_mb: float
    inbox_waiting: int
    inbox_lag_s: float
    outbox_waiting: int
    outbox_lag_s: float
    unsent: (
        int  # changes whose PagerDuty webhook the sandbox has not sent yet (it waits on the hub's answers)
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _age(oldest: datetime | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    stamp = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    return max(0.0, (now - stamp).total_seconds())


def lags(engine: Engine) -> tuple[int, float, int, float]:
    """(webhooks waiting, oldest's wait in s, deliveries due and waiting, oldest's wait in s)."""
    now = datetime.now(UTC)
    with engine.connect() as connection:
        inbox_waiting, inbox_oldest = connection.execute(
            select(func.count(), func.min(InboxRow.received_at)).where(InboxRow.state == "pending")
        ).one()
        outbox_waiting, outbox_oldest = connection.execute(
            select(func.count(), func.min(DeliveryRow.created_at)).where(
                DeliveryRow.state == PENDING, DeliveryRow.next_attempt_at <= now
            )
        ).one()
    return inbox_waiting, _age(inbox_oldest, now), outbox_waiting, _age(outbox_oldest, now)


class Sampler(threading.Thread):
    def __init__(
        self, server: Server, url: str, every: float, started: float, unsent: Callable[[], int]
    ) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.server, self.every, self.started, self.unsent = server, every, started, unsent
        self.engine = create_engine(url, pool_size=1, max_overflow=0)
        self.samples: list[Sample] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            taken = time.monotonic()
            inbox_n, inbox_s, outbox_n, outbox_s = lags(self.engine)
            self.samples.append(
                Sample(
                    taken - self.started,
                    rss_mb(self.server.process.pid),
                    inbox_n,
                    inbox_s,
                    outbox_n,
                    outbox_s,
                    self.unsent(),
                )
            )
            self.halt.wait(max(0.0, self.every - (time.monotonic() - taken)))
        self.engine.dispose()


@dataclass(frozen=True)
class Window:
    """One minute of the run (or half of a one-minute run)."""

    start: float
    end: float
    rss_mb: float
    inbox_lag_s: float
    inbox_lag_max_s: float
    outbox_lag_s: float
    outbox_lag_max_s: float
    waiting_max: int
    unsent_max: int
    changes: int
    shown: int
    p50_ms: float
    p99_ms: float


def windows(samples: list[Sample], changes: list[Change], began: datetime, seconds: float) -> list[Window]:
    width = 60.0 if seconds >= 120 else seconds / 2
    out = []
    edge = 0.0
    while edge < seconds - 1e-6:
        end = min(edge + width, seconds)
        inside = [s for s in samples if edge <= s.at < end] or samples[-1:]
        made = [c for c in changes if edge <= (c.at - began).total_seconds() < end]
        shown = sorted(c.propagation_ms for c in made if c.propagation_ms is not None)
        out.append(
            Window(
                edge,
                end,
                inside[-1].rss_mb,
                statistics.fmean(s.inbox_lag_s for s in inside),
                max(s.inbox_lag_s for s in inside),
                statistics.fmean(s.outbox_lag_s for s in inside),
                max(s.outbox_lag_s for s in inside),
                max(s.inbox_waiting + s.outbox_waiting for s in inside),
                max(s.unsent for s in inside),
                len(made),
                len(shown),
                percentile(shown, 50),
                percentile(shown, 99),
            )
        )
        edge = end
    return out


def rising(first: float, last: float, slack: float = 0.5) -> bool:
    """A lag rises when the last window's figure is above twice the first's plus `slack` (half a second;
    for a backlog, one second's worth of changes)."""
    return last > 2 * first + slack


def soak(v: Vendors, db: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    with database_url(db, workdir, args.postgres_url) as url:
        env = child_env(
            hub_env(url, workdir / "hub-data")
            | hub_config(v, workdir / "connectors.yaml", {"rate_limit_per_second": args.rate_limit})
        )
        port = free_port()
        command = [str(BIN / "incident-hub"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        v.point_webhooks(f"{base}/webhooks/pagerduty", f"{base}/webhooks/jira")
        v.clear_ledgers()
        with serving("hub", command, env, port, workdir / "hub.log") as server:
            total = round(seconds * args.rate)
            with control_client(v.pd) as ui:
                stream = Stream(ui, f"soak-{db}", args.gap, "matching", random.Random(db))
                began, start = datetime.now(UTC), time.monotonic()
                sent = v.pd_state.ledger.entries
                sampler = Sampler(
                    server,
                    url,
                    args.sample_seconds,
                    start,
                    lambda: len(stream.changes) - len(sent(direction="out")),
                )
                sampler.start()
                next_report = 60.0
                for n in range(total):
                    pause = start + n / args.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    stream.next(measured=True)
                    if time.monotonic() - start >= next_report and sampler.samples:
                        last = sampler.samples[-1]
                        print(
                            f"  [{db}] {next_report / 60:.0f} min: RSS {last.rss_mb:.0f} MB, inbox "
                            f"{last.inbox_waiting} waiting ({last.inbox_lag_s:.1f} s), outbox "
                            f"{last.outbox_waiting} ({last.outbox_lag_s:.1f} s)",
                            flush=True,
                        )
                        next_report += 60
                sampler.halt.set()
                sampler.join()
            changes = stream.changes
            deadline = time.monotonic() + args.drain
            while match(changes, v.jira_state) and time.monotonic() < deadline:
                time.sleep(0.5)
    samples = sampler.samples
    warm = max(10.0, 0.1 * seconds)
    after_warmup = [s for s in samples if s.at >= warm] or samples
    rss_start, rss_end = after_warmup[0].rss_mb, samples[-1].rss_mb
    return {
        "db": db,
        "seconds": seconds,
        "rate": args.rate,
        "changes": len(changes),
        "lost": sum(1 for c in changes if c.write_at is None),
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_pct": 100 * (rss_end - rss_start) / rss_start,
        "windows": windows(samples, changes, began, seconds),
    }


def print_result(result: dict[str, Any]) -> None:
    name = "SQLite" if result["db"] == "sqlite" else "PostgreSQL"
    print(
        f"\n{name}: {result['changes']} changes at {result['rate']:g}/s over {result['seconds'] / 60:g} min, "
        f"{result['lost']} not shown in Jira; hub RSS {result['rss_start_mb']:.0f} → "
        f"{result['rss_end_mb']:.0f} MB ({result['rss_growth_pct']:+.1f} %)\n"
    )
    print(
        "| Window (s) | RSS (MB) | Inbox lag mean / max (s) | Outbox lag mean / max (s) | Most waiting | "
        "Webhooks unsent (max) | Changes | Shown | p50 (ms) | p99 (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in result["windows"]:
        print(
            f"| {w.start:.0f}-{w.end:.0f} | {w.rss_mb:.0f} | {w.inbox_lag_s:.2f} / {w.inbox_lag_max_s:.2f} | "
            f"{w.outbox_lag_s:.2f} / {w.outbox_lag_max_s:.2f} | {w.waiting_max} | {w.unsent_max} | "
            f"{w.changes} | {w.shown} | {w.p50_ms:.0f} | {w.p99_ms:.0f} |"
        )


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    where = "SQLite" if result["db"] == "sqlite" else "PostgreSQL"
    first, last = result["windows"][0], result["windows"][-1]
    span = f"{result['seconds'] / 60:g} min at {result['rate']:g} changes/s"
    return [
        row(
            "soak",
            f"{where}: hub RSS growth, {span} ({result['rss_start_mb']:.0f} → {result['rss_end_mb']:.0f} MB)",
            result["rss_growth_pct"],
            "%",
            target=RSS_GROWTH_LIMIT,
            higher_is_better=False,
            met=result["rss_growth_pct"] < RSS_GROWTH_LIMIT,
        ),
        row(
            "soak",
            f"{where}: inbox lag, last window's mean (baseline: the first window's)",
            last.inbox_lag_s,
            "s",
            baseline=first.inbox_lag_s,
            higher_is_better=False,
            met=not rising(first.inbox_lag_s, last.inbox_lag_s),
            note="met: not above twice the first window's mean plus 0.5 s",
        ),
        row(
            "soak",
            f"{where}: outbox lag, last window's mean (baseline: the first window's)",
            last.outbox_lag_s,
            "s",
            baseline=first.outbox_lag_s,
            higher_is_better=False,
            met=not rising(first.outbox_lag_s, last.outbox_lag_s),
        ),
        row(
            "soak",
            f"{where}: webhooks waiting in PagerDuty for the hub's answers, last window's most",
            last.unsent_max,
            "webhooks",
            baseline=first.unsent_max,
            higher_is_better=False,
            met=not rising(first.unsent_max, last.unsent_max, slack=result["rate"]),
            note="met: not above twice the first window's most plus one second of changes",
        ),
        row(
            "soak",
            f"{where}: propagation p99, last window (baseline: the first window's)",
            last.p99_ms,
            "ms",
            baseline=first.p99_ms,
            target=TARGET_P99_MS,
            higher_is_better=False,
        ),
        row(
            "soak",
            f"{where}: changes not shown in Jira",
            result["lost"],
            "changes",
            target=0,
            higher_is_better=False,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite", help="the hub's")
    parser.add_argument("--minutes", type=float, default=None, help="10 (--quick 1)")
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second made in PagerDuty")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every vendor API call")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=25.0,
        help="the connectors' rate_limit_per_second (25, as propagation's re-runs: the default 10 calls/s "
        "is itself the limit at 10 changes/s, one Jira write and its reads each)",
    )
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between changes to one incident")
    parser.add_argument("--drain", type=float, default=30.0, help="how long to wait for the last changes")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--json-out", type=Path, help="write the rows of bench/report.py here")
    args = parser.parse_args()
    args.minutes = args.minutes or (1.0 if args.quick else 10.0)
    signal.signal(signal.SIGTERM, _on_sigterm)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(header(machine()), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, vendors(Path(tmp), args.latency_ms) as v:
        # The sandboxes' webhook sender would load certifi per webhook (bench/propagation.py's docstring).
        os.environ["SSL_CERT_FILE"] = str(v.pd.ca_bundle)
        for db in dbs:
            print(f"[{db}] hub: {args.rate:g} changes/s for {args.minutes:g} min", flush=True)
            workdir = Path(tmp) / f"hub-{db}"
            workdir.mkdir()
            results.append(soak(v, db, workdir, args))
            print_result(results[-1])
    report = [item for result in results for item in rows(result)]
    print("\n" + table(report))
    if args.json_out:
        write_rows(args.json_out, report)
    # What the soak is for: memory and lag over time (p99 and lost changes are in the table).
    failed = [
        item["what"]
        for item in report
        if item["met"] is False and any(word in item["what"] for word in ("RSS", "lag", "webhooks waiting"))
    ]
    if failed:
        print("\nSOAK FAILED: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except Stopped:
        print("terminated: servers and sandboxes stopped", file=sys.stderr)
        sys.exit(143)
