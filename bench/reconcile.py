"""Benchmark: one full reconciliation sweep per connector over N linked incidents, against bare list pages.

For each database (SQLite in a temp file, PostgreSQL in a fresh schema dropped afterwards) it builds an
in-process hub (`Hub(settings)`, migrated, no server, no dispatcher), starts the four sandboxes over HTTPS
(`incident_hub.sandbox.world.connect`, webhooks off) and seeds, without counting it:

1. `--incidents` hub incidents, bulk-inserted into `incidents` (status OPEN);
2. one open vendor object per incident in each sandbox, written straight into the sandbox's state (no
   HTTP), carrying the hub id as the hub's own objects do (PagerDuty `incident_key`, Jira label,
   ServiceNow `correlation_id`, Opsgenie alias);
3. the links: the connector's own `list_open()` applied through `Applier.apply` (the `linked` path), so
   each link remembers exactly what the vendor holds;
4. drift: `--drift` of the objects changed by a person in the vendor's UI with webhooks off, of which
   `--closed-share` resolved/closed (the rest acknowledged).

Then, per connector, one full sweep through the real reconciler (`Reconciler.run(..., PassKind.FULL)`)
with a rate limit that does not throttle. Vendor calls are counted in the sandbox's ledger (every API
request it received during the sweep). Printed per connector: sweep time, vendor calls, the minimum the
page size allows (ceil(N / page)), their ratio, drift found and repaired, drift repaired per second,
objects examined per second, and what the default budget (`reconcile_rate_fraction` 0.2 of 10 calls/s)
would make of the same calls. The baseline replays the sweep's own list requests (same paths and query
strings, so the same pages) bare with httpx against the same sandbox: no parsing, no database.

    .venv/bin/python bench/reconcile.py                       # both databases, 10,000 incidents
    .venv/bin/python bench/reconcile.py --db sqlite --incidents 2000 --connectors jira,opsgenie
    .venv/bin/python bench/reconcile.py --closed-share 0      # drift that leaves every object open
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import ssl
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database  # noqa: E402

from incident_hub.connectors.base import ConnectorConfig  # noqa: E402
from incident_hub.hub import Hub  # noqa: E402
from incident_hub.sandbox.jira import SERVICE_ACCOUNT_ID  # noqa: E402
from incident_hub.sandbox.jira.issues import create_issue  # noqa: E402
from incident_hub.sandbox.opsgenie.model import Actor as OpsgenieActor  # noqa: E402
from incident_hub.sandbox.pagerduty import HUB_USER_ID, SERVICE_ID  # noqa: E402
from incident_hub.sandbox.pagerduty.account import PRIORITY_IDS  # noqa: E402
from incident_hub.sandbox.pagerduty.model import Actor as PagerDutyActor  # noqa: E402
from incident_hub.sandbox.world import JIRA_EMAIL, SERVICENOW_USER, VENDORS, Side, World, connect  # noqa: E402
from incident_hub.scheduler.reconciler import apply_change  # noqa: E402
from incident_hub.scheduler.runs import PassKind  # noqa: E402
from incident_hub.settings import Settings  # noqa: E402
from incident_hub.store.tables import IncidentRow  # noqa: E402

# The list request of each vendor (path of the ledger entry); any other request is a fetch.
LIST_PATHS = {
    "pagerduty": "/incidents",
    "jira": "/rest/api/3/search/jql",
    "servicenow": "/api/now/table/incident",
    "opsgenie": "/v2/alerts",
}
# Largest page each vendor's list API allows for what the connector asks (see the connectors' list_open).
MAX_PAGE = {"pagerduty": 100, "jira": 100, "servicenow": 10_000, "opsgenie": 100}
DEFAULT_RATE = 10.0 * 0.2  # reconcile_rate_fraction default of rate_limit_per_second default


# ---- seeding (not measured) -------------------------------------------------------------------------


def seed_hub(hub: Hub, n: int) -> list[str]:
    """N OPEN incidents, bulk-inserted."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    rows = [
        {
            "id": incident_id,
            "number": f"INC-BENCH-{i:06d}",
            "title": f"Bench incident {i}",
            "severity": "SEV3_MEDIUM",
            "status": "OPEN",
            "affected_services": [],
            "tags": [],
            "sla_breached": False,
            "version": 1,
            "detected_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i, incident_id in enumerate(ids)
    ]
    with hub.db.write() as session:
        for start in range(0, n, 1000):
            session.execute(insert(IncidentRow), rows[start : start + 1000])
    return ids


