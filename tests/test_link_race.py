"""The push that creates a vendor object and the vendor's webhook announcing it both record the link.
On PostgreSQL they can do so at the same moment; whichever commits second must take the other's row, not
fail (a failed push would wait out its lease and hold back every later change of the incident)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from incident_hub.commands import IncidentDraft
from incident_hub.connectors.base import ChangeKind, ExternalChange, PushResult
from incident_hub.hub import Hub
from incident_hub.mapping.document import default_for
from incident_hub.mapping.translate import to_vendor
from incident_hub.model import Incident, Severity
from incident_hub.store.tables import ExternalRefRow
from incident_hub.sync.push import ConnectorTarget
from incident_hub.sync.refs import insert_ref


def _incident(hub: Hub) -> Incident:
    draft = IncidentDraft(title="Checkout errors", severity=Severity.SEV2_HIGH)
    return hub.incidents.create(draft).incident


def _created_webhook(incident: Incident) -> ExternalChange:
    return ExternalChange(
        connector_id="jira",
        external_id="10001",
        external_key="OPS-1",
        kind=ChangeKind.CREATED,
        fields=to_vendor(default_for("jira"), incident),
        vendor_timestamp=datetime.now(UTC),
        actor="hub-bot",
        actor_is_self=True,
        hub_incident_id=str(incident.id),
    )


def _refs(hub: Hub) -> list[tuple[str, str, str]]:
    with hub.db.read() as session:
        rows = session.scalars(select(ExternalRefRow)).all()
        return [(r.incident_id, r.connector_id, r.external_id) for r in rows]


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as error:  # the failure this test is about
            results.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def test_push_records_the_link_a_webhook_is_recording_at_the_same_time(client: TestClient, hub: Hub) -> None:
    incident = _incident(hub)
    target = hub.dispatcher.targets["connector"]
    assert isinstance(target, ConnectorTarget)
    written = to_vendor(default_for("jira"), incident)
    with hub.db.write() as session:
        outcome = hub.inbox.applier.apply(session, _created_webhook(incident), default_for("jira"))
        assert outcome.result == "linked"
        # The push stores its result while the webhook's transaction is still open.
        thread, results = _in_thread(
            lambda: target._store(
                incident, "jira", PushResult(external_id="10001", external_key="OPS-1"), written
            )
        )
        thread.join(0.5)
    thread.join(10)
    assert not isinstance(results[0], Exception), results[0]
    assert _refs(hub) == [(str(incident.id), "jira", "10001")]


def test_webhook_links_the_object_a_push_is_recording_at_the_same_time(client: TestClient, hub: Hub) -> None:
    incident = _incident(hub)
    written = to_vendor(default_for("jira"), incident)

    def apply() -> str:
        with hub.db.write() as session:
            return hub.inbox.applier.apply(session, _created_webhook(incident), default_for("jira")).result

    with hub.db.write() as session:
        assert insert_ref(
            session,
            incident_id=str(incident.id),
            connector_id="jira",
            external_id="10001",
            external_key="OPS-1",
            url=None,
            written=written,
            last_vendor_timestamp=None,
        )
        thread, results = _in_thread(apply)
        thread.join(0.5)
    thread.join(10)
    assert results and results[0] in ("echo", "noop"), results
    assert _refs(hub) == [(str(incident.id), "jira", "10001")]
