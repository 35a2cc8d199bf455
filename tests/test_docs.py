"""The README's configuration table names every setting the hub reads, and its commands run as written.

The shell blocks of README.md run literally, in order, in a throw-away copy of the checkout with nothing of
ours on PATH, under `set -euo pipefail`: a command that is not installed, a variable never set or a failed
call stops the run. An HTML comment just before a block tells the run what the block needs:
`<!-- readme-test: skip (why) -->` leaves it out, `<!-- readme-test: background -->` leaves its last
command running (a server) and waits until it answers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from incident_hub.serving import free_port
from incident_hub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_PORT = "8080"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```bash\n(?P<body>.*?)```", re.DOTALL)
ASSIGNED = re.compile(r"(?:^|[\s;(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)
USED = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class ShellBlock:
    mark: str
    body: str

    @property
    def skipped(self) -> bool:
        return self.mark.startswith("skip")


def readme_blocks(text: str) -> list[ShellBlock]:
    return [ShellBlock(m["mark"] or "", m["body"]) for m in BLOCK.finditer(text)]


def test_readme_configuration_table_lists_every_setting() -> None:
    text = README.read_text()
    missing = [
        f"INCIDENT_HUB_{name.upper()}"
        for name in Settings.model_fields
        if f"`INCIDENT_HUB_{name.upper()}`" not in text
    ]
    assert missing == []


def test_readme_runs_incident_hub_from_the_virtualenv_it_makes() -> None:
    """After `python3 -m venv .venv`, `incident-hub` is on no PATH: each call must name `.venv/bin/`."""
    bare = [
        line
        for block in readme_blocks(README.read_text())
        for line in block.body.splitlines()
        if re.search(r"(?<![\w/.-])incident-hub\s", line.split("#", 1)[0])
    ]
    assert bare == []


def test_readme_sets_every_variable_before_a_command_uses_it() -> None:
    """In reading order, across the blocks a reader runs; `$ID` used by the tour must come from a command."""
    assigned: set[str] = set()
    unset: list[str] = []
    for block in readme_blocks(README.read_text()):
        if block.skipped:
            continue
        for line in block.body.splitlines():
            code = re.sub(r"'[^']*'", "''", line.split(" #", 1)[0])  # single quotes do not expand
            unset += [f"${name} in: {line.strip()}" for name in USED.findall(code) if name not in assigned]
            assigned.update(ASSIGNED.findall(code))
    assert unset == []


def test_readme_marks_are_ones_the_run_understands() -> None:
    blocks = readme_blocks(README.read_text())
    marks = [b.mark for b in blocks if b.mark]
    assert all(mark == "background" or mark.startswith("skip (") for mark in marks), marks
    assert marks.count("background") == 1
    assert any("/api/v1/incidents/$ID/status" in b.body for b in blocks)


# ---- running them -------------------------------------------------------------------------------------


def _clean_environment() -> dict[str, str]:
    """The caller's environment without our settings, a virtualenv, or any `incident-hub` on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry) / "incident-hub").exists()
    )
    return env


def _throwaway_checkout(tmp: Path) -> Path:
    """The files `pip install -e .` needs, copied where no virtualenv or database exists yet."""
    checkout = tmp / "incident-hub"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(
        ROOT / "incident_hub", checkout / "incident_hub", ignore=shutil.ignore_patterns("__pycache__")
    )
    return checkout


def _run(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    # pip's complaints about index locations of this machine's configuration are not the README's.
    stderr = "\n".join(line for line in done.stderr.splitlines() if "WARNING: Location" not in line)
    output = f"--- script\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{stderr}"
    assert done.returncode == 0, f"exit {done.returncode}\n{output}"
    return done


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited {server.returncode}:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in 60 s:\n{log.read_text()}")


@pytest.mark.slow
def test_readme_commands_run_as_written_on_a_fresh_checkout(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    """The set-up, demo, serve and API tour blocks, in order: a fresh venv, a real server, every call 2xx."""
    checkout = _throwaway_checkout(tmp_path)
    env = _clean_environment()
    port = str(free_port())
    outputs: list[str] = []
    for block in readme_blocks(README.read_text()):
        if block.skipped:
            continue
        # The only liberty taken: a free port instead of 8080, which may be taken on this machine.
        body = block.body.replace(f"--port {README_PORT}", f"--port {port}")
        body = body.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")
        if block.mark == "background":
            *first, last = body.rstrip("\n").splitlines()
            _run("\n".join(first), checkout, env, timeout=120)
            log = tmp_path / "server.log"
            with log.open("wb") as out:
                servers.append(
                    subprocess.Popen(
                        ["bash", "-c", f"exec {last}"],
                        cwd=checkout,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            _wait_until_ready(f"http://127.0.0.1:{port}/readyz", servers[-1], log)
        else:
            outputs.append(_run(body, checkout, env, timeout=600).stdout)
    said = "\n".join(outputs)  # the demo (after the set-up commands), then the API tour
    assert (checkout / ".venv" / "bin" / "incident-hub").exists()
    assert "every event delivered once, signed" in said, said
    assert re.search(r"^incident INC-[0-9]{8}-[0-9]{3,}$", said, re.MULTILINE), said  # the seed's human id
    assert '"status":"ACKNOWLEDGED"' in said.replace(" ", ""), said
    assert "incident_hub_" in said  # the metrics answer, the tour's last call
    assert re.search(r"^database at revision \S+ \(head\)$", said, re.MULTILINE), said  # the CLI block