def seed_vendor(side: Side, hub_ids: list[str]) -> None:
    """One open object per hub incident, made as the hub makes them, straight in the sandbox's state."""
    state: Any = side.sandbox.state
    if side.name == "pagerduty":
        actor = PagerDutyActor("user", HUB_USER_ID)
        for n, hub_id in enumerate(hub_ids):
            state.create_incident(
                actor,
                "api",
                title=f"Bench incident {n}",
                service_id=SERVICE_ID,
                incident_key=f"incident-hub/{hub_id}",
                urgency="low",
                priority_id=PRIORITY_IDS["P3"],
            )
    elif side.name == "jira":
        user = state.users[SERVICE_ACCOUNT_ID]
        with state.lock:
            for n, hub_id in enumerate(hub_ids):
                fields = {
                    "project": {"key": "OPS"},
                    "issuetype": {"name": "Incident"},
                    "summary": f"Bench incident {n}",
                    "priority": {"name": "Medium"},
                    "labels": ["incident-hub", f"incident-hub-{hub_id}"],
                }
                create_issue(state, fields, user)
    elif side.name == "servicenow":
        for n, hub_id in enumerate(hub_ids):
            values = {
                "short_description": f"Bench incident {n}",
                "impact": "2",
                "urgency": "2",
                "correlation_id": hub_id,
                "correlation_display": "incident-hub",
            }
            state.insert_incident(SERVICENOW_USER, values)
    else:
        actor = OpsgenieActor("api", "incident-hub")
        for n, hub_id in enumerate(hub_ids):
            state.create_alert(actor, message=f"Bench incident {n}", alias=hub_id, priority="P3")


async def link(hub: Hub, connector_id: str) -> int:
    """Link every open vendor object to the hub incident it names, as a webhook about it would."""
    connector = hub.connectors.get(connector_id)
    mapping = connector.mapping()
    linked = 0
    async for change in connector.list_open():
        outcome = await asyncio.to_thread(apply_change, hub.db, hub.reconciler.applier, change, mapping)
        linked += outcome.result == "linked"
    return linked


def drift(
    side: Side, refs: list[str], share: float, closed_share: float, rng: random.Random
) -> dict[str, int]:
    """A person changes `share` of the objects in the vendor's UI (webhooks off): some resolve/close,
    the others acknowledge."""
    chosen = rng.sample(refs, round(len(refs) * share))
    closed = round(len(chosen) * closed_share)
    for ref in chosen[:closed]:
        side.resolve(ref)
    for ref in chosen[closed:]:
        side.acknowledge(ref)
    return {"closed": closed, "acknowledged": len(chosen) - closed}


# ---- measured -------------------------------------------------------------------------------------------


def vendor_calls(side: Side) -> tuple[int, int, list[tuple[str, str]]]:
    """(list pages, other calls, the list requests as (path, query)) the sandbox received since cleared."""
    entries = [e for e in side.ledger.entries(direction="in") if not e.path.startswith("/_sandbox")]
    pages = [(e.path, e.query) for e in entries if e.path == LIST_PATHS[side.name]]
    return len(pages), len(entries) - len(pages), pages


def bare_pages(side: Side, requests: list[tuple[str, str]]) -> float:
    """The same list requests, bare: one httpx client, no parsing. Seconds."""
    auth = {
        "pagerduty": {"Authorization": f"Token token={os.environ['INCIDENT_HUB_SANDBOX_PD']}"},
        "opsgenie": {"Authorization": f"GenieKey {os.environ['INCIDENT_HUB_SANDBOX_OG']}"},
    }.get(side.name, {})
    basic = {
        "jira": (JIRA_EMAIL, os.environ["INCIDENT_HUB_SANDBOX_JIRA"]),
        "servicenow": (SERVICENOW_USER, os.environ["INCIDENT_HUB_SANDBOX_SN"]),
    }.get(side.name)
    trust = ssl.create_default_context(cafile=str(side.sandbox.ca_bundle))
    headers = {**auth, "Accept": "application/json"}
    with httpx.Client(
        base_url=side.sandbox.url, verify=trust, headers=headers, auth=basic, timeout=120
    ) as client:
        started = time.perf_counter()
        for path, query in requests:
            response = client.get(f"{path}?{query}" if query else path)
            response.raise_for_status()
            response.read()
        return time.perf_counter() - started


