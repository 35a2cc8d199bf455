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
   `--closed-share` resolved/closed (the rest acknowledged), each on an incident no earlier vendor's drift
   changed (the vendors link the same incidents).

Then, per connector, one full sweep through the real reconciler (`Reconciler.run(..., PassKind.FULL)`)
with a rate limit that does not throttle. Vendor calls are counted in the sandbox's ledger (every API
request it received during the sweep). Printed per connector: sweep time, vendor calls, the minimum the
page size allows (ceil(N / page)), their ratio, drift found and repaired, drift repaired per second,
objects examined per second, and what the default budget (`reconcile_rate_fraction` 0.2 of 10 calls/s)
would make of the same calls. The baseline replays the sweep's own list requests (same paths and query
strings, so the same pages) bare with httpx against the same sandbox: no parsing, no database.

After each sweep every drifted object is compared with the incident it is linked to (open / working /
resolved): the script exits 1 and prints the objects the hub does not agree with if any drift is left.
`--quick` sweeps 1,000 incidents; `--json-out FILE` writes bench/report.py's rows.

    .venv/bin/python bench/reconcile.py                       # both databases, 10,000 incidents
    .venv/bin/python bench/reconcile.py --db sqlite --incidents 2000 --connectors jira,opsgenie
    .venv/bin/python bench/reconcile.py --closed-share 0      # drift that leaves every object open
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
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
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import DEFAULT_POSTGRES, database  # noqa: E402
from report import header, machine, row, table, write_rows  # noqa: E402

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
from incident_hub.store.tables import ExternalRefRow, IncidentRow  # noqa: E402

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


def linked_incidents(hub: Hub, connector_id: str) -> dict[str, str]:
    """The connector's linked objects: external id -> hub incident id."""
    with hub.db.read() as session:
        rows = session.execute(
            select(ExternalRefRow.external_id, ExternalRefRow.incident_id).where(
                ExternalRefRow.connector_id == connector_id
            )
        )
        return {external_id: str(incident_id) for external_id, incident_id in rows}


def drift(
    side: Side,
    links: dict[str, str],
    touched: set[str],
    share: float,
    closed_share: float,
    rng: random.Random,
) -> list[tuple[str, str]]:
    """A person changes `share` of the objects in the vendor's UI (webhooks off): some resolve/close,
    the others acknowledge. (ref, "resolved" | "working") of each object changed.

    Only objects of incidents no earlier connector's drift has touched (`touched`, updated): the four
    connectors link the same hub incidents, and an acknowledge in Opsgenie of an incident that PagerDuty's
    drift already acknowledged (or resolved) is no drift by the time Opsgenie is swept: the hub already
    holds it (or cannot go back to it). Drawn from all objects, 5 of Opsgenie's 100 were such."""
    free = [ref for ref in side.refs() if links.get(ref) not in touched]
    chosen = rng.sample(free, round(len(links) * share))
    closed = round(len(chosen) * closed_share)
    for ref in chosen[:closed]:
        side.resolve(ref)
    for ref in chosen[closed:]:
        side.acknowledge(ref)
    touched.update(links[ref] for ref in chosen)
    return [(ref, "resolved") for ref in chosen[:closed]] + [(ref, "working") for ref in chosen[closed:]]


def drift_left(hub: Hub, side: Side, links: dict[str, str], changed: list[tuple[str, str]]) -> list[str]:
    """The changed objects the hub does not agree with after the sweep: vendor status (open / working /
    resolved) against the status of the incident it is linked to, and the link's own record of it."""
    with hub.db.read() as session:
        statuses = dict(
            session.execute(
                select(IncidentRow.id, IncidentRow.status).where(
                    IncidentRow.id.in_([links[ref] for ref, _ in changed])
                )
            ).all()
        )
    left = []
    for ref, wanted in changed:
        vendor = side.status(ref)
        status = str(statuses.get(links[ref]))
        hub_side = (
            "open" if status == "OPEN" else "resolved" if status in ("RESOLVED", "CLOSED") else "working"
        )
        if vendor != wanted or hub_side != vendor:
            left.append(f"{side.name} {ref} (incident {links[ref]}): vendor {vendor}, hub {status}")
    return left


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
        touched: set[str] = set()
        for name in args.connectors:
            side = world[name]
            started = time.perf_counter()
            seed_vendor(side, hub_ids)
            seeded = time.perf_counter() - started
            started = time.perf_counter()
            linked = asyncio.run(link(hub, name))
            linking = time.perf_counter() - started
            links = linked_incidents(hub, name)
            changed = drift(side, links, touched, args.drift, args.closed_share, rng)
            closed = sum(wanted == "resolved" for _, wanted in changed)
            print(
                f"  [{kind}] {name}: {args.incidents} objects seeded in {seeded:.1f} s, {linked} linked in "
                f"{linking:.1f} s, drift {len(changed)} ({closed} closed, {len(changed) - closed} "
                "acknowledged)",
                flush=True,
            )
            side.ledger.clear()

            started = time.perf_counter()
            record = asyncio.run(hub.reconciler.run(name, PassKind.FULL, trigger="bench"))
            elapsed = time.perf_counter() - started
            pages, fetches, requests = vendor_calls(side)
            left = drift_left(hub, side, links, changed)
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
                    "closed": closed,
                    "drifted": len(changed),
                    "examined": record.examined,
                    "found": record.drift_found,
                    "repaired": record.drift_repaired,
                    "left": left,
                    "baseline": bare_pages(side, requests),
                    "baseline_pages": len(requests),
                }
            )
            print(
                f"  [{kind}] {name}: swept in {elapsed:.1f} s ({record.state.value}), "
                f"{record.drift_repaired} of {len(changed)} repaired, {len(left)} left",
                flush=True,
            )
    hub.db.dispose()
    return results


