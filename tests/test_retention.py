"""Old audit rows are pruned by their retention setting; what still matters is never pruned."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from incident_hub.clock import utcnow
from incident_hub.hub import Hub
from incident_hub.store.retention import Retention, RetentionPolicy
from incident_hub.store.tables import DeliveryAttemptRow, DeliveryRow, EventRow, InboxRow, WebhookRejectionRow


def _count(hub: Hub, table: type) -> int:
    with hub.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_rows_past_their_retention_are_pruned_and_the_rest_kept(api: TestClient, hub: Hub) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    incident = api.post("/api/v1/incidents", json={"title": "retention"}).json()
    with hub.db.write() as session:
        event_id = session.scalar(select(EventRow.id).where(EventRow.incident_id == incident["id"]).limit(1))
        for when in (old, recent):
            session.execute(
                insert(WebhookRejectionRow).values(
                    connector_id="x",
                    received_at=when,
                    status=401,
                    reason="r",
                    body_sha256="0",
                    body_excerpt="",
                )
            )
        for n, (when, state) in enumerate(
            [(old, "applied"), (recent, "applied"), (old, "pending"), (old, "failed")]
        ):
            session.execute(
                insert(InboxRow).values(
                    connector_id="x",
                    dedup_key=f"k{n}",
                    received_at=when,
                    headers={},
                    body="{}",
                    state=state,
                    attempts=0,
                )
            )
        ids = []
        for when, state in [
            (old, "delivered"),
            (old, "cancelled"),
            (old, "dead"),
            (old, "pending"),
            (recent, "delivered"),
        ]:
            ids.append(
                session.scalar(
                    insert(DeliveryRow)
                    .values(
                        event_id=event_id,
                        target_kind="subscriber",
                        target_id="s",
                        ordering_key="o",
                        state=state,
                        attempts=1,
                        next_attempt_at=when,
                        created_at=when,
                    )
                    .returning(DeliveryRow.id)
                )
            )
        session.execute(
            insert(DeliveryAttemptRow).values(delivery_id=ids[0], attempt=1, started_at=old, duration_ms=1.0)
        )
    before = {"rejections": _count(hub, WebhookRejectionRow), "inbox": _count(hub, InboxRow)}

    pruned = Retention(hub.db, RetentionPolicy(rejections_days=30, inbox_days=14, deliveries_days=30)).prune(
        now
    )

    assert (pruned.rejections, pruned.inbox, pruned.deliveries) == (1, 1, 2)
    assert _count(hub, WebhookRejectionRow) == before["rejections"] - 1
    assert _count(hub, InboxRow) == before["inbox"] - 1
    with hub.db.read() as session:
        left = set(session.scalars(select(DeliveryRow.state).where(DeliveryRow.id.in_(ids))))
        assert left == {"dead", "pending", "delivered"}  # old dead and pending stay; the recent delivered too
        assert (
            session.scalar(
                select(func.count())
                .select_from(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.delivery_id == ids[0])
            )
            == 0
        )
    assert api.get(f"/api/v1/incidents/{incident['id']}").status_code == 200


def test_zero_days_keeps_rows_forever(hub: Hub, api: TestClient) -> None:
    with hub.db.write() as session:
        session.execute(
            insert(WebhookRejectionRow).values(
                connector_id="x",
                received_at=utcnow() - timedelta(days=3650),
                status=401,
                reason="r",
                body_sha256="0",
                body_excerpt="",
            )
        )
    policy = RetentionPolicy(rejections_days=0, inbox_days=0, deliveries_days=0)
    assert Retention(hub.db, policy).prune().total == 0
    assert _count(hub, WebhookRejectionRow) == 1
