"""`incident-hub demo` reads as a person would want: no log noise, each step numbered once, short
durations in seconds, notes shortened between words."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from incident_hub.demo_sync import duration, excerpt

NOTE = "[servicenow] beth.anglin: Rolling back deploy 2026.12.02-3"


def test_durations_under_a_minute_read_in_seconds() -> None:
    assert [duration(s) for s in (0.0, 0.354, 9.5, 42.2, 90, 7200)] == [
        "0.00 s",
        "0.35 s",
        "9.50 s",
        "42 s",
        "1.5 min",
        "2.0 h",
    ]


def test_long_notes_are_shortened_between_words() -> None:
    short = excerpt(NOTE, width=40)
    assert short == "[servicenow] beth.anglin: Rolling back …"
    assert excerpt("Rolling back", width=40) == "Rolling back"


@pytest.mark.slow
def test_demo_prints_numbered_steps_and_nothing_on_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_")}
    done = subprocess.run(
        [sys.executable, "-c", "from incident_hub.cli import main; main()", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.rstrip().endswith("demo passed")

    steps = [int(n) for n in re.findall(r"^(\d+)\. ", out, flags=re.MULTILINE)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 10

    assert not re.search(r"\d ms\b", out)
    timings = re.findall(r"after +(\S+) (\S+)$", out, flags=re.MULTILINE)
    assert timings and all(unit == "s" and float(value) < 60 for value, unit in timings)
    assert re.search(r"incident_resolved .* in \d+\.\d\d s$", out, flags=re.MULTILINE)

    notes = re.findall(r"'(\[servicenow\][^']*)'", out)
    assert len(notes) == 3
    for note in notes:
        kept = note.removesuffix(" …")
        assert NOTE.startswith(kept)
        assert kept == NOTE or NOTE[len(kept)] == " ", f"cut mid-word: {note!r}"