def rows(results: list[dict[str, Any]], incidents: int) -> list[dict[str, Any]]:
    """The protocol's rows: per database and connector, drift repaired, sweep time, vendor calls."""
    out: list[dict[str, Any]] = []
    for r in results:
        where = f"{'SQLite' if r['db'] == 'sqlite' else 'PostgreSQL'} {r['connector']}"
        left = r["left"]
        out.append(
            row(
                "reconcile",
                f"{where}: drift repaired in one full sweep ({r['drifted']} drifted)",
                100 * r["repaired"] / max(r["drifted"], 1),
                "% of drift",
                target=100,
                met=not left and r["repaired"] == r["drifted"],
                note=f"left: {'; '.join(left[:5])}" if left else "",
            )
        )
        out.append(
            row(
                "reconcile",
                f"{where}: full sweep of {incidents} linked (baseline: the same pages bare)",
                r["seconds"],
                "s",
                baseline=r["baseline"],
                target=60 * incidents / 10_000,
                higher_is_better=False,
            )
        )
        out.append(
            row(
                "reconcile",
                f"{where}: vendor calls ÷ (page minimum + objects closed)",
                r["calls"] / (r["minimum"] + r["closed"]),
                "x",
                target=1.05,
                higher_is_better=False,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--incidents", type=int, default=None, help="per connector (10,000; --quick 1,000)")
    parser.add_argument("--connectors", type=lambda v: v.split(","), default=list(VENDORS))
    parser.add_argument("--drift", type=float, default=0.01, help="share of objects changed without webhooks")
    parser.add_argument("--closed-share", type=float, default=0.2, help="share of the drift that closes")
    parser.add_argument("--servicenow-page", type=int, default=1000, help="sysparm_limit of the sweep")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="1,000 incidents per connector (under a minute)")
    parser.add_argument("--json-out", type=Path, help="write the rows of bench/report.py here")
    args = parser.parse_args()
    if args.incidents is None:
        args.incidents = 1_000 if args.quick else 10_000
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(header(machine()))
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
        "Calls ÷ minimum | Drifted / found / repaired / left | Repaired/s | Examined/s | "
        "At default budget (s) | Baseline: bare pages (s) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {'SQLite' if r['db'] == 'sqlite' else 'PostgreSQL'} | {r['connector']} | {r['state']} | "
            f"{r['seconds']:.1f} | {r['calls']} ({r['pages']} + {r['fetches']}) | "
            f"{r['minimum']} ({r['page']}) | "
            f"{r['calls'] / r['minimum']:.2f} | "
            f"{r['drifted']} / {r['found']} / {r['repaired']} / {len(r['left'])} | "
            f"{r['repaired'] / r['seconds']:.1f} | {r['examined'] / r['seconds']:.0f} | "
            f"{r['calls'] / DEFAULT_RATE:.0f} | {r['baseline']:.1f} ({r['baseline_pages']} pages) |"
        )
    report = rows(results, args.incidents)
    print("\n" + table(report))
    if args.json_out:
        write_rows(args.json_out, report)
    unrepaired = [r for r in results if r["left"] or r["repaired"] != r["drifted"]]
    for r in unrepaired:
        print(
            f"\nDRIFT LEFT after the sweep, {r['db']} {r['connector']}: {r['repaired']} of {r['drifted']} "
            "repaired",
            file=sys.stderr,
        )
        for line in r["left"]:
            print(f"  {line}", file=sys.stderr)
    if unrepaired:
        sys.exit(1)


if __name__ == "__main__":
    main()
