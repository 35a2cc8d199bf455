"""Benchmark: webhook ingest (verify + inbox + 202) of the hub against a bare FastAPI + one INSERT.

Two servers run in turn on the same kind of database, each as a subprocess with one uvicorn worker:

1. the baseline, `bench/webhook_baseline_app.py`: reads the body, INSERTs it in the inbox's row shape
   (`ON CONFLICT DO NOTHING RETURNING id`), answers 202;
2. the hub, `incident-hub serve`, with one PagerDuty connector and `INCIDENT_HUB_INBOX_APPLIERS=0` (an
   ingest replica: the rows are stored, nothing applies them, so what is measured is the route alone;
   dispatcher and reconciler off).

Both get the same requests: PagerDuty V3 `incident.triggered` webhooks by a person, each for a new
incident, signed with the connector's secret the way PagerDuty signs (`X-PagerDuty-Signature: v1=<HMAC>`),
built before the run as `bench/loadgen.py --requests` files (signing costs nothing during the run), and
driven by `bench/loadgen.py` in its own process. Per server:

- saturation, closed loop: `--clients` keep-alive connections each send the next webhook as soon as the
  last is answered; webhooks answered per second in the window, and the server's CPU per webhook
  (PostgreSQL's too, on PostgreSQL);
- open loop at `--rate` webhooks/s (loadgen's `--rate`): Poisson arrivals, latency from each webhook's
  *scheduled* send time (coordinated omission corrected), p50/p99/p99.9.

`--profile DIR` py-spies each server over each window (raw stacks for bench/profile_summary.py);
`--hub-source DIR` runs the hub from another checkout (`git archive main | tar -x -C DIR`), so a change
is measured before and after with the same harness.

Targets (issue 12): p99 < 10 ms at 200/s; saturation at least 80 % of the baseline's.

    .venv/bin/python bench/webhook_ingest.py                      # SQLite and PostgreSQL, ~3 min
    .venv/bin/python bench/webhook_ingest.py --db sqlite --quick
    .venv/bin/python bench/webhook_ingest.py --json-out /tmp/ingest.json
    .venv/bin/python bench/webhook_ingest.py --db sqlite --quick --hub-source /tmp/main --profile /tmp/spy
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from api_create import (
    BENCH,
    BIN,
    DEFAULT_POSTGRES,
    Server,
    _cpu_seconds,
    _postgres_cpu_delta,
    _postgres_cpu_seconds,
    background_busy,
    free_port,
    hub_env,
    machine,
    postgres_schemas,
    serving,
    start_profiler,
)
from api_create import Load as ApiLoad
from report import row

from incident_hub.signing import sign_sha256

SECRET = "bench-pagerduty-webhook-secret"
HUB_USER_ID = "PHUBUSER"
TARGET_P99_MS = 10.0
TARGET_RATIO = 0.80
WEBHOOK_PATH = "/webhooks/pagerduty"


# ---- requests ---------------------------------------------------------------------------------------


def pagerduty_webhooks(count: int, tag: str) -> Iterator[dict[str, Any]]:
    """`count` signed PagerDuty webhooks as `bench/loadgen.py --requests` lines, each triggering a new
    incident."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
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
        )
        yield {
            "method": "POST",
            "path": WEBHOOK_PATH,
            "headers": {"X-PagerDuty-Signature": f"v1={sign_sha256(SECRET, body.encode())}"},
            "body": body,
        }


def write_requests(path: Path, count: int, tag: str) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for request in pagerduty_webhooks(count, tag):
            out.write(json.dumps(request) + "\n")
    return path


# ---- load -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One measured window: closed loop with `clients` connections, or open loop at `rate`."""

    name: str
    warmup: float
    seconds: float
    clients: int = 16
    rate: float | None = None

    def requests_needed(self) -> int:
        # Every webhook is new (a repeat would take the cheaper duplicate path): enough for a fast server.
        per_second = self.rate * 1.5 if self.rate is not None else 2500.0
        return int((self.warmup + self.seconds) * per_second) + 1000


