"""Nobody can fill the rejections table: refusals are stored up to a bound per source and connector id,
then counted, and the next one stored says how many were not."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incident_hub.hub import Hub
from incident_hub.store.tables import WebhookRejectionRow
from incident_hub.sync.rejections import RejectionLog


def _stored(hub: Hub) -> int:
    with hub.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookRejectionRow)) or 0)


def test_a_flood_of_unknown_connector_ids_stores_a_bounded_number_of_rows(
    client: TestClient, hub: Hub
) -> None:
    attacker = TestClient(client.app, client=("203.0.113.9", 5000))
    answers = [attacker.post(f"/webhooks/nonexistent-{n}", content=b"{}").status_code for n in range(200)]

    assert set(answers) == {404}  # every caller is still told why
    assert _stored(hub) == 10
    # Another source is recorded on its own.
    other = TestClient(client.app, client=("203.0.113.10", 5000))
    assert other.post("/webhooks/nonexistent", content=b"{}").status_code == 404
    assert _stored(hub) == 11


def test_the_next_stored_rejection_says_how_many_were_counted(hub: Hub, client: TestClient) -> None:
    now = [0.0]
    log = RejectionLog(hub.db, per_window=2, window_seconds=60, clock=lambda: now[0])
    kept = [log.record("jira", True, 401, "forged", b"{}", "198.51.100.1") for _ in range(7)]
    assert kept == [True, True, False, False, False, False, False]
    now[0] = 61.0
    assert log.record("jira", True, 401, "forged", b"{}", "198.51.100.1")
    with hub.db.read() as session:
        reasons = list(session.scalars(select(WebhookRejectionRow.reason).order_by(WebhookRejectionRow.id)))
    assert reasons == ["forged", "forged", "forged (and 5 more like it from this source, not stored)"]
