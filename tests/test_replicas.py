"""Scale-out: three `incident-hub serve` processes on one PostgreSQL database.

Changes arrive at all three replicas at once (API calls spread round robin). Every event reaches the
subscriber exactly once and in order per incident, whichever replica claimed it; every incident is opened
exactly once in PagerDuty and in Jira, and ends in the status the hub holds; the vendors' webhooks (sent
to one replica) echo nothing back.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from incident_hub.events import SUBSCRIBER
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.jira import SERVICE_ACCOUNT_ID, jira_sandbox
from incident_hub.sandbox.pagerduty import HUB_EMAIL, HUB_USER_ID, SERVICE_ID, pagerduty_sandbox
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, InboxRow
from tests.conftest import _postgres_schema
from tests.support import Receiver, wait_until
from tests.test_crash_recovery import FAST_DISPATCH, HubProcess, admin_key, api_client

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

INCIDENTS = 100
MOVES = ["ACKNOWLEDGED", "INVESTIGATING", "RESOLVED", "CLOSED"]  # with the create: 500 changes
ENV = {
    **FAST_DISPATCH,
    "INCIDENT_HUB_INBOX_POLL_SECONDS": "0.1",
    "REPLICA_TEST_PD_TOKEN": "replica-pd-token",
    "REPLICA_TEST_PD_HOOK": "replica-pd-hook",
    "REPLICA_TEST_JIRA_TOKEN": "replica-jira-token",
    "REPLICA_TEST_JIRA_HOOK": "replica-jira-hook",
}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema()


def _connectors(pd: Sandbox, jira: Sandbox) -> list[dict[str, Any]]:
    return [
        {
            "id": "pagerduty",
            "kind": "pagerduty",
            "base_url": pd.url,
            "ca_bundle": str(pd.ca_bundle),
            "credentials": {"env": "REPLICA_TEST_PD_TOKEN"},
            "webhook_secret": {"env": "REPLICA_TEST_PD_HOOK"},
            "rate_limit_per_second": 100,
            "options": {"from_email": HUB_EMAIL, "service_id": SERVICE_ID, "hub_user_id": HUB_USER_ID},
        },
        {
            "id": "jira",
            "kind": "jira",
            "base_url": jira.url,
            "ca_bundle": str(jira.ca_bundle),
            "credentials": {"env": "REPLICA_TEST_JIRA_TOKEN"},
            "webhook_secret": {"env": "REPLICA_TEST_JIRA_HOOK"},
            "rate_limit_per_second": 100,
            "options": {
                "email": "hub@example.com",
                "project_key": "OPS",
                "hub_account_id": SERVICE_ACCOUNT_ID,
            },
        },
    ]


def test_three_replicas_deliver_every_change_once_in_order(postgres_url: str, tmp_path: Path) -> None:
    db = Database(postgres_url)
    receiver = Receiver().start()
    try:
        key = admin_key(db)
        replicas = [HubProcess(postgres_url, tmp_path / f"replica-{n}") for n in range(3)]
        for replica in replicas:
            replica.data_dir.mkdir()
        first = replicas[0]
        pd_app, pd_state = pagerduty_sandbox(
            ENV["REPLICA_TEST_PD_TOKEN"], ENV["REPLICA_TEST_PD_HOOK"], f"{first.url}/webhooks/pagerduty"
        )
        jira_app, jira_state = jira_sandbox(
            "hub@example.com",
            ENV["REPLICA_TEST_JIRA_TOKEN"],
            ENV["REPLICA_TEST_JIRA_HOOK"],
            f"{first.url}/webhooks/jira",
        )
        with ExitStack() as stack:
            pd = stack.enter_context(Sandbox(pd_app, pd_state, directory=tmp_path / "pagerduty"))
            jira = stack.enter_context(Sandbox(jira_app, jira_state, directory=tmp_path / "jira"))
            for replica in replicas:
                stack.enter_context(replica)
                replica.start(**ENV)
            clients = [stack.enter_context(api_client(replica, key)) for replica in replicas]
            for config in _connectors(pd, jira):
                clients[0].put(f"/api/v1/connectors/{config['id']}", json=config).raise_for_status()
            clients[0].post(
                "/api/v1/subscriptions", json={"url": receiver.url, "event_types": ["*"], "secret": "s" * 16}
            ).raise_for_status()

            # 100 creates, then four moves each, spread round robin over the replicas, 12 at a time.
            turn = itertools.cycle(clients)
            with ThreadPoolExecutor(12) as pool:
                created = list(
                    pool.map(
                        lambda args: args[0].post("/api/v1/incidents", json={"title": f"Replica {args[1]}"}),
                        [(next(turn), n) for n in range(INCIDENTS)],
                    )
                )
                ids = [response.json()["id"] for response in created]
                for move in MOVES:
                    moved = list(
                        pool.map(
                            lambda args: args[0].put(
                                f"/api/v1/incidents/{args[1]}/status", json={"status": move}
                            ),
                            [(next(turn), incident_id) for incident_id in ids],
                        )
                    )
                    assert all(r.status_code == 200 for r in moved), [
                        r.text for r in moved if r.status_code != 200
                    ]

            def drained() -> bool:
                with db.read() as session:
                    pending = session.scalar(select(func.count()).where(DeliveryRow.state == "pending"))
                    inbox = session.scalar(select(func.count()).where(InboxRow.state == "pending"))
                return pending == 0 and inbox == 0

            def backlog() -> str:
                with db.read() as session:
                    rows = session.execute(
                        select(
                            DeliveryRow.id,
                            DeliveryRow.target_id,
                            DeliveryRow.attempts,
                            DeliveryRow.next_attempt_at,
                            DeliveryRow.in_doubt_since,
                            DeliveryRow.last_error,
                        )
                        .where(DeliveryRow.state == "pending")
                        .limit(10)
                    ).all()
                    inbox = session.execute(
                        select(InboxRow.id, InboxRow.connector_id, InboxRow.error)
                        .where(InboxRow.state == "pending")
                        .limit(5)
                    ).all()
                    behind = ""
                    if rows:
                        key = session.scalar(
                            select(DeliveryRow.ordering_key).where(DeliveryRow.id == rows[0].id)
                        )
                        behind = str(
                            session.execute(
                                select(
                                    DeliveryRow.id,
                                    DeliveryRow.target_id,
                                    DeliveryRow.state,
                                    DeliveryRow.attempts,
                                    DeliveryRow.in_doubt_outcome,
                                    DeliveryRow.last_error,
                                ).where(DeliveryRow.ordering_key == key)
                            ).all()
                        )
                return (
                    f"pending deliveries {rows}; all of the first one's incident {behind}; "
                    f"pending inbox {inbox}; log: {first.log_tail()}"
                )

            wait_until(drained, timeout=120, describe=backlog)

            # The subscriber: every event once, in the order of its deliveries per incident.
            with db.read() as session:
                expected: dict[str, list[str]] = defaultdict(list)
                for event_id, incident_id in session.execute(
                    select(DeliveryRow.event_id, DeliveryRow.ordering_key)
                    .where(DeliveryRow.target_kind == SUBSCRIBER)
                    .order_by(DeliveryRow.id)
                ):
                    expected[incident_id].append(event_id)
                dead = session.scalar(select(func.count()).where(DeliveryRow.state == "dead"))
            assert dead == 0
            total = sum(len(v) for v in expected.values())
            assert total >= INCIDENTS * (1 + len(MOVES))
            got_ids = [r.json()["event_id"] for r in receiver.wait_for(total, timeout=60)]
            assert len(got_ids) == len(set(got_ids)) == total, "an event was lost or sent twice"
            incident_of = {event_id: incident_id for incident_id, ids in expected.items() for event_id in ids}
            received_order: dict[str, list[str]] = defaultdict(list)
            for event_id in got_ids:
                received_order[incident_of[event_id]].append(event_id)
            assert received_order == expected

            # The vendors: one object per incident, in the final state, nothing written back.
            assert len(pd_state.incidents) == INCIDENTS
            assert len({i.incident_key for i in pd_state.incidents.values()}) == INCIDENTS
            assert {i.status for i in pd_state.incidents.values()} == {"resolved"}
            assert len(jira_state.issues) == INCIDENTS
            assert {i.status.name for i in jira_state.issues.values()} == {"Done"}
            pd_creates = [
                e for e in pd_state.ledger.writes() if e.method == "POST" and e.path == "/incidents"
            ]
            jira_creates = [e for e in jira_state.ledger.writes() if e.path.endswith("/issue")]
            assert len(pd_creates) == len(jira_creates) == INCIDENTS
            # Every replica did part of the work.
            logs = [replica.log_path.read_text(errors="replace") for replica in replicas]
            assert all("delivered" in log for log in logs), "a replica claimed nothing"
            for client in clients:
                client.close()
    finally:
        receiver.stop()
        db.dispose()