def run(kind: str, url: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    settings = Settings.model_validate(
        {"database_url": url, "data_dir": workdir, "reconcile_enabled": False, "log_json": False}
    )
    hub = Hub(settings)
    hub.migrate()
    results: list[dict[str, Any]] = []
    rng = random.Random(args.seed)
    with ExitStack() as stack:
        world: World = connect(
            stack, hub, "http://127.0.0.1:9", workdir / "sandboxes", tuple(args.connectors)
        )
        for side in world.sides.values():
            side.sandbox.state.knobs.webhooks_enabled = False
            config = hub.connectors.state(side.name).config
            options = {**config.options}
            if side.name == "servicenow":
                options["page_size"] = args.servicenow_page
            hub.connectors.upsert(
                ConnectorConfig.model_validate(
                    {**config.model_dump(), "options": options, "rate_limit_per_second": 1_000_000}
                )
            )
        started = time.perf_counter()
        hub_ids = seed_hub(hub, args.incidents)
        seeded_hub = time.perf_counter() - started
        print(f"  [{kind}] hub: {args.incidents} incidents inserted in {seeded_hub:.1f} s", flush=True)
        for name in args.connectors:
            side = world[name]
            started = time.perf_counter()
            seed_vendor(side, hub_ids)
            seeded = time.perf_counter() - started
            started = time.perf_counter()
            linked = asyncio.run(link(hub, name))
            linking = time.perf_counter() - started
            changed = drift(side, side.refs(), args.drift, args.closed_share, rng)
            print(
                f"  [{kind}] {name}: {args.incidents} objects seeded in {seeded:.1f} s, {linked} linked in "
                f"{linking:.1f} s, drift {changed}",
                flush=True,
            )
            side.ledger.clear()

            started = time.perf_counter()
            record = asyncio.run(hub.reconciler.run(name, PassKind.FULL, trigger="bench"))
            elapsed = time.perf_counter() - started
            pages, fetches, requests = vendor_calls(side)
            page = args.servicenow_page if name == "servicenow" else MAX_PAGE[name]
            results.append(
                {
                    "db": kind,
                    "connector": name,
                    "state": record.state.value,
                    "seconds": elapsed,
                    "pages": pages,
                    "fetches": fetches,
                    "calls": pages + fetches,
                    "minimum": math.ceil(args.incidents / page),
                    "page": page,
                    "closed": changed["closed"],
                    "examined": record.examined,
                    "found": record.drift_found,
                    "repaired": record.drift_repaired,
                    "baseline": bare_pages(side, requests),
                    "baseline_pages": len(requests),
                }
            )
            print(f"  [{kind}] {name}: swept in {elapsed:.1f} s ({record.state.value})", flush=True)
    hub.db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--connectors", type=lambda v: v.split(","), default=list(VENDORS))
    parser.add_argument("--drift", type=float, default=0.01, help="share of objects changed without webhooks")
    parser.add_argument("--closed-share", type=float, default=0.2, help="share of the drift that closes")
    parser.add_argument("--servicenow-page", type=int, default=1000, help="sysparm_limit of the sweep")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC   machine: {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"incidents: {args.incidents} per connector, drift {args.drift:.1%} "
        f"({args.closed_share:.0%} of it closed in the vendor), rate limit not throttling"
    )
    results: list[dict[str, Any]] = []
    for kind in kinds:
        with database(kind, args.postgres_url) as url, tempfile.TemporaryDirectory() as tmp:
            results += run(kind, url, args, Path(tmp))
    print(
        "\n| Database | Connector | State | Sweep (s) | Vendor calls (pages + fetches) | Minimum (page) | "
        "Calls ÷ minimum | Drift found / repaired | Repaired/s | Examined/s | At default budget (s) | "
        "Baseline: bare pages (s) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {'SQLite' if r['db'] == 'sqlite' else 'PostgreSQL'} | {r['connector']} | {r['state']} | "
            f"{r['seconds']:.1f} | {r['calls']} ({r['pages']} + {r['fetches']}) | "
            f"{r['minimum']} ({r['page']}) | "
            f"{r['calls'] / r['minimum']:.2f} | {r['found']} / {r['repaired']} | "
            f"{r['repaired'] / r['seconds']:.1f} | {r['examined'] / r['seconds']:.0f} | "
            f"{r['calls'] / DEFAULT_RATE:.0f} | {r['baseline']:.1f} ({r['baseline_pages']} pages) |"
        )


if __name__ == "__main__":
    main()
