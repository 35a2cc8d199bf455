"""A vendor object that fires again for a resolved hub incident (Opsgenie: a new alert with the closed
alert's alias) reopens that incident and takes over its link, within the connector's reopen window;
outside it, it opens a new incident; a vendor without a window never links a second object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.commands import IncidentDraft, StatusChange
from incident_hub.connectors.base import ChangeKind, ExternalChange
from incident_hub.hub import Hub
from incident_hub.mapping.document import default_for
from incident_hub.model import Incident, Status
from incident_hub.store.tables import ExternalRefRow, TimelineRow
from incident_hub.sync.apply import Outcome
from incident_hub.sync.refs import insert_ref


def _resolved_and_linked(hub: Hub) -> Incident:
    incident = hub.incidents.create(IncidentDraft(title="Disk full on db-2")).incident
    hub.incidents.change_status(str(incident.id), StatusChange(status=Status.RESOLVED, author="alice"))
    with hub.db.write() as session:
        insert_ref(
            session,
            incident_id=str(incident.id),
            connector_id="alerts",
            external_id="alert-1",
            external_key=None,
            url=None,
            written={"status": "resolved"},
            last_vendor_timestamp=datetime.now(UTC),
        )
    return hub.incidents.get(str(incident.id))


def _fires_again(hub: Hub, incident: Incident, window: float | None, later: timedelta) -> Outcome:
    change = ExternalChange(
        connector_id="alerts",
        external_id="alert-2",
        kind=ChangeKind.CREATED,
        fields={"status": "triggered", "title": "Disk full on db-2"},
        vendor_timestamp=datetime.now(UTC) + later,
        actor="monitoring",
        hub_incident_id=str(incident.id),
        reopen_window_seconds=window,
    )
    with hub.db.write() as session:
        return hub.inbox.applier.apply(session, change, default_for("pagerduty"))


def _links(hub: Hub) -> dict[str, str]:
    with hub.db.read() as session:
        return {r.external_id: r.incident_id for r in session.scalars(select(ExternalRefRow))}


def test_firing_again_within_the_window_reopens_the_incident_and_moves_its_link(
    client: TestClient, hub: Hub
) -> None:
    incident = _resolved_and_linked(hub)
    outcome = _fires_again(hub, incident, window=3600, later=timedelta(minutes=5))
    assert (outcome.result, outcome.incident_id) == ("reopened", str(incident.id))
    assert hub.incidents.get(str(incident.id)).status is Status.OPEN
    assert _links(hub) == {"alert-2": str(incident.id)}
    with hub.db.read() as session:
        said = session.scalars(
            select(TimelineRow.message).where(TimelineRow.origin_connector == "alerts")
        ).all()
    assert any("fired again" in message and "alert-1" in message for message in said)
    assert len(hub.incidents.search().incidents) == 1


def test_firing_again_after_the_window_opens_a_new_incident(client: TestClient, hub: Hub) -> None:
    incident = _resolved_and_linked(hub)
    outcome = _fires_again(hub, incident, window=60, later=timedelta(hours=2))
    assert outcome.result == "created" and outcome.incident_id != str(incident.id)
    assert hub.incidents.get(str(incident.id)).status is Status.RESOLVED
    assert _links(hub) == {"alert-1": str(incident.id), "alert-2": outcome.incident_id}


def test_a_second_object_without_a_window_is_not_linked(client: TestClient, hub: Hub) -> None:
    incident = _resolved_and_linked(hub)
    outcome = _fires_again(hub, incident, window=None, later=timedelta(minutes=5))
    assert outcome.result == "unlinked" and "alert-1" in (outcome.detail or "")
    assert _links(hub) == {"alert-1": str(incident.id)}
    assert len(hub.incidents.search().incidents) == 1


def test_a_snapshot_in_the_same_millisecond_as_the_last_webhook_is_not_stale(
    client: TestClient, hub: Hub
) -> None:
    """Webhooks may carry finer times than the vendor's REST objects (Opsgenie: nanoseconds and
    milliseconds): a snapshot of the same moment must apply, not be dropped as older."""
    incident = hub.incidents.create(IncidentDraft(title="Queue lag")).incident
    webhook_time = datetime(2026, 12, 2, 9, 57, 20, 445975, tzinfo=UTC)
    with hub.db.write() as session:
        insert_ref(
            session,
            incident_id=str(incident.id),
            connector_id="alerts",
            external_id="alert-1",
            external_key=None,
            url=None,
            written={"status": "triggered", "title": "Queue lag"},
            last_vendor_timestamp=webhook_time,
        )
    snapshot = ExternalChange(
        connector_id="alerts",
        external_id="alert-1",
        kind=ChangeKind.SNAPSHOT,
        fields={"status": "acknowledged", "title": "Queue lag"},
        vendor_timestamp=datetime(2026, 12, 2, 9, 57, 20, 445000, tzinfo=UTC),
    )
    with hub.db.write() as session:
        outcome = hub.inbox.applier.apply(session, snapshot, default_for("pagerduty"))
    assert outcome.result == "applied", outcome
    assert hub.incidents.get(str(incident.id)).status is Status.ACKNOWLEDGED
