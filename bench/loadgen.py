"""Closed-loop HTTP/1.1 load generator for the API benchmarks (run as its own process).

Each of `--clients` connections sends `POST <path>` with a small JSON incident, waits for the whole
response, and sends the next one at once (keep-alive). It speaks just enough HTTP/1.1 by hand, over
asyncio streams, to stay cheap: the load generator shares the machine's cores with the server under
test, so every microsecond it spends is taken from the server.

Only requests that *complete* inside the measured window (after `--warmup` seconds) count; latency is
from writing the request to reading the last byte of the response. Prints one JSON object on stdout.

    python bench/loadgen.py --url http://127.0.0.1:8000/api/v1/incidents --key KEY --clients 32 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
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
    def __init__(self, url: str, key: str | None, expect: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"only http:// URLs are supported, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.expect = expect
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"User-Agent: incident-hub-bench\r\nAccept: application/json\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: "
        )

    def request(self, n: int) -> bytes:
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
        "max_ms": latencies[-1] if latencies else math.nan,
        "mean_ms": sum(latencies) / completed if completed else math.nan,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "failures": dict(results.failures),
        "sample_error": results.sample_error,
    }


async def run(
    url: str, key: str | None, clients: int, warmup: float, seconds: float, expect: int
) -> dict[str, Any]:
    target = Target(url, key, expect)
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
    args = parser.parse_args()
    summary = asyncio.run(run(args.url, args.key, args.clients, args.warmup, args.seconds, args.expect))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
