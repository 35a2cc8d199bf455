"""HTTP/1.1 load generator for the benchmarks (run as its own process), closed or open loop.

Closed loop (default): each of `--clients` connections sends a request, waits for the whole response,
and sends the next one at once (keep-alive). This finds saturation throughput.

Open loop (`--rate R`): requests arrive as a Poisson process at R per second, whatever the server does;
each is handed to an idle keep-alive connection (up to `--connections`; beyond that it queues). Latency is
measured from the request's *scheduled* arrival, not from when a connection was free to send it, so a
stalled server shows up in the percentiles instead of silently slowing the generator down (coordinated
omission). Requests scheduled inside the window that have not finished when the run ends are counted
with the latency they had reached (`unfinished`).

It speaks just enough HTTP/1.1 by hand, over asyncio streams, to stay cheap: the load generator shares
the machine's cores with the server under test, so every microsecond it spends is taken from the server.

By default each request is `POST <path>` of a small JSON incident; `--requests FILE` replays pre-built
requests instead, one JSON object per line `{"method", "path", "headers": {...}, "body": str}`, cycled
in order (build signed webhooks there, so signing costs nothing during the run).

Only requests inside the measured window (after `--warmup` seconds) count: closed loop, those that
complete in it; open loop, those scheduled in it. Prints one JSON object on stdout.

    python bench/loadgen.py --url http://127.0.0.1:8000/api/v1/incidents --key KEY --clients 32 --seconds 20
    python bench/loadgen.py --url http://127.0.0.1:8000/api/v1/incidents --key KEY --rate 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 30.0


@dataclass
class Results:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    sample_error: str | None = None
    sent: int = 0


class Target:
    def __init__(self, url: str, key: str | None, expect: int, requests_file: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"only http:// URLs are supported, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.expect = expect
        self._auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"User-Agent: incident-hub-bench\r\nAccept: application/json\r\n{self._auth}"
            "Content-Type: application/json\r\nContent-Length: "
        )
        self._prebuilt = self._load(requests_file) if requests_file else []

    def _load(self, path: str) -> list[bytes]:
        """Encode every line of a requests file once, up front."""
        built: list[bytes] = []
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                spec = json.loads(line)
                body = spec.get("body", "").encode()
                headers = {"Content-Type": "application/json", **spec.get("headers", {})}
                head = (
                    f"{spec.get('method', 'POST')} {spec.get('path', self.path)} HTTP/1.1\r\n"
                    f"Host: {self.host}:{self.port}\r\nUser-Agent: incident-hub-bench\r\n{self._auth}"
                    + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                    + f"Content-Length: {len(body)}\r\n\r\n"
                )
                built.append(head.encode() + body)
        if not built:
            raise SystemExit(f"{path} holds no requests")
        return built

    def request(self, n: int) -> bytes:
        if self._prebuilt:
            return self._prebuilt[(n - 1) % len(self._prebuilt)]
        body = json.dumps({"title": f"bench {n}", "severity": "SEV3_MEDIUM", "source": "bench"}).encode()
        return f"{self._head}{len(body)}\r\n\r\n".encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), close
    if length is None:
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


async def _client(
    target: Target, counter: list[int], start_at: float, stop_at: float, results: Results
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while time.monotonic() < stop_at:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(target.host, target.port)
                except OSError as error:
                    if start_at <= time.monotonic() <= stop_at:
                        results.failures["connect"] += 1
                        results.sample_error = results.sample_error or f"connect: {error}"
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            counter[0] += 1
            payload = target.request(counter[0])
            began = time.perf_counter_ns()
            try:
                writer.write(payload)
                status, body, close = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as error:
                if start_at <= time.monotonic() <= stop_at:
                    results.failures[type(error).__name__] += 1
                    results.sample_error = results.sample_error or f"{type(error).__name__}: {error}"
                writer.close()
                reader = writer = None
                continue
            ended = time.perf_counter_ns()
            finished = time.monotonic()
            results.sent += 1
            if start_at <= finished <= stop_at:
                results.latencies_ns.append(ended - began)
                results.statuses[status] += 1
                if status != target.expect and results.sample_error is None:
                    results.sample_error = f"HTTP {status}: {body[:300].decode(errors='replace')}"
            if close:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize(results: Results, seconds: float, expect: int) -> dict[str, Any]:
    latencies = sorted(ns / 1e6 for ns in results.latencies_ns)
    completed = len(latencies)
    errors = completed - results.statuses.get(expect, 0) + sum(results.failures.values())
    return {
        "completed": completed,
        "throughput": completed / seconds,
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "p99_9_ms": _percentile(latencies, 99.9),
        "max_ms": latencies[-1] if latencies else math.nan,
        "mean_ms": sum(latencies) / completed if completed else math.nan,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "failures": dict(results.failures),
        "sample_error": results.sample_error,
    }


async def _open_connection(
    target: Target, results: Results, counts: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_connection(target.host, target.port)
    except OSError as error:
        if counts:
            results.failures["connect"] += 1
            results.sample_error = results.sample_error or f"connect: {error}"
        return None


async def _open_loop_connection(
    target: Target,
    queue: asyncio.Queue[tuple[int, float] | None],
    window: tuple[float, float],
    results: Results,
    in_flight: dict[int, float],
) -> None:
    """One keep-alive connection taking scheduled requests off the queue until it reads None."""
    start_at, stop_at = window
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while (item := await queue.get()) is not None:
            n, scheduled = item
            counts = start_at <= scheduled <= stop_at
            while connection is None:
                connection = await _open_connection(target, results, counts)
                if connection is None:
                    await asyncio.sleep(0.05)
            reader, writer = connection
            try:
                writer.write(target.request(n))
                status, body, close = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as error:
                in_flight.pop(n, None)
                if counts:
                    results.failures[type(error).__name__] += 1
                    results.sample_error = results.sample_error or f"{type(error).__name__}: {error}"
                writer.close()
                connection = None
                continue
            finished = time.monotonic()
            in_flight.pop(n, None)
            results.sent += 1
            if counts:
                results.latencies_ns.append(int((finished - scheduled) * 1e9))
                results.statuses[status] += 1
                if status != target.expect and results.sample_error is None:
                    results.sample_error = f"HTTP {status}: {body[:300].decode(errors='replace')}"
            if close:
                writer.close()
                connection = None
    finally:
        if connection is not None:
            connection[1].close()
            with contextlib.suppress(OSError):
                await connection[1].wait_closed()


async def run_open(
    target: Target, rate: float, connections: int, warmup: float, seconds: float, seed: int
) -> tuple[Results, dict[str, Any]]:
    """Poisson arrivals at `rate`/s for warmup + seconds; latency from each scheduled arrival."""
    results = Results()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    in_flight: dict[int, float] = {}
    begin = time.monotonic()
    start_at, stop_at = begin + warmup, begin + warmup + seconds
    workers = [
        asyncio.create_task(_open_loop_connection(target, queue, (start_at, stop_at), results, in_flight))
        for _ in range(connections)
    ]
    arrivals = random.Random(seed)
    usage = [resource.getrusage(resource.RUSAGE_SELF)]
    marked = False
    scheduled, n, behind = begin, 0, 0.0
    while True:
        scheduled += arrivals.expovariate(rate)
        if scheduled > stop_at:
            break
        if not marked and scheduled >= start_at:
            marked = True
            usage = [resource.getrusage(resource.RUSAGE_SELF)]
            print("window-start", file=sys.stderr, flush=True)
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        n += 1
        in_flight[n] = scheduled
        queue.put_nowait((n, scheduled))
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    usage.append(resource.getrusage(resource.RUSAGE_SELF))
    print("window-end", file=sys.stderr, flush=True)
    # Let what was sent in the window finish (bounded), then count the rest at the latency reached.
    for _ in range(500):  # at most 10 s
        if not any(start_at <= t <= stop_at for t in in_flight.values()):
            break
        await asyncio.sleep(0.02)
    now = time.monotonic()
    unfinished = [t for t in in_flight.values() if start_at <= t <= stop_at]
    results.latencies_ns.extend(int((now - t) * 1e9) for t in unfinished)
    for _ in workers:
        queue.put_nowait(None)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    before, after = usage[0], usage[-1]
    return results, {
        "mode": "open",
        "offered_rate": rate,
        "unfinished": len(unfinished),
        "generator_behind_ms": behind * 1000,
        "loadgen_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


async def run(
    url: str,
    key: str | None,
    clients: int,
    warmup: float,
    seconds: float,
    expect: int,
    rate: float | None = None,
    requests_file: str | None = None,
    connections: int = 128,
    seed: int = 1,
) -> dict[str, Any]:
    target = Target(url, key, expect, requests_file)
    if rate is not None:
        open_results, extra = await run_open(target, rate, connections, warmup, seconds, seed)
        return {**summarize(open_results, seconds, expect), **extra}
    results = Results()
    counter = [0]
    begin = time.monotonic()
    start_at = begin + warmup
    stop_at = start_at + seconds
    usage: list[resource.struct_rusage] = []

    async def mark_window() -> None:
        # Tell the parent when the measured window starts and ends (it samples the server's CPU time then).
        for pause, mark in ((warmup, "window-start"), (seconds, "window-end")):
            await asyncio.sleep(max(0.0, pause))
            usage.append(resource.getrusage(resource.RUSAGE_SELF))
            print(mark, file=sys.stderr, flush=True)

    marker = asyncio.create_task(mark_window())
    await asyncio.gather(*(_client(target, counter, start_at, stop_at, results) for _ in range(clients)))
    await marker
    summary = summarize(results, seconds, expect)
    summary["mode"] = "closed"
    before, after = usage
    summary["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="http://host:port/path to POST to")
    parser.add_argument("--key", default=os.environ.get("BENCH_API_KEY"), help="Bearer token (optional)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--expect", type=int, default=201, help="Status that counts as success")
    parser.add_argument("--rate", type=float, help="Open loop: Poisson arrivals at this many requests/s")
    parser.add_argument("--connections", type=int, default=128, help="Open loop: most connections")
    parser.add_argument("--seed", type=int, default=1, help="Open loop: seed of the arrival times")
    parser.add_argument("--requests", help="JSONL file of pre-built requests to cycle through")
    args = parser.parse_args()
    summary = asyncio.run(
        run(
            args.url,
            args.key,
            args.clients,
            args.warmup,
            args.seconds,
            args.expect,
            rate=args.rate,
            requests_file=args.requests,
            connections=args.connections,
            seed=args.seed,
        )
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