def drive(server: Server, requests: Path, load: Load, profile: Path | None) -> dict[str, Any]:
    """Run `bench/loadgen.py` against `server`; CPU of the server (and PostgreSQL) over exactly the
    measured window, which loadgen marks on its stderr; py-spy over the window when `profile` is set."""
    command = [
        sys.executable, str(BENCH / "loadgen.py"), "--url", f"{server.base}{WEBHOOK_PATH}",
        "--expect", "202", "--requests", str(requests),
        "--warmup", str(load.warmup), "--seconds", str(load.seconds),
    ]  # fmt: skip
    command += ["--rate", str(load.rate)] if load.rate is not None else ["--clients", str(load.clients)]
    loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert loadgen.stderr is not None and loadgen.stdout is not None
    marks: dict[str, tuple[float, dict[int, float]]] = {}
    spy: subprocess.Popen[bytes] | None = None
    other: list[str] = []
    for line in loadgen.stderr:
        mark = line.strip()
        if mark not in ("window-start", "window-end"):
            other.append(line)
            continue
        marks[mark] = (_cpu_seconds(server.process.pid), _postgres_cpu_seconds())
        if mark == "window-start" and profile is not None:
            as_load = ApiLoad(load.clients, load.warmup, load.seconds, f"{server.name}-{load.name}")
            spy = start_profiler(server.process.pid, profile, as_load)
    result: dict[str, Any] = json.loads(loadgen.stdout.read() or "{}")
    if loadgen.wait() != 0 or not result:
        raise RuntimeError(f"load generator failed:\n{''.join(other)}")
    if spy is not None:
        spy.wait()
    (server_before, postgres_before), (server_after, postgres_after) = (
        marks["window-start"],
        marks["window-end"],
    )
    result["server_cpu_s"] = server_after - server_before
    result["postgres_cpu_s"] = _postgres_cpu_delta(postgres_before, postgres_after)
    return result


def cpu_ms_per_webhook(result: dict[str, Any], postgres: bool) -> float:
    cpu = result["server_cpu_s"] + (result["postgres_cpu_s"] if postgres else 0.0)
    return 1000 * cpu / result["completed"] if result["completed"] else math.nan


# ---- servers ----------------------------------------------------------------------------------------


@dataclass
class Options:
    clients: int
    rate: float
    warmup: float
    seconds: float
    profile: Path | None = None
    hub_source: Path | None = None


@dataclass
class Measured:
    server: str
    db: str
    saturation: dict[str, Any]
    paced: dict[str, Any]


@contextmanager
def database_urls(db: str, workdir: Path, postgres_url: str) -> Iterator[dict[str, str]]:
    if db == "sqlite":
        yield {name: f"sqlite:///{workdir / name}.db" for name in ("hub", "baseline")}
    else:
        with postgres_schemas(postgres_url, ["hub", "baseline"]) as urls:
            yield urls


def hub_command(url: str, workdir: Path, port: int, source: Path | None) -> tuple[list[str], dict[str, str]]:
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
    if source is not None:
        # Another checkout's package ahead of this one's (e.g. main's, for a before/after in one run).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
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
    closed = Load("saturation", options.warmup, options.seconds, clients=options.clients)
    paced = Load("paced", options.warmup, options.seconds, rate=options.rate)
    files = {
        load.name: write_requests(
            workdir / f"{name}-{load.name}.jsonl", load.requests_needed(), f"{name[0]}{db[0]}{load.name[0]}"
        )
        for load in (closed, paced)
    }
    with serving(name, command, env, port, workdir / f"{name}.log") as server:
        saturation = drive(server, files[closed.name], closed, options.profile)
        time.sleep(1.0)
        open_loop = drive(server, files[paced.name], paced, options.profile)
    measured = Measured(name, db, saturation, open_loop)
    print_measured(measured)
    return measured


