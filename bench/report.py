"""The rows every benchmark reports, and the table `run_all.py` prints of them.

A row is one figure against its target, next to the bare baseline of the same run where there is one:

    {"benchmark": "reconcile", "what": "SQLite opsgenie: sweep of 10000", "measured": 5.1, "unit": "s",
     "target": 60.0, "baseline": 0.7, "ratio": 7.29, "higher_is_better": false, "met": true, "note": ""}

`target` is compared with `measured`, in `unit`: a target on the ratio to the baseline is a row whose
measured value is that ratio (unit "% of baseline"). `ratio` is measured ÷ baseline. `met` is null when
the row has no target. A benchmark writes its rows with `--json-out FILE` (`write_rows`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIELDS = (
    "benchmark",
    "what",
    "measured",
    "unit",
    "target",
    "baseline",
    "ratio",
    "higher_is_better",
    "met",
    "note",
)
COLUMNS = ("benchmark", "what", "measured", "unit", "baseline", "ratio", "target", "met")


def row(
    benchmark: str,
    what: str,
    measured: float,
    unit: str,
    *,
    target: float | None = None,
    baseline: float | None = None,
    ratio: float | None = None,
    higher_is_better: bool = True,
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One row, its measured, baseline and target rounded to 3 decimals; `ratio` defaults to measured ÷
    baseline, `met` to measured against target (≥ when higher is better, else ≤; unknown when nothing
    was measured)."""
    if ratio is None and baseline:
        ratio = measured / baseline
    if met is None and target is not None and not math.isnan(measured):
        met = measured >= target if higher_is_better else measured <= target
    return {
        "benchmark": benchmark,
        "what": what,
        "measured": _rounded(measured),
        "unit": unit,
        "target": _rounded(target),
        "baseline": _rounded(baseline),
        "ratio": None if ratio is None else float(ratio),  # shown rounded once, by the table
        "higher_is_better": higher_is_better,
        "met": met,
        "note": note,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """`rows` as a JSON list in `path` (what `--json-out` writes)."""
    for item in rows:
        missing = [name for name in FIELDS if name not in item]
        if missing:
            raise ValueError(f"row {item.get('what')!r} lacks {', '.join(missing)}")
    Path(path).write_text(json.dumps(list(rows), indent=1) + "\n")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows a benchmark wrote; a row missing a field gets it as null (empty for text)."""
    loaded = json.loads(Path(path).read_text())
    if not isinstance(loaded, list):
        raise ValueError(f"{path}: expected a JSON list of rows")
    rows: list[dict[str, Any]] = []
    for item in loaded:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: a row is not an object")
        rows.append(
            {name: item.get(name, "" if name in ("what", "unit", "note") else None) for name in FIELDS} | item
        )
    return rows


def number(value: float | None) -> str:
    """A figure with as many decimals as it needs to be read: 1234, 56.7, 8.91, 0.0123."""
    if value is None:
        return "-"
    size = abs(value)
    if not math.isfinite(value):
        return str(value)
    if size >= 100 or (value == int(value) and size < 1e15):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "**no**"


def _target(item: dict[str, Any]) -> str:
    if item.get("target") is None:
        return "-"
    sign = "≥" if item.get("higher_is_better", True) else "≤"
    return f"{sign} {number(item['target'])}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(rows: Iterable[dict[str, Any]]) -> str:
    """A Markdown table: benchmark, what, measured, unit, baseline, ratio, target, met (notes below it)."""
    lines = [
        "| Benchmark | What | Measured | Unit | Baseline | Ratio | Target | Met |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    notes: list[str] = []
    for item in rows:
        what = str(item.get("what") or "").replace("|", "/")
        if item.get("note"):
            notes.append(f"- {item.get('benchmark')}, {what}: {item['note']}")
        lines.append(
            f"| {item.get('benchmark')} | {what} | {number(item.get('measured'))} | "
            f"{item.get('unit') or ''} | "
            f"{number(item.get('baseline'))} | {_ratio(item.get('ratio'))} | {_target(item)} | "
            f"{_met(item.get('met'))} |"
        )
    return "\n".join(lines + (["", *notes] if notes else []))


def machine() -> dict[str, str]:
    """What the figures depend on: date, CPUs, load average, Python and the commit measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    one, five, fifteen = os.getloadavg()
    return {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load average": f"{one:.2f} {five:.2f} {fifteen:.2f}",
        "commit": commit(),
    }


def commit() -> str:
    """The short commit of the working tree, `-dirty` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def header(facts: dict[str, str] | None = None) -> str:
    """The machine/date/load average/commit lines that head a benchmark section."""
    facts = facts or machine()
    return "\n".join(f"- **{name.capitalize()}:** {value}" for name, value in facts.items())
