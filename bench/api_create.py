"""Benchmark: POST /api/v1/incidents on a real hub server, against a bare FastAPI + one-INSERT baseline.

For each database (SQLite in a temp file, PostgreSQL in a fresh schema that is dropped afterwards):

1. the hub: `incident-hub apikey create` (which also migrates), then `incident-hub serve` with one
   uvicorn worker, as a subprocess;
2. the baseline: `bench/baseline_app.py` under uvicorn, one worker, on the same kind of database;

each driven by `bench/loadgen.py` in its own process: `--clients` keep-alive connections POSTing
`{"title": "bench N", "severity": "SEV3_MEDIUM", "source": "bench"}` for `--seconds` after `--warmup`,
then open loop at `--rate` requests/s (Poisson arrivals, latency from each scheduled arrival, so
coordinated omission is corrected) for `--open-seconds`, then one client for `--light-seconds` (latency
without queueing). It prints p50/p99 latency, throughput, errors, CPU per request (server process,
PostgreSQL, load generator, rest of the machine), the hub/baseline throughput ratio and the open-loop
p50/p99/p99.9, then a Markdown table for docs/BENCHMARKS.md; `--json-out FILE` writes the rows checked
against the targets (saturation >= 60 % of the baseline, p99 < 25 ms at 100/s) as JSON.

    .venv/bin/python bench/api_create.py                       # both databases, 32 clients, 20 s
    .venv/bin/python bench/api_create.py --db postgresql --seconds 10
    .venv/bin/python bench/api_create.py --repeat 3            # shared machine: median of 3 rounds
    .venv/bin/python bench/api_create.py --quick --json-out /tmp/api_create.json   # under a minute
    .venv/bin/python bench/api_create.py --profile /tmp/prof   # py-spy the servers (figures skewed)
    .venv/bin/python bench/profile_summary.py /tmp/prof/hub-postgresql.txt

The servers inherit the environment, so `PYTHONPATH=/tmp/candidate` (a copy of `incident_hub/` with a
change in it) measures that change without touching the working tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from report import row
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = os.environ.get(
    "INCIDENT_HUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.60


# ---- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("fastapi", "uvicorn", "sqlalchemy", "psycopg", "pydantic")
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--exclude", "*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "nproc": str(len(os.sched_getaffinity(0))),
        "loadavg": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds() -> dict[int, float]:
    """CPU time of every `postgres` process, by pid."""
    seen: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8") as comm:
                if comm.read().strip() != "postgres":
                    continue
            seen[int(entry)] = _cpu_seconds(int(entry))
        except OSError:
            continue
    return seen


def _postgres_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU PostgreSQL processes used between two samples (those that exited in between are not seen)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs."""
    with open("/proc/stat", encoding="utf-8") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def background_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` while nothing of ours is loaded: other work on the machine."""
    busy0, total0 = _machine_busy()
    time.sleep(seconds)
    busy1, total1 = _machine_busy()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_quiet(limit: float, threshold: float = 0.10) -> float:
    """Wait (at most `limit` seconds) for the machine to be idle; returns the last background load seen."""
    deadline = time.monotonic() + limit
    load = background_busy()
    while load > threshold and time.monotonic() < deadline:
        load = background_busy()
    return load


# ---- servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not become healthy on {self.base}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, process, port, log)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def hub_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_")}
    env.update(
        INCIDENT_HUB_DATABASE_URL=database_url,
        INCIDENT_HUB_DATA_DIR=str(data_dir),
        INCIDENT_HUB_LOG_LEVEL="WARNING",
    )
    return env


def create_api_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "incident-hub"), "apikey", "create", "--name", "bench", "--scope", "write"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"apikey create failed:\n{done.stdout}\n{done.stderr}")
    for line in done.stdout.splitlines():
        if line.startswith("key:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no 'key:' line in apikey create output:\n{done.stdout}")


# ---- load -------------------------------------------------------------------------------------------


@dataclass
class Options:
    clients: int
    warmup: float
    seconds: float
    light_seconds: float
    profile: Path | None
    wait_quiet: float
    rate: float = 100.0
    open_seconds: float = 0.0


@dataclass(frozen=True)
class Load:
    clients: int
    warmup: float
    seconds: float
    profile_as: str | None = None
    rate: float | None = None


@dataclass
class Run:
    target: str
    db: str
    result: dict[str, Any] = field(default_factory=dict)


def representative(runs: list[Run], db: str, target: str) -> tuple[dict[str, Any] | None, list[float]]:
    """The run with the median throughput (its own latencies, not a mix of runs) and all throughputs."""
    mine = sorted(
        (r for r in runs if r.db == db and r.target == target), key=lambda r: r.result["throughput"]
    )
    if not mine:
        return None, []
    return mine[(len(mine) - 1) // 2].result, [r.result["throughput"] for r in mine]


class PostgresSessions:
    """Counts connections PostgreSQL accepted (pg_stat_database.sessions): pool churn shows up here."""

    def __init__(self, url: str | None) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool) if url else None
        self.connection = self.engine.connect() if self.engine is not None else None

    def count(self) -> int:
        if self.connection is None:
            return 0
        query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return int(self.connection.execute(text(query)).scalar_one())

    def close(self) -> None:
        if self.connection is not None and self.engine is not None:
            self.connection.close()
            self.engine.dispose()


def drive(
    server: Server, path: str, key: str | None, load: Load, options: Options, postgres_url: str | None
) -> dict[str, Any]:
    """Run the load generator against `server`, sampling CPU use over exactly the measured window."""
    env = dict(os.environ)
    if key:
        env["BENCH_API_KEY"] = key
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        f"{server.base}{path}",
        "--clients",
        str(load.clients),
        "--warmup",
        str(load.warmup),
        "--seconds",
        str(load.seconds),
    ]
    if load.rate is not None:
        command += ["--rate", str(load.rate)]
    background = wait_quiet(options.wait_quiet)
    if background > 0.10:
        print(
            f"  warning: the machine is {background:.0%} busy before the run: figures will be low", flush=True
        )
    loadgen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert loadgen.stderr is not None and loadgen.stdout is not None
    samples: dict[str, tuple[float, dict[int, float], float, float, float, int]] = {}
    spy: subprocess.Popen[bytes] | None = None
    other: list[str] = []
    sessions = PostgresSessions(postgres_url)
    try:
        for line in loadgen.stderr:
            mark = line.strip()
            if mark in ("window-start", "window-end"):
                busy, total = _machine_busy()
                samples[mark] = (
                    _cpu_seconds(server.process.pid),
                    _postgres_cpu_seconds(),
                    busy,
                    total,
                    time.monotonic(),
                    sessions.count(),
                )
                if mark == "window-start" and options.profile is not None and load.profile_as:
                    spy = start_profiler(server.process.pid, options.profile, load)
            else:
                other.append(line)
    finally:
        sessions.close()
    result: dict[str, Any] = json.loads(loadgen.stdout.read() or "{}")
    if loadgen.wait() != 0 or not result:
        raise RuntimeError(f"load generator failed:\n{''.join(other)}")
    if spy is not None:
        spy.wait()
    start, end = samples["window-start"], samples["window-end"]
    completed = max(result["completed"], 1)
    result["server_cpu_ms_per_req"] = (end[0] - start[0]) * 1000 / completed
    result["server_cpu_util"] = (end[0] - start[0]) / (end[4] - start[4])
    postgres_s = _postgres_cpu_delta(start[1], end[1])
    result["postgres_cpu_ms_per_req"] = postgres_s * 1000 / completed
    result["loadgen_cpu_ms_per_req"] = result["loadgen_cpu_s"] * 1000 / completed
    result["background_busy"] = background
    result["machine_busy"] = (end[2] - start[2]) / max(end[3] - start[3], 1)
    # Busy CPU time of the whole machine not spent in the server, the load generator or PostgreSQL
    # processes that lived through the window: backends that came and went (pool overflow), the
    # kernel, this script, and anything else running on the machine.
    cpus = len(os.sched_getaffinity(0))
    machine_s = (end[2] - start[2]) / max(end[3] - start[3], 1) * cpus * (end[4] - start[4])
    rest = machine_s - (end[0] - start[0]) - result["loadgen_cpu_s"] - postgres_s
    result["rest_cpu_ms_per_req"] = rest * 1000 / completed
    result["postgres_sessions_opened"] = end[5] - start[5]
    return result


def start_profiler(pid: int, directory: Path, load: Load) -> subprocess.Popen[bytes] | None:
    """py-spy the server over the window: only the thread holding the GIL, so where its CPU goes."""
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        print("  (py-spy not found: pip install py-spy into .venv to profile)", flush=True)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{load.profile_as}.txt"
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(load.seconds))), "--gil"]
    command += ["--rate", "200", "--format", "raw", "--output", str(output), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- databases --------------------------------------------------------------------------------------


@contextmanager
def postgres_schemas(url: str, names: list[str]) -> Iterator[dict[str, str]]:
    """Fresh schemas (one per server, dropped afterwards) → URLs whose search_path points at each."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    schemas = {name: f"bench_{tag}_{name}" for name in names}
    separator = "&" if "?" in url else "?"
    try:
        with admin.connect() as connection:
            for schema in schemas.values():
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield {name: f"{url}{separator}options=-csearch_path%3D{schema}" for name, schema in schemas.items()}
    finally:
        with admin.connect() as connection:
            for schema in schemas.values():
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def postgres_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()


@contextmanager
def database_urls(db: str, workdir: Path, postgres_url: str) -> Iterator[dict[str, str]]:
    if db == "sqlite":
        yield {name: f"sqlite:///{workdir / name}.db" for name in ("hub", "baseline")}
    else:
        with postgres_schemas(postgres_url, ["hub", "baseline"]) as urls:
            yield urls


def measure(
    target: str, db: str, server: Server, path: str, key: str, options: Options, stats_url: str | None
) -> Run:
    """The loaded run (`--clients`), the open-loop run at `--rate`, then a short single-client run, all on
    the same server."""
    print(
        f"[{db}] {target}: {options.clients} clients, {options.warmup:g} s warm-up + {options.seconds:g} s",
        flush=True,
    )
    loaded = Load(options.clients, options.warmup, options.seconds, f"{target}-{db}")
    run = Run(target, db, drive(server, path, key, loaded, options, stats_url))
    if options.open_seconds > 0:
        offered = Load(1, min(options.warmup, 2.0), options.open_seconds, rate=options.rate)
        run.result["open_loop"] = drive(server, path, key, offered, options, stats_url)
    if options.light_seconds > 0:
        light = Load(1, 0.5, options.light_seconds)
        run.result["single_client"] = drive(server, path, key, light, options, stats_url)
    print_run(run)
    return run


def bench_db(db: str, options: Options, postgres_url: str, targets: list[str]) -> list[Run]:
    runs: list[Run] = []
    stats_url = postgres_url if db == "postgresql" else None
    with tempfile.TemporaryDirectory(prefix=f"bench-{db}-") as tmp:
        workdir = Path(tmp)
        with database_urls(db, workdir, postgres_url) as urls:
            if "hub" in targets:
                env = hub_env(urls["hub"], workdir / "hub-data")
                key = create_api_key(env)
                port = free_port()
                command = [str(BIN / "incident-hub"), "serve", "--host", "127.0.0.1", "--port", str(port)]
                with serving("hub", command, env, port, workdir / "hub.log") as server:
                    runs.append(measure("hub", db, server, "/api/v1/incidents", key, options, stats_url))
            if "baseline" in targets:
                env = dict(os.environ, BENCH_DATABASE_URL=urls["baseline"])
                port = free_port()
                command = [
                    sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "baseline_app:app",
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                    "--no-access-log", "--log-level", "warning",
                ]  # fmt: skip
                with serving("baseline", command, env, port, workdir / "baseline.log") as server:
                    # The baseline ignores the Authorization header, but receives and parses it too.
                    key = "ih_bench_unused"
                    runs.append(measure("baseline", db, server, "/incidents", key, options, stats_url))
    return runs


# ---- report -----------------------------------------------------------------------------------------


def print_run(run: Run) -> None:
    r = run.result
    print(
        f"  {run.target}: {r['throughput']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"max {r['max_ms']:.1f} ms, errors {r['errors']}\n"
        f"    CPU ms/req: server {r['server_cpu_ms_per_req']:.2f} ({r['server_cpu_util']:.0%} of a core), "
        f"postgres {r['postgres_cpu_ms_per_req']:.2f}, load generator {r['loadgen_cpu_ms_per_req']:.2f}, "
        f"rest {r['rest_cpu_ms_per_req']:.2f}; machine busy {r['machine_busy']:.0%} "
        f"(before the run: {r['background_busy']:.0%})"
        + (f"; new PostgreSQL sessions {r['postgres_sessions_opened']}" if run.db == "postgresql" else ""),
        flush=True,
    )
    if r.get("sample_error"):
        print(f"    first error: {r['sample_error']}", flush=True)
    offered = r.get("open_loop")
    if offered:
        print(
            f"    open loop {offered['offered_rate']:g}/s: p50 {offered['p50_ms']:.1f} ms, "
            f"p99 {offered['p99_ms']:.1f} ms, p99.9 {offered['p99_9_ms']:.1f} ms, "
            f"unfinished {offered['unfinished']}, errors {offered['errors']}, "
            f"server CPU {offered['server_cpu_ms_per_req']:.2f} ms/req",
            flush=True,
        )
    light = r.get("single_client")
    if light:
        print(
            f"    1 client: {light['throughput']:.1f} req/s, p50 {light['p50_ms']:.1f} ms, "
            f"p99 {light['p99_ms']:.1f} ms, errors {light['errors']}, "
            f"server CPU {light['server_cpu_ms_per_req']:.2f} ms/req",
            flush=True,
        )


DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _chosen(runs: list[Run], db: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The representative hub and baseline runs of `db`, and a line per target that ran more than once."""
    by_target: dict[str, dict[str, Any]] = {}
    spreads: list[str] = []
    for target in ("hub", "baseline"):
        chosen, throughputs = representative(runs, db, target)
        if chosen is not None:
            by_target[target] = chosen
        if len(throughputs) > 1:
            spreads.append(
                f"{DB_NAMES[db]} {target}: {len(throughputs)} runs, "
                + ", ".join(f"{t:.0f}" for t in throughputs)
                + " req/s (the table shows the median run)"
            )
    return by_target, spreads


def _ratio(by_target: dict[str, dict[str, Any]]) -> float | None:
    if "hub" in by_target and "baseline" in by_target and by_target["baseline"]["throughput"]:
        return float(by_target["hub"]["throughput"] / by_target["baseline"]["throughput"])
    return None


def summary(runs: list[Run], info: dict[str, str], options: Options) -> str:
    lines = [
        f"date: {info['date']}   machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"Linux {info['kernel']}, commit {info['commit']}, load average {info['loadavg']}",
        f"versions: {info['packages']}, SQLite {info['sqlite']}"
        + (f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""),
        f"load: {options.clients} keep-alive clients, {options.warmup:g} s warm-up, "
        f"{options.seconds:g} s measured; open loop {options.rate:g}/s for {options.open_seconds:g} s",
        "",
        "| Database | Server | Throughput (req/s) | p50 (ms) | p99 (ms) | Errors | Hub / baseline "
        "| Server CPU (ms/req) | PostgreSQL CPU (ms/req) "
        f"| {options.rate:g}/s p50 (ms) | {options.rate:g}/s p99 (ms) | {options.rate:g}/s p99.9 (ms) "
        "| 1 client p50 (ms) | 1 client p99 (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    spreads: list[str] = []
    for db in DB_NAMES:
        by_target, db_spreads = _chosen(runs, db)
        spreads += db_spreads
        ratio = _ratio(by_target)
        for target in ("hub", "baseline"):
            if target not in by_target:
                continue
            r = by_target[target]
            pg = f"{r['postgres_cpu_ms_per_req']:.2f}" if db == "postgresql" else "-"
            shown = f"{ratio:.0%}" if ratio is not None and target == "hub" else ""
            nothing = {"p50_ms": math.nan, "p99_ms": math.nan, "p99_9_ms": math.nan}
            light = r.get("single_client") or nothing
            offered = r.get("open_loop") or nothing
            lines.append(
                f"| {DB_NAMES[db]} | {target} | {r['throughput']:.0f} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {shown} "
                f"| {r['server_cpu_ms_per_req']:.2f} | {pg} "
                f"| {offered['p50_ms']:.1f} | {offered['p99_ms']:.1f} | {offered['p99_9_ms']:.1f} "
                f"| {light['p50_ms']:.1f} | {light['p99_ms']:.1f} |"
            )
        if ratio is not None:
            hub_cpu = by_target["hub"]["server_cpu_ms_per_req"]
            baseline_cpu = by_target["baseline"]["server_cpu_ms_per_req"]
            # On a shared machine the share of a core each server got swings; CPU per create does not.
            verdicts.append(
                f"{DB_NAMES[db]} saturation >= {TARGET_RATIO:.0%} of baseline: "
                f"{'met' if ratio >= TARGET_RATIO else 'MISSED'} ({ratio:.0%}; server CPU per create "
                f"{hub_cpu:.2f} ms against {baseline_cpu:.2f} ms, "
                f"baseline / hub {baseline_cpu / hub_cpu:.0%})"
            )
        offered_hub = by_target.get("hub", {}).get("open_loop")
        if offered_hub:
            p99 = offered_hub["p99_ms"]
            verdicts.append(
                f"{DB_NAMES[db]} p99 < {TARGET_P99_MS:g} ms at {options.rate:g}/s open loop: "
                f"{'met' if p99 < TARGET_P99_MS else 'MISSED'} ({p99:.1f} ms)"
            )
    return "\n".join([*lines, *(["", *spreads] if spreads else []), "", *verdicts])


def report_rows(runs: list[Run], options: Options, info: dict[str, str]) -> list[dict[str, Any]]:
    """The rows bench/run_all.py collects: saturation against the baseline, the open-loop latency
    percentiles and CPU per create, per database."""
    rows: list[dict[str, Any]] = []
    context = f"commit {info['commit']}, load average {info['loadavg']}"

    def add(what: str, measured: float, unit: str, *, note: str = "", **figures: Any) -> None:
        note = f"{note}; {context}" if note else context
        rows.append(row("api_create", what, measured, unit, note=note, **figures))

    for db, name in DB_NAMES.items():
        by_target, _ = _chosen(runs, db)
        hub, baseline = by_target.get("hub"), by_target.get("baseline")
        if hub is None:
            continue
        ratio = _ratio(by_target)
        add(
            f"{name}: create saturation, {options.clients} clients",
            hub["throughput"],
            "req/s",
            target=TARGET_RATIO,
            baseline=baseline["throughput"] if baseline else None,
            higher_is_better=True,
            met=None if ratio is None else ratio >= TARGET_RATIO,
            note="target is the ratio to the bare FastAPI + one INSERT baseline",
        )
        add(
            f"{name}: server CPU per create, {options.clients} clients",
            hub["server_cpu_ms_per_req"],
            "ms",
            baseline=baseline["server_cpu_ms_per_req"] if baseline else None,
            higher_is_better=False,
        )
        offered = hub.get("open_loop")
        if offered is None:
            continue
        offered_baseline = (baseline or {}).get("open_loop") or {}
        for key, label, target in (
            ("p50_ms", "p50", None),
            ("p99_ms", "p99", TARGET_P99_MS),
            ("p99_9_ms", "p99.9", None),
        ):
            add(
                f"{name}: create {label} at {options.rate:g}/s open loop",
                offered[key],
                "ms",
                target=target,
                baseline=offered_baseline.get(key),
                higher_is_better=False,
                met=None if target is None else offered[key] < target,
                note=f"{offered['unfinished']} unfinished, {offered['errors']} errors",
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--target", choices=["hub", "baseline", "both"], default="both")
    parser.add_argument("--clients", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time before it")
    parser.add_argument(
        "--light-seconds",
        type=float,
        default=5.0,
        help="then this long with one client on the same server (latency without queueing); 0: skip",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds (hub and baseline alternate, fresh server and database each time); the summary "
        "shows the median run: use 3 or more on a shared machine",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop arrivals per second")
    parser.add_argument(
        "--open-seconds", type=float, default=20.0, help="measured open-loop time per server; 0: skip"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs (the whole script in about a minute): 3 s closed loop and 3 s open loop per server",
    )
    parser.add_argument("--json-out", type=Path, help="write the rows checked against the targets here")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other work on the machine to stop (busy < 10%%)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the servers with py-spy (collapsed stacks, <dir>/<server>-<db>.txt) over the "
        "measured window; the sampler costs CPU, so do not quote those figures",
    )
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.seconds, args.open_seconds, args.light_seconds = 1.0, 3.0, 3.0, 0.0
        args.repeat = 1
    options = Options(
        args.clients,
        args.warmup,
        args.seconds,
        args.light_seconds,
        args.profile,
        args.wait_quiet,
        rate=args.rate,
        open_seconds=args.open_seconds,
    )
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    targets = ["hub", "baseline"] if args.target == "both" else [args.target]

    info = machine()
    if "postgresql" in dbs:
        info["postgresql"] = postgres_version(args.postgres_url)
    print(f"{info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  python={info['python']}", flush=True)
    runs: list[Run] = []
    for repeat in range(args.repeat):
        if args.repeat > 1:
            print(f"--- round {repeat + 1} of {args.repeat}", flush=True)
        for db in dbs:
            runs.extend(bench_db(db, options, args.postgres_url, targets))
    print()
    print(summary(runs, info, options))
    if args.json:
        payload = {
            "machine": info,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": [{"db": r.db, "target": r.target, **r.result} for r in runs],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if args.json_out:
        args.json_out.write_text(json.dumps(report_rows(runs, options, info), indent=2))


if __name__ == "__main__":
    main()
