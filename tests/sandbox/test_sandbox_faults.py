"""The sandboxes' outage knob, and the vendor records the chaos tests read: ServiceNow's `sys_audit` and
Opsgenie's alert log."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from incident_hub.model import Severity
from incident_hub.sandbox.world import ServiceNowSide, World, start_sandboxes


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with ExitStack() as stack:
        world, _, _ = start_sandboxes(stack, "http://127.0.0.1:9", tmp_path, ("servicenow", "opsgenie"))
        yield world


def test_an_outage_answers_503_with_retry_after_until_it_ends(world: World) -> None:
    sandbox = world["opsgenie"].sandbox
    trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
    with httpx.Client(base_url=sandbox.url, verify=trust, timeout=5) as client:
        knobs = client.get("/_sandbox/knobs").json()
        client.put("/_sandbox/knobs", json={**knobs, "unavailable_seconds": 1.0, "retry_after_seconds": 4})
        down = client.get("/v2/alerts", headers={"Authorization": "GenieKey wrong"})
        assert (down.status_code, down.headers["Retry-After"]) == (503, "4")
        time.sleep(1.1)
        back = client.get("/v2/alerts", headers={"Authorization": "GenieKey wrong"})
    # Past the outage the request reaches the vendor API again (which refuses the made-up key).
    assert back.status_code in (401, 403, 422)
    first, *_ = sandbox.state.ledger.entries(direction="in")
    assert (first.status, first.note) == (503, "unavailable")


def test_status_paths_come_from_the_audit_and_the_alert_log(world: World) -> None:
    servicenow, opsgenie = world["servicenow"], world["opsgenie"]
    assert isinstance(servicenow, ServiceNowSide)
    record = servicenow.open("Disk full on db-1", Severity.SEV2_HIGH)
    servicenow.acknowledge(record)
    servicenow.resolve(record)
    alert = opsgenie.open("Disk full on db-1", Severity.SEV2_HIGH)
    opsgenie.acknowledge(alert)
    opsgenie.resolve(alert)

    assert servicenow.status_path(record) == ["open", "working", "resolved"]
    assert opsgenie.status_path(alert) == ["open", "working", "resolved"]
    fields = [row["fieldname"] for row in servicenow.state.audit(record)]
    assert fields.count("state") == 3 and "short_description" in fields
