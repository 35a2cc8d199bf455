"""The reconcile benchmark's sweep leaves no drift: every object it changes in a vendor, the hub agrees with.

bench/reconcile.py links the same hub incidents in every vendor and drifts each vendor in turn. It used
to draw each vendor's drift from all its objects, so Opsgenie (swept last) acknowledged 5 of its 100
alerts on incidents that an earlier vendor's drift had already acknowledged (3) or resolved (2): the hub
held the first already, and cannot move from RESOLVED back to ACKNOWLEDGED for the others. "95 of 100
repaired" was that, not a sweep that missed alerts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import reconcile as bench  # noqa: E402


def test_every_object_the_benchmark_drifts_is_repaired_by_one_full_sweep(
    database_url: str, tmp_path: Path
) -> None:
    # Half of each vendor's objects drift: drawn independently, two vendors would share about 10 of 40.
    args = argparse.Namespace(
        incidents=40,
        connectors=["pagerduty", "opsgenie"],
        drift=0.5,
        closed_share=0.2,
        servicenow_page=1000,
        seed=7,
    )

    results = bench.run("test", database_url, args, tmp_path)

    assert [(r["connector"], r["drifted"], r["repaired"], r["left"]) for r in results] == [
        ("pagerduty", 20, 20, []),
        ("opsgenie", 20, 20, []),
    ]
