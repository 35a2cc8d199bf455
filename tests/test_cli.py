"""The operator's command line, run in-process on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from incident_hub import __version__
from incident_hub.commands import IncidentDraft, SubscriptionDraft
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.store import migrate
from tests.cli_support import Cli, arranged, cli
from tests.support import Answer, Receiver

__all__ = ["arranged", "cli"]  # fixtures


def _pagerduty(base_url: str = "https://pagerduty.invalid", **options: str) -> ConnectorConfig:
    return ConnectorConfig.model_validate(
        {
            "id": "pagerduty",
            "kind": "pagerduty",
            "base_url": base_url,
            "options": {"from_email": "hub@example.com", "service_id": "PSERVICE", **options},
        }
    )


def _dead_deliveries(hub: Hub, receiver: Receiver, count: int) -> list[int]:
    receiver.default = Answer(400)  # refused for good: dead at the first attempt
    hub.subscriptions.create(
        SubscriptionDraft.model_validate(
            {"url": receiver.url, "event_types": ["incident_created"], "secret": "s3cr3t-value"}
        )
    )
    for n in range(count):
        hub.incidents.create(IncidentDraft(title=f"Broken subscriber {n}"))
    asyncio.run(hub.dispatcher.drain())
    return [d.id for d in hub.outbox.search(state="dead")]


def test_version_prints_the_package_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"incident-hub {__version__}"


def test_db_current_says_when_the_schema_is_behind_and_when_it_is_at_head(cli: Cli) -> None:
    behind = cli("db", "current")
    assert behind.exit_code == 1
    assert "run `incident-hub db upgrade`" in behind.stdout

    assert cli("db", "upgrade").exit_code == 0
    current = cli("db", "current")
    assert current.exit_code == 0, current.output
    assert current.stdout.strip().endswith("(head)")


def test_apikey_list_shows_every_key_but_never_the_key_itself(cli: Cli) -> None:
    created = cli("apikey", "create", "--name", "ops-bot", "--scope", "write")
    key = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("key:"))
    key_id = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("id:"))

    listed = cli("apikey", "list")
    assert listed.exit_code == 0
    assert key_id in listed.stdout and "ops-bot" in listed.stdout and "write" in listed.stdout
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout

    assert cli("apikey", "revoke", key_id).exit_code == 0
    (shown,) = json.loads(cli("apikey", "list", "--json").stdout)
    assert shown["id"] == key_id and shown["revoked_at"] is not None
    assert "key_hash" not in shown and key not in json.dumps(shown)


def test_connectors_list_shows_what_is_configured(cli: Cli, arranged: Hub) -> None:
    empty = cli("connectors", "list")
    assert empty.exit_code == 0 and "no connectors configured" in empty.stdout

    arranged.connectors.upsert(_pagerduty())
    table = cli("connectors", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "SOURCE", "ENABLED", "PAUSED", "BASE", "URL"]
    assert table[1].split() == ["pagerduty", "pagerduty", "api", "yes", "no", "https://pagerduty.invalid"]
    (listed,) = json.loads(cli("connectors", "list", "--json").stdout)
    assert (listed["id"], listed["enabled"], listed["paused_until"]) == ("pagerduty", True, None)


def test_dead_deliveries_are_listed_replayed_and_discarded(
    cli: Cli, arranged: Hub, receiver: Receiver
) -> None:
    first, second = _dead_deliveries(arranged, receiver, 2)

    listed = cli("deliveries", "list", "--state", "dead")
    assert listed.exit_code == 0
    rows = listed.stdout.splitlines()[1:]
    assert [int(r.split()[0]) for r in rows] == [first, second]
    assert all("HTTP 400" in r or "400" in r for r in rows)

    receiver.default = Answer(204)
    replayed = cli("deliveries", "replay", str(first), "--send")
    assert replayed.exit_code == 0, replayed.output
    assert f"delivery {first}: delivered" in replayed.stdout
    assert len(receiver.requests) == 3  # two refused, then the replay

    discarded = cli("deliveries", "discard", str(second))
    assert discarded.exit_code == 0
    assert arranged.outbox.get(second).state == "cancelled"
    assert json.loads(cli("deliveries", "list", "--state", "dead", "--json").stdout) == []
    assert [e.action for e in arranged.audit.list()][:2] == ["delivery.discard", "delivery.replay"]


def test_replay_without_ids_asks_first_or_needs_all(cli: Cli, arranged: Hub, receiver: Receiver) -> None:
    dead = _dead_deliveries(arranged, receiver, 2)

    declined = cli("deliveries", "replay", input="n\n")
    assert declined.exit_code == 1
    assert "Replay all 2 dead deliveries?" in declined.stdout
    assert [d.id for d in arranged.outbox.search(state="dead")] == dead

    accepted = cli("replay", input="y\n")  # the older top-level spelling asks too
    assert accepted.exit_code == 0
    assert arranged.outbox.search(state="dead") == []

    receiver.default = Answer(400)
    asyncio.run(arranged.dispatcher.drain())
    assert len(arranged.outbox.search(state="dead")) == 2
    unasked = cli("deliveries", "replay", "--all")
    assert unasked.exit_code == 0 and "?" not in unasked.stdout
    assert arranged.outbox.search(state="dead") == []


def test_replay_of_a_delivery_that_is_not_dead_is_one_line(
    cli: Cli, arranged: Hub, receiver: Receiver
) -> None:
    (dead,) = _dead_deliveries(arranged, receiver, 1)
    assert cli("deliveries", "discard", str(dead)).exit_code == 0
    again = cli("deliveries", "replay", str(dead))
    assert again.exit_code == 1
    assert again.stderr == f"incident-hub: delivery {dead} is cancelled; only dead deliveries are replayed\n"


def test_mapping_export_validate_import_round_trip(cli: Cli, arranged: Hub, tmp_path: Path) -> None:
    arranged.connectors.upsert(_pagerduty())
    file = tmp_path / "pagerduty.yaml"
    exported = cli("mappings", "export", "pagerduty", str(file))
    assert exported.exit_code == 0, exported.output
    assert file.read_text() == arranged.mappings.current("pagerduty").yaml

    document = yaml.safe_load(file.read_text())
    document["status"]["to_vendor"]["MONITORING"] = "acknowledged"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    valid = cli("mappings", "validate", "pagerduty", str(file))
    assert valid.exit_code == 0, valid.output
    assert "valid mapping for pagerduty" in valid.stdout

    imported = cli("mappings", "import", "pagerduty", str(file), "--comment", "monitoring stays acked")
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.strip() == "pagerduty mapping version 2 stored"
    stored = arranged.mappings.get("pagerduty", 2)
    assert (stored.yaml, stored.comment) == (file.read_text(), "monitoring stays acked")
    assert cli("mappings", "export", "pagerduty").stdout == file.read_text()


def test_an_invalid_mapping_is_listed_and_not_stored(cli: Cli, arranged: Hub, tmp_path: Path) -> None:
    arranged.connectors.upsert(_pagerduty())
    document = yaml.safe_load(arranged.mappings.current("pagerduty").yaml)
    del document["status"]["to_vendor"]["OPEN"]
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(document))

    invalid = cli("mappings", "validate", "pagerduty", str(file))
    assert invalid.exit_code == 1
    assert "$.status.to_vendor" in invalid.stdout and "OPEN" in invalid.stdout

    refused = cli("mappings", "import", "pagerduty", str(file))
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == f"incident-hub: {file}: not stored: 1 problem(s)"
    assert [v.version for v in arranged.mappings.versions("pagerduty")] == [1]


def test_reconcile_now_with_nothing_enabled_says_so(cli: Cli) -> None:
    result = cli("reconcile", "now")
    assert result.exit_code == 0
    assert result.stdout.strip() == "no connectors enabled: nothing to reconcile"


def test_database_schema_is_upgraded_to_head_by_every_command(cli: Cli, database_url: str) -> None:
    from incident_hub.store.db import Database

    assert cli("deliveries", "list").exit_code == 0
    db = Database(database_url)
    try:
        assert migrate.is_current(db)
    finally:
        db.dispose()
