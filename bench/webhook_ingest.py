"""Benchmark: webhook ingest (verify + inbox + 202) of the hub against a bare FastAPI + one INSERT.

Two servers run in turn on the same kind of database, each as a subprocess with one uvicorn worker:

1. the baseline, `bench/webhook_baseline_app.py`: reads the body, INSERTs it in the inbox's row shape
   (`ON CONFLICT DO NOTHING RETURNING id`), answers 202;
2. the hub, `incident-hub serve`, with one PagerDuty connector and `INCIDENT_HUB_INBOX_APPLIERS=0` (an
   ingest replica: the rows are stored, nothing applies them, so what is measured is the route alone;
   dispatcher and reconciler off).

Both get the same requests: PagerDuty V3 `incident.triggered` webhooks by a person, each for a new
incident, signed with the connector's secret the way PagerDuty signs (`X-PagerDuty-Signature: v1=<HMAC>`),
built before the run. Per server:

- saturation, closed loop: `--clients` keep-alive connections each send the next webhook as soon as the
  last is answered; webhooks answered per second in the window, and the server's CPU per webhook
  (PostgreSQL's too, on PostgreSQL);
- open loop at `--rate` webhooks/s: Poisson arrivals, latency from each webhook's *scheduled* send time
  (coordinated omission corrected), p50/p99/p99.9.

Targets (issue 12): p99 < 10 ms at 200/s; saturation at least 80 % of the baseline's.

    .venv/bin/python bench/webhook_ingest.py                      # SQLite and PostgreSQL, ~3 min
    .venv/bin/python bench/webhook_ingest.py --db sqlite --quick
    .venv/bin/python bench/webhook_ingest.py --json-out /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from api_create import (
    BENCH,
    BIN,
    DEFAULT_POSTGRES,
    _cpu_seconds,
    _postgres_cpu_delta,
    _postgres_cpu_seconds,
    background_busy,
    free_port,
    hub_env,
    machine,
    postgres_schemas,
    serving,
)
from loadgen import _read_response

from incident_hub.signing import sign_sha256

SECRET = "bench-pagerduty-webhook-secret"
HUB_USER_ID = "PHUBUSER"
TARGET_P99_MS = 10.0
TARGET_RATIO = 0.80


# ---- requests ---------------------------------------------------------------------------------------


def pagerduty_webhooks(count: int, port: int, tag: str) -> list[bytes]:
    """`count` signed PagerDuty webhooks, whole HTTP/1.1 requests, each triggering a new incident."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    requests = []
    for n in range(count):
        body = json.dumps(
            {
                "event": {
                    "id": f"EV{tag}{n}",
                    "event_type": "incident.triggered",
                    "resource_type": "incident",
                    "occurred_at": now,
                    "agent": {"id": "PPERSON", "type": "user_reference", "summary": "Monitoring"},
                    "client": None,
                    "data": {
                        "id": f"Q{tag}{n}",
                        "type": "incident",
                        "number": n + 1,
                        "status": "triggered",
                        "title": f"Disk 95% on db-{n}",
                        "urgency": "high",
                        "priority": {"id": "PRIO2", "type": "priority", "summary": "P2"},
                        "incident_key": f"disk/db-{tag}-{n}",
                        "html_url": f"https://example.pagerduty.com/incidents/Q{tag}{n}",
                        "service": {"id": "PSVC", "type": "service_reference", "summary": "db"},
                    },
                }
            }
        ).encode()
        head = (
            f"POST /webhooks/pagerduty HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: PagerDuty-Webhook/V3.0\r\nContent-Type: application/json\r\n"
            f"X-PagerDuty-Signature: v1={sign_sha256(SECRET, body)}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# ---- load -------------------------------------------------------------------------------------------


@dataclass
class Window:
    """What one measured window saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def cpu_ms_per_webhook(self, postgres: bool) -> float:
        cpu = self.server_cpu_s + (self.postgres_cpu_s if postgres else 0.0)
        return 1000 * cpu / self.answered if self.answered else math.nan


class Sampler:
    """CPU of the server (and PostgreSQL) between the window's start and end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server: list[float] = []
        self.postgres: list[dict[int, float]] = []

    def mark(self) -> None:
        self.server.append(_cpu_seconds(self.pid))
        self.postgres.append(_postgres_cpu_seconds())

    def fill(self, window: Window) -> None:
        window.server_cpu_s = self.server[1] - self.server[0]
        window.postgres_cpu_s = _postgres_cpu_delta(self.postgres[0], self.postgres[1])


async def _exchange(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> int:
    reader, writer = connection
    writer.write(request)
    status, _body, _close = await asyncio.wait_for(_read_response(reader), 30)
    return status


async def closed_loop(
    port: int, requests: Iterator[bytes], clients: int, warmup: float, seconds: float, sampler: Sampler
) -> Window:
    loop = asyncio.get_running_loop()
    window = Window(seconds=seconds)
    start = loop.time() + warmup
    stop = start + seconds

    async def client() -> None:
        connection = await asyncio.open_connection("127.0.0.1", port)
        try:
            while loop.time() < stop:
                began = loop.time()
                try:
                    status = await _exchange(connection, next(requests))
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    window.errors += 1
                    connection[1].close()
                    connection = await asyncio.open_connection("127.0.0.1", port)
                    continue
                ended = loop.time()
                if start <= ended <= stop:
                    window.latencies_ms.append(1000 * (ended - began))
                    window.statuses[status] = window.statuses.get(status, 0) + 1
        finally:
            connection[1].close()

    marks = [loop.call_at(start, sampler.mark), loop.call_at(stop, sampler.mark)]
    await asyncio.gather(*(client() for _ in range(clients)))
    del marks
    sampler.fill(window)
    return window


async def open_loop(
    port: int, requests: Iterator[bytes], rate: float, warmup: float, seconds: float, sampler: Sampler
) -> Window:
    """Poisson arrivals at `rate`; each webhook's latency counts from when it was due, so a stalled server
    is charged for every webhook that waited behind it."""
    loop = asyncio.get_running_loop()
    window = Window(seconds=seconds)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    began = loop.time()
    start, stop = began + warmup, began + warmup + seconds
    arrivals = random.Random(12)

    async def one(due: float, request: bytes) -> None:
        connection = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        try:
            status = await _exchange(connection, request)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            window.errors += 1
            connection[1].close()
            return
        if due >= start:
            window.latencies_ms.append(1000 * (loop.time() - due))
            window.statuses[status] = window.statuses.get(status, 0) + 1
        idle.append(connection)

    sampler_marks = [loop.call_at(start, sampler.mark), loop.call_at(stop, sampler.mark)]
    tasks = []
    due = began
    while True:
        due += arrivals.expovariate(rate)
        if due >= stop:
            break
        pause = due - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(one(due, next(requests))))
    await asyncio.gather(*tasks)
    await asyncio.sleep(max(0.0, stop - loop.time()))
    del sampler_marks
    for _reader, writer in idle:
        writer.close()
    sampler.fill(window)
    return window


# ---- servers ----------------------------------------------------------------------------------------


@dataclass
class Options:
    clients: int
    rate: float
    warmup: float
    seconds: float


@dataclass
class Measured:
    server: str
    db: str
    saturation: Window
    paced: Window


@contextmanager
def database_urls(db: str, workdir: Path, postgres_url: str) -> Iterator[dict[str, str]]:
    if db == "sqlite":
        yield {name: f"sqlite:///{workdir / name}.db" for name in ("hub", "baseline")}
    else:
        with postgres_schemas(postgres_url, ["hub", "baseline"]) as urls:
            yield urls


def hub_command(url: str, workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    config = workdir / "connectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "connectors": [
                    {
                        "id": "pagerduty",
                        "kind": "pagerduty",
                        "base_url": "http://127.0.0.1:9",
                        "credentials": {"env": "BENCH_PAGERDUTY_TOKEN"},
                        "webhook_secret": {"env": "BENCH_PAGERDUTY_WEBHOOK_SECRET"},
                        "options": {
                            "from_email": "hub@example.com",
                            "service_id": "PSVC",
                            "hub_user_id": HUB_USER_ID,
                        },
                    }
                ]
            }
        )
    )
    env = hub_env(url, workdir / "hub-data") | {
        "INCIDENT_HUB_CONFIG": str(config),
        "INCIDENT_HUB_INBOX_APPLIERS": "0",
        "INCIDENT_HUB_DISPATCH_ENABLED": "false",
        "INCIDENT_HUB_RECONCILE_ENABLED": "false",
        "BENCH_PAGERDUTY_TOKEN": "bench-token",
        "BENCH_PAGERDUTY_WEBHOOK_SECRET": SECRET,
    }
    command = [str(BIN / "incident-hub"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return command, env


def baseline_command(url: str, port: int) -> tuple[list[str], dict[str, str]]:
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "webhook_baseline_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return command, dict(os.environ, BENCH_DATABASE_URL=url)


def measure(name: str, db: str, build: Callable[[int], tuple[list[str], dict[str, str]]], workdir: Path,
            options: Options) -> Measured:  # fmt: skip
    port = free_port()
    command, env = build(port)
    total = int((options.warmup + options.seconds) * (options.rate * 1.5 + 2000)) + 5000
    requests = iter(pagerduty_webhooks(total, port, f"{name[0]}{db[0]}"))
    warmup, seconds = options.warmup, options.seconds
    with serving(name, command, env, port, workdir / f"{name}.log") as server:
        pid = server.process.pid
        saturation = asyncio.run(closed_loop(port, requests, options.clients, warmup, seconds, Sampler(pid)))
        time.sleep(1.0)
        paced = asyncio.run(open_loop(port, requests, options.rate, warmup, seconds, Sampler(pid)))
    measured = Measured(name, db, saturation, paced)
    print_measured(measured)
    return measured


def bench_db(db: str, options: Options, postgres_url: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp, database_urls(db, Path(tmp), postgres_url) as urls:
        workdir = Path(tmp)
        baseline = measure(
            "baseline", db, lambda port: baseline_command(urls["baseline"], port), workdir, options
        )
        hub = measure("hub", db, lambda port: hub_command(urls["hub"], workdir, port), workdir, options)
    return rows_for(db, hub, baseline, options.rate)


def print_measured(m: Measured) -> None:
    postgres = m.db == "postgresql"
    s, p = m.saturation, m.paced
    print(
        f"  [{m.db}] {m.server:8}  saturation {s.answered / s.seconds:7.1f}/s "
        f"(p50 {s.percentile(50):6.1f} ms, CPU {s.cpu_ms_per_webhook(postgres):5.2f} ms/webhook, "
        f"statuses {s.statuses}, errors {s.errors})  |  open loop {p.answered / p.seconds:6.1f}/s: "
        f"p50 {p.percentile(50):6.2f} p99 {p.percentile(99):7.2f} p99.9 {p.percentile(99.9):7.2f} ms, "
        f"CPU {p.cpu_ms_per_webhook(postgres):5.2f} ms/webhook, statuses {p.statuses}, errors {p.errors}",
        flush=True,
    )


# ---- report -----------------------------------------------------------------------------------------


def rows_for(db: str, hub: Measured, baseline: Measured, rate: float) -> list[dict[str, Any]]:
    postgres = db == "postgresql"
    hub_rate = hub.saturation.answered / hub.saturation.seconds
    base_rate = baseline.saturation.answered / baseline.saturation.seconds
    hub_p99, base_p99 = hub.paced.percentile(99), baseline.paced.percentile(99)
    hub_cpu = hub.saturation.cpu_ms_per_webhook(postgres)
    base_cpu = baseline.saturation.cpu_ms_per_webhook(postgres)
    return [
        _row(
            f"saturation, {db}",
            hub_rate,
            "webhooks/s",
            TARGET_RATIO * base_rate,
            base_rate,
            True,
            f"closed loop; target {TARGET_RATIO:.0%} of the bare FastAPI + one INSERT",
        ),
        _row(
            f"p99 at {rate:g}/s open loop, {db}",
            hub_p99,
            "ms",
            TARGET_P99_MS,
            base_p99,
            False,
            f"p50 {hub.paced.percentile(50):.2f} ms, p99.9 {hub.paced.percentile(99.9):.2f} ms; "
            f"coordinated omission corrected",
        ),
        _row(
            f"CPU per webhook at saturation, {db}",
            hub_cpu,
            "ms",
            None,
            base_cpu,
            False,
            "server process" + (" + PostgreSQL" if postgres else ""),
        ),
    ]


def _row(what: str, measured: float, unit: str, target: float | None, baseline: float | None,
         higher_is_better: bool, note: str) -> dict[str, Any]:  # fmt: skip
    ratio = measured / baseline if baseline else None
    met = None if target is None else (measured >= target if higher_is_better else measured < target)
    return {
        "benchmark": "webhook_ingest",
        "what": what,
        "measured": round(measured, 3),
        "unit": unit,
        "target": None if target is None else round(target, 3),
        "baseline": None if baseline is None else round(baseline, 3),
        "ratio": None if ratio is None else round(ratio, 3),
        "higher_is_better": higher_is_better,
        "met": met,
        "note": note,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop webhooks per second")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per load and server")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 5 s windows (~1 min)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--json-out", type=Path, help="write the result rows (bench/run_all.py's format)")
    args = parser.parse_args()
    options = Options(args.clients, args.rate, args.warmup, args.seconds)
    if args.quick:
        options.warmup, options.seconds = 1.0, 5.0
    info = machine()
    load = background_busy()
    print(
        f"webhook ingest: {info['date']}, commit {info['commit']}, {info['nproc']} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, background busy {load:.0%}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        rows += bench_db(db, options, args.postgres_url)
    print()
    print(f"{'what':42} {'measured':>10} {'baseline':>10} {'ratio':>6} {'target':>10}  met")
    for row in rows:
        target = "-" if row["target"] is None else f"{row['target']:.2f}"
        print(
            f"{row['what']:42} {row['measured']:10.2f} {row['baseline']:10.2f} {row['ratio']:6.2f} "
            f"{target:>10}  {row['met']}"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
