"""Component health signals: stuck/stopped opens one incident per component, repeats cost one read,
stopped raises a stuck incident, active resolves it with a note."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from incident_hub.hub import Hub
from incident_hub.signals import Signal, SignalAction, Signals

STUCK = {"host": "db-2", "device": "nvme0", "component": "replication", "status": "stuck"}


@contextmanager
def statements(hub: Hub) -> Iterator[list[str]]:
    """The SQL statements this thread runs on the hub's engine inside the block (the hub's background
    workers share the engine and are left out)."""
    seen: list[str] = []
    me = threading.get_ident()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() != me:
            return
        verb = statement.split()[0].upper()
        if verb not in ("BEGIN", "COMMIT", "ROLLBACK"):  # transaction control (SQLite's explicit BEGIN)
            seen.append(verb)

    event.listen(hub.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", count)


def test_stuck_opens_one_incident_and_repeats_cost_one_read(api: TestClient, hub: Hub) -> None:
    opened = api.post("/api/v1/signals", json=STUCK | {"message": "replica lag 900 s"})
    assert opened.status_code == 201
    body = opened.json()
    assert (body["action"], body["severity"]) == ("opened", "SEV2_HIGH")
    incident = api.get(f"/api/v1/incidents/{body['incident_id']}").json()
    # The answer names the incident as incidents and events do: human id, uuid beside it.
    assert (body["incident_id"], body["id"]) == (incident["incident_id"], incident["id"])
    assert body["incident_id"].startswith("INC-")
    assert incident["title"] == "replication stuck on db-2/nvme0"
    assert incident["dedup_key"] == "signal:db-2/nvme0/replication"
    assert incident["source"] == "signals"

    with statements(hub) as seen:
        again = Signals(hub.incidents).process(Signal.model_validate(STUCK))
    assert again.action is SignalAction.ALREADY_OPEN and again.incident_id == body["incident_id"]
    # The repeat is the one look-up for the open incident.
    assert seen == ["SELECT"], seen
    assert api.post("/api/v1/signals", json=STUCK).json()["action"] == "already_open"
    assert len(api.get("/api/v1/incidents").json()["items"]) == 1


def test_stopped_is_critical_and_raises_a_stuck_incident(api: TestClient) -> None:
    stopped = api.post("/api/v1/signals", json=STUCK | {"component": "fan", "status": "stopped"}).json()
    assert (stopped["action"], stopped["severity"]) == ("opened", "SEV1_CRITICAL")
    stuck = api.post("/api/v1/signals", json=STUCK).json()
    raised = api.post("/api/v1/signals", json=STUCK | {"status": "stopped"}).json()
    assert (raised["action"], raised["incident_id"], raised["severity"]) == (
        "raised",
        stuck["incident_id"],
        "SEV1_CRITICAL",
    )
    # Stuck again after stopped does not lower it.
    assert api.post("/api/v1/signals", json=STUCK).json()["severity"] == "SEV1_CRITICAL"


def test_active_resolves_the_open_incident_with_a_note_and_a_new_fault_opens_a_new_one(
    api: TestClient,
) -> None:
    first = api.post("/api/v1/signals", json=STUCK).json()
    resolved = api.post(
        "/api/v1/signals", json=STUCK | {"status": "active", "observed_at": "2026-12-02T08:30:00Z"}
    ).json()
    assert (resolved["action"], resolved["incident_id"]) == ("resolved", first["incident_id"])
    incident = api.get(f"/api/v1/incidents/{first['incident_id']}").json()
    assert incident["status"] == "RESOLVED"
    assert incident["resolution_notes"].startswith("Auto-resolved: replication on db-2/nvme0 active")
    assert api.post("/api/v1/signals", json=STUCK | {"status": "active"}).json()["action"] == "nothing_open"
    again = api.post("/api/v1/signals", json=STUCK).json()
    assert again["action"] == "opened" and again["incident_id"] != first["incident_id"]


def test_bad_signals_are_refused_with_the_field_named(api: TestClient) -> None:
    response = api.post("/api/v1/signals", json=STUCK | {"status": "melting"})
    assert response.status_code == 422
    assert "status" in response.text
    assert api.post("/api/v1/signals", json=STUCK | {"host": "a/b"}).status_code == 422


CAPTURE = {
    "host_name": "capture-01",
    "device_id": "cam-07",
    "device_name": "Studio B camera",
    "capture_folder": "/srv/capture/studio-b",
    "video_device": "/dev/video2",
    "incident_type": "ffmpeg_failure",
    "component": "ffmpeg",
    "status": "stopped",
    "message": "ffmpeg exited with code 1",
}


def test_seed_device_fields_reach_the_incident_and_its_filters(api: TestClient) -> None:
    opened = api.post("/api/v1/signals", json=CAPTURE)
    assert opened.status_code == 201, opened.text
    incident = api.get(f"/api/v1/incidents/{opened.json()['incident_id']}").json()
    assert incident["title"] == "ffmpeg_failure: ffmpeg stopped on capture-01/cam-07 (/srv/capture/studio-b)"
    assert incident["description"] == "ffmpeg exited with code 1"
    assert incident["dedup_key"] == "signal:capture-01/cam-07/ffmpeg//srv/capture/studio-b"
    assert incident["tags"] == [
        "host:capture-01",
        "device:cam-07",
        "component:ffmpeg",
        "capture_folder:/srv/capture/studio-b",
        "device_name:Studio B camera",
        "video_device:/dev/video2",
        "incident_type:ffmpeg_failure",
    ]
    api.post("/api/v1/signals", json=STUCK)
    for query in (
        {"device": "cam-07"},
        {"host": "capture-01", "component": "ffmpeg"},
        {"tag": "incident_type:ffmpeg_failure"},
        {"tag": "capture_folder:/srv/capture/studio-b"},
    ):
        listed = api.get("/api/v1/incidents", params=query).json()["items"]
        assert [item["id"] for item in listed] == [incident["id"]], query


def test_one_open_incident_per_device_capture_folder_and_component(api: TestClient) -> None:
    studio_b = api.post("/api/v1/signals", json=CAPTURE).json()
    studio_c = api.post("/api/v1/signals", json=CAPTURE | {"capture_folder": "/srv/capture/studio-c"}).json()
    assert studio_b["action"] == studio_c["action"] == "opened"
    assert studio_b["incident_id"] != studio_c["incident_id"]
    # The seed's names and the hub's own name the same device.
    same = CAPTURE | {"status": "stuck"}
    del same["host_name"], same["device_id"]
    same |= {"host": "capture-01", "device": "cam-07"}
    again = api.post("/api/v1/signals", json=same).json()
    assert (again["action"], again["incident_id"]) == ("already_open", studio_b["incident_id"])
    resolved = api.post("/api/v1/signals", json=CAPTURE | {"status": "active"}).json()
    assert (resolved["action"], resolved["incident_id"]) == ("resolved", studio_b["incident_id"])
    assert api.get(f"/api/v1/incidents/{studio_c['incident_id']}").json()["status"] == "OPEN"
    # Without a capture folder the component has its own incident, as before.
    plain = {k: v for k, v in CAPTURE.items() if k != "capture_folder"}
    assert api.post("/api/v1/signals", json=plain).json()["action"] == "opened"


def test_a_misspelt_or_empty_field_is_refused_and_long_names_still_open_one_incident(api: TestClient) -> None:
    misspelt = api.post("/api/v1/signals", json=CAPTURE | {"capture_foldr": "/srv/capture/studio-d"})
    assert misspelt.status_code == 422 and "capture_foldr" in misspelt.text
    assert api.post("/api/v1/signals", json=CAPTURE | {"capture_folder": ""}).status_code == 422
    # Names at their limits make a key longer than the column: stored as a digest, still one per subject.
    long = STUCK | {
        "host": "h" * 100,
        "device": "d" * 100,
        "component": "c" * 100,
        "capture_folder": "/" + "f" * 499,
    }
    first = api.post("/api/v1/signals", json=long)
    assert first.status_code == 201, first.text
    assert (
        api.get(f"/api/v1/incidents/{first.json()['incident_id']}")
        .json()["dedup_key"]
        .startswith("signal:sha256:")
    )
    assert api.post("/api/v1/signals", json=long).json()["action"] == "already_open"
