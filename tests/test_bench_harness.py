"""bench/run_all.py and the rows every benchmark writes (bench/report.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402


def test_run_all_says_how_to_run_everything_quick_or_one() -> None:
    shown = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--help"], capture_output=True, text=True, check=False
    )

    assert shown.returncode == 0, shown.stderr
    for option in ("--quick", "--only", "--markdown", "--json-out"):
        assert option in shown.stdout


def test_run_all_refuses_a_benchmark_it_does_not_know() -> None:
    shown = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--only", "nonsense"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert shown.returncode == 2
    assert "unknown benchmark nonsense" in shown.stderr


def test_a_row_takes_its_ratio_from_the_baseline_and_is_met_against_its_target() -> None:
    latency = report.row("ingest", "p99", 12.0, "ms", baseline=6.0, target=10.0, higher_is_better=False)
    share = report.row("create", "saturation", 64.0, "% of baseline", target=60.0)
    untargeted = report.row("signals", "opens", 72.5, "signals/s")

    assert (latency["ratio"], latency["met"]) == (2.0, False)
    assert (share["ratio"], share["met"]) == (None, True)
    assert (untargeted["ratio"], untargeted["met"]) == (None, None)


def test_the_table_shows_each_figure_against_its_baseline_and_target(tmp_path: Path) -> None:
    rows = [
        report.row(
            "reconcile",
            "SQLite opsgenie: drift repaired",
            95.0,
            "% of drift",
            target=100,
            note="left: opsgenie a1 (incident i1): vendor working, hub RESOLVED",
        ),
        report.row("ingest", "p99 at 200/s", 12.345, "ms", baseline=5.5, target=10, higher_is_better=False),
        report.row("signals", "opens", 1234.5, "signals/s"),
    ]
    path = tmp_path / "rows.json"
    report.write_rows(path, rows)

    shown = report.table(report.read_rows(path))

    assert shown.splitlines() == [
        "| Benchmark | What | Measured | Unit | Baseline | Ratio | Target | Met |",
        "|---|---|---:|---|---:|---:|---:|---|",
        "| reconcile | SQLite opsgenie: drift repaired | 95 | % of drift | - | - | ≥ 100 | **no** |",
        "| ingest | p99 at 200/s | 12.3 | ms | 5.50 | 2.24x | ≤ 10 | **no** |",
        "| signals | opens | 1,234 | signals/s | - | - | - | - |",
        "",
        "- reconcile, SQLite opsgenie: drift repaired: left: opsgenie a1 (incident i1): vendor working, hub "
        "RESOLVED",
    ]


def test_rows_written_by_hand_without_every_field_are_refused_on_write_and_filled_on_read(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="lacks"):
        report.write_rows(tmp_path / "rows.json", [{"benchmark": "x", "what": "y", "measured": 1.0}])
    path = tmp_path / "hand.json"
    path.write_text(
        json.dumps([{"benchmark": "drain", "what": "share of the allowed rate", "measured": 93.0}])
    )

    (read,) = report.read_rows(path)

    assert read["measured"] == 93.0 and read["baseline"] is None and read["note"] == ""
    assert "| drain | share of the allowed rate | 93 |" in report.table([read])
