"""`incident-hub serve --workers N`: refused on SQLite; on PostgreSQL every worker answers `/metrics` with
the same complete counts, and one worker runs the reconciler."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from incident_hub.metrics import MULTIPROCESS_ENV, multiprocess_metrics
from incident_hub.store.db import Database
from tests.admin_support import csrf_token
from tests.conftest import _postgres_schema
from tests.test_crash_recovery import SERVE, HubProcess, admin_key

CREATES = 20
SCRAPES = 12


def _serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_HUB_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", SERVE, "serve", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_several_workers_on_sqlite_in_one_line(tmp_path: Path) -> None:
    result = _serve(["--workers", "2", "--port", "1"], {"INCIDENT_HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--workers above 1 needs PostgreSQL" in lines[0]
    assert "INCIDENT_HUB_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    # Refused before anything was touched: not even the SQLite file was made.
    assert not (tmp_path / "incident-hub.db").exists()


def test_serve_refuses_several_workers_on_an_explicit_sqlite_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    result = _serve(["--workers", "3"], {"INCIDENT_HUB_DATABASE_URL": url})
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "SQLite allows one writer process" in result.stderr


def test_a_metrics_directory_named_by_the_operator_starts_without_a_previous_runs_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    (tmp_path / "counter_999999.db").write_bytes(b"a previous run's counts")
    with multiprocess_metrics() as directory:
        assert directory == tmp_path
        assert list(tmp_path.glob("*.db")) == []
    assert tmp_path.is_dir()  # the operator's directory is kept


# ---- several workers on PostgreSQL ------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema()


def _sample(metrics: str, name: str, labels: str) -> float:
    """The value of one sample (`name{labels}`), 0 when the series is absent."""
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _scrape(url: str) -> str:
    # A new connection each time, so the workers take turns answering.
    answer = httpx.get(f"{url}/metrics", timeout=10.0)
    assert answer.status_code == 200
    return answer.text


def _admin_pages_on_any_worker(url: str, key: str) -> None:
    """Log in and use the admin UI with a new connection per request: whichever worker answers."""
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=fresh, timeout=10.0) as browser:
        for _ in range(6):
            form = browser.get("/admin/login")
            answer = browser.post("/admin/login", data={"api_key": key, "csrf_token": csrf_token(form.text)})
            assert answer.status_code == 303, answer.text
            for _ in range(3):
                page = browser.get("/admin/incidents")
                assert page.status_code == 200 and "Log out" in page.text
            token = csrf_token(page.text)
            assert browser.post("/admin/logout", data={"csrf_token": token}).status_code == 303
            assert browser.get("/admin/incidents").status_code == 303


@pytest.mark.slow
@pytest.mark.postgres
def test_every_worker_reports_the_same_metrics_and_serves_any_admin_session(
    postgres_url: str, tmp_path: Path
) -> None:
    key = admin_key(Database(postgres_url))
    with HubProcess(postgres_url, tmp_path, workers=2) as hub:
        hub.start(INCIDENT_HUB_RECONCILE_INTERVAL_SECONDS="0.2", INCIDENT_HUB_DISPATCH_POLL_SECONDS="0.1")
        for index in range(CREATES):
            answer = httpx.post(
                f"{hub.url}/api/v1/incidents",
                json={"title": f"worker test {index}", "severity": "SEV3_MEDIUM"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10.0,
            )
            assert answer.status_code == 201, answer.text
        counted = set()
        for _ in range(SCRAPES):
            metrics = _scrape(hub.url)
            created = _sample(
                metrics,
                "incident_hub_http_requests_total",
                'method="POST",route="/api/v1/incidents",status="201"',
            )
            events = _sample(metrics, "incident_hub_events_total", 'type="incident_created"')
            counted.add((created, events))
        assert counted == {(CREATES, CREATES)}
        _admin_pages_on_any_worker(hub.url, key)
        # Both workers are up and holding requests: one of them, and only one, took the reconciler.
        time.sleep(1.0)
        assert hub.process is not None and hub.process.poll() is None
        # Read before the stop: at shutdown the lock is let go, and the other worker may take it.
        log = hub.log_path.read_text(errors="replace")
        assert log.count("this replica now runs the reconciler") == 1, hub.log_tail()