def bench_db(db: str, options: Options, postgres_url: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp, database_urls(db, Path(tmp), postgres_url) as urls:
        workdir = Path(tmp)
        baseline = measure(
            "baseline", db, lambda port: baseline_command(urls["baseline"], port), workdir, options
        )
        hub = measure(
            "hub",
            db,
            lambda port: hub_command(urls["hub"], workdir, port, options.hub_source),
            workdir,
            options,
        )
    return rows_for(db, hub, baseline, options.rate)


def print_measured(m: Measured) -> None:
    postgres = m.db == "postgresql"
    s, p = m.saturation, m.paced
    print(
        f"  [{m.db}] {m.server:8}  saturation {s['throughput']:7.1f}/s "
        f"(p50 {s['p50_ms']:6.1f} ms, CPU {cpu_ms_per_webhook(s, postgres):5.2f} ms/webhook, "
        f"statuses {s['statuses']}, errors {s['errors']})  |  open loop {p['throughput']:6.1f}/s: "
        f"p50 {p['p50_ms']:6.2f} p99 {p['p99_ms']:7.2f} p99.9 {p['p99_9_ms']:7.2f} ms, "
        f"CPU {cpu_ms_per_webhook(p, postgres):5.2f} ms/webhook, statuses {p['statuses']}, "
        f"errors {p['errors']}, unfinished {p['unfinished']}",
        flush=True,
    )


# ---- report -----------------------------------------------------------------------------------------


def rows_for(db: str, hub: Measured, baseline: Measured, rate: float) -> list[dict[str, Any]]:
    postgres = db == "postgresql"
    hub_rate, base_rate = hub.saturation["throughput"], baseline.saturation["throughput"]
    hub_p99, base_p99 = hub.paced["p99_ms"], baseline.paced["p99_ms"]
    hub_cpu = cpu_ms_per_webhook(hub.saturation, postgres)
    base_cpu = cpu_ms_per_webhook(baseline.saturation, postgres)
    return [
        row(
            "webhook_ingest",
            f"saturation, {db}",
            hub_rate,
            "webhooks/s",
            target=TARGET_RATIO * base_rate,
            baseline=base_rate,
            higher_is_better=True,
            note=f"closed loop; target {TARGET_RATIO:.0%} of the bare FastAPI + one INSERT",
        ),
        row(
            "webhook_ingest",
            f"p99 at {rate:g}/s open loop, {db}",
            hub_p99,
            "ms",
            target=TARGET_P99_MS,
            baseline=base_p99,
            higher_is_better=False,
            note=f"p50 {hub.paced['p50_ms']:.2f} ms, p99.9 {hub.paced['p99_9_ms']:.2f} ms; "
            "Poisson arrivals, coordinated omission corrected",
        ),
        row(
            "webhook_ingest",
            f"CPU per webhook at saturation, {db}",
            hub_cpu,
            "ms",
            baseline=base_cpu,
            higher_is_better=False,
            note="server process" + (" + PostgreSQL" if postgres else ""),
        ),
    ]


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
    parser.add_argument("--profile", type=Path, help="py-spy the servers over each window into this folder")
    parser.add_argument(
        "--hub-source",
        type=Path,
        help="run the hub from this checkout's incident_hub (e.g. an export of main, for a before/after)",
    )
    args = parser.parse_args()
    options = Options(args.clients, args.rate, args.warmup, args.seconds, args.profile, args.hub_source)
    if args.quick:
        options.warmup, options.seconds = 1.0, 5.0
    info = machine()
    load = background_busy()
    print(
        f"webhook ingest: {info['date']}, commit {info['commit']}, {info['nproc']} CPUs, "
        f"load average {info['loadavg']}, background busy {load:.0%}"
        + (f", hub from {args.hub_source}" if args.hub_source else ""),
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        rows += bench_db(db, options, args.postgres_url)
    print()
    print(f"{'what':42} {'measured':>10} {'baseline':>10} {'ratio':>6} {'target':>10}  met")
    for item in rows:
        target = "-" if item["target"] is None else f"{item['target']:.2f}"
        print(
            f"{item['what']:42} {item['measured']:10.2f} {item['baseline']:10.2f} {item['ratio']:6.2f} "
            f"{target:>10}  {item['met']}"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
