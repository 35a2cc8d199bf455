"""Run every benchmark in bench/, each with its bare baseline in the same run, and print one table.

Each benchmark script speaks one protocol: `--quick` (the whole script in about a minute) and
`--json-out FILE` (its figures as rows, see bench/report.py). This runs them one after another in their
own processes (never two at once: they would share the CPUs they measure), collects the rows and prints
one table of every figure against its target. A script that is missing, or does not take `--json-out`
yet, is skipped with a note; one that fails keeps its rows (if it wrote any) and is reported failed.

    .venv/bin/python bench/run_all.py --quick                     # everything, short
    .venv/bin/python bench/run_all.py --only reconcile,signals    # some, at full length
    .venv/bin/python bench/run_all.py --quick --markdown docs/BENCHMARKS.md --json-out /tmp/all.json

`--markdown FILE` appends a section to FILE: the machine, date, load average and commit, the table, and
what was skipped or failed. PostgreSQL runs use `INCIDENT_HUB_BENCH_POSTGRES_URL` (`--postgres-url` sets
it for every script).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from report import header, machine, read_rows, table, write_rows  # noqa: E402

# In the order they run: the cheap ones first, the soak last.
BENCHMARKS = (
    "signals",
    "reconcile",
    "api_create",
    "webhook_ingest",
    "propagation",
    "drain",
    "growth",
    "analytics",
    "soak",
)


@dataclass
class Outcome:
    """What one benchmark gave: its rows, how it ended, how long it took."""

    name: str
    status: str  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)


def speaks_protocol(script: Path) -> bool:
    """Whether the script takes `--json-out` (its `--help` says so)."""
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    return shown.returncode == 0 and "--json-out" in shown.stdout


def run_one(name: str, quick: bool, timeout: float | None, workdir: Path) -> Outcome:
    script = BENCH / f"{name}.py"
    if not script.exists():
        return Outcome(name, "skipped", detail=f"bench/{name}.py does not exist (yet)")
    if not speaks_protocol(script):
        return Outcome(name, "skipped", detail=f"bench/{name}.py does not take --json-out (yet)")
    out = workdir / f"{name}.json"
    command = [sys.executable, str(script), *(["--quick"] if quick else []), "--json-out", str(out)]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        finished = subprocess.run(command, timeout=timeout, check=False)
        code: int | None = finished.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.monotonic() - started
    rows = read_rows(out) if out.exists() else []
    if code == 0:
        return Outcome(name, "ok", seconds, rows=rows)
    detail = f"timed out after {timeout:.0f} s" if code is None else f"exited {code}"
    return Outcome(name, "failed", seconds, detail=detail, rows=rows)


def summary(outcomes: list[Outcome]) -> str:
    lines = []
    for outcome in outcomes:
        took = f", {outcome.seconds:.0f} s" if outcome.status != "skipped" else ""
        detail = f": {outcome.detail}" if outcome.detail else ""
        lines.append(f"- {outcome.name}: {outcome.status}{took}{detail}")
    return "\n".join(lines)


def markdown(facts: dict[str, str], outcomes: list[Outcome], quick: bool, title: str) -> str:
    rows = [item for outcome in outcomes for item in outcome.rows]
    command = "bench/run_all.py" + (" --quick" if quick else "")
    return (
        f"\n## {title}\n\n`.venv/bin/python {command}`\n\n{header(facts)}\n\n{table(rows)}\n\n"
        f"Benchmarks:\n\n{summary(outcomes)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument(
        "--only",
        type=lambda v: [name.strip() for name in v.split(",") if name.strip()],
        default=None,
        help=f"comma-separated, of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (none)")
    parser.add_argument("--json-out", type=Path, help="every row, in one file")
    parser.add_argument("--markdown", type=Path, help="append a section with the table to this file")
    parser.add_argument("--title", default=None, help="the section's title (--markdown)")
    parser.add_argument("--postgres-url", default=None, help="sets INCIDENT_HUB_BENCH_POSTGRES_URL")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.postgres_url:
        os.environ["INCIDENT_HUB_BENCH_POSTGRES_URL"] = args.postgres_url
    facts = machine()
    print(header(facts), flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = [run_one(name, args.quick, args.timeout, Path(tmp)) for name in names]
    total = time.monotonic() - started
    rows = [item for outcome in outcomes for item in outcome.rows]
    print(f"\n{table(rows)}\n\n{summary(outcomes)}\n\nall benchmarks: {total:.0f} s")
    if args.json_out:
        write_rows(args.json_out, rows)
    if args.markdown:
        title = args.title or f"All benchmarks{' (--quick)' if args.quick else ''}, {facts['date']}"
        with args.markdown.open("a") as document:
            document.write(markdown(facts, outcomes, args.quick, title))
    # A missed target is in the table; a benchmark that failed (exited non-zero) fails the run.
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
