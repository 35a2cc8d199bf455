"""The floor `bench/propagation.py` measures the hub against: PagerDuty webhooks in, one Jira call out.

A bare FastAPI app. `POST /pagerduty` takes a PagerDuty V3 webhook, answers 202 at once (as the hub does)
and, in a task on the same event loop, makes the one Jira REST v3 call that carries the change:

- `incident.triggered`: `POST /rest/api/3/issue` (summary = title, priority from the PagerDuty priority);
- `incident.acknowledged`: `POST /rest/api/3/issue/{id}/transitions` to In Progress;
- `incident.priority_updated`: `PUT /rest/api/3/issue/{id}` with the new priority;
- `incident.resolved`: `POST /rest/api/3/issue/{id}/transitions` to Done.

It keeps PagerDuty id -> Jira issue id in memory, one `asyncio.Lock` per PagerDuty incident (a change
waits for the create before it), and one keep-alive `httpx.AsyncClient`. No database, no signature
check, no read before a write, no retries: what is left is the network, TLS, JSON, and the sandbox's
latency. `POST /jira` takes the Jira webhooks the writes cause and drops them.

    RELAY_JIRA_URL=https://127.0.0.1:8443 RELAY_JIRA_CA=ca.pem RELAY_JIRA_EMAIL=hub@example.com \
    RELAY_JIRA_TOKEN=... uvicorn --app-dir bench relay_app:app --port 8002
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, status

log = logging.getLogger("relay")

# The hub's default mappings, composed: PagerDuty priority -> severity -> Jira priority.
JIRA_PRIORITY = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low", "P5": "Low"}
# The sandbox workflow's transition ids (incident_hub/sandbox/jira/__init__.py, _TRANSITIONS).
TRANSITIONS = {"incident.acknowledged": "21", "incident.resolved": "31"}

issues: dict[str, str] = {}
locks: dict[str, asyncio.Lock] = {}
tasks: set[asyncio.Task[None]] = set()
stats: Counter[str] = Counter()
client: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    global client
    trust = ssl.create_default_context(cafile=os.environ["RELAY_JIRA_CA"])
    client = httpx.AsyncClient(
        base_url=os.environ["RELAY_JIRA_URL"].rstrip("/") + "/rest/api/3",
        auth=(os.environ["RELAY_JIRA_EMAIL"], os.environ["RELAY_JIRA_TOKEN"]),
        verify=trust,
        timeout=10,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )
    try:
        yield
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


app = FastAPI(title="relay", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/stats")
async def get_stats() -> dict[str, int]:
    return {**stats, "in_flight": len(tasks)}


@app.post("/pagerduty", status_code=status.HTTP_202_ACCEPTED)
async def pagerduty(request: Request) -> dict[str, str]:
    event = (await request.json())["event"]
    task = asyncio.create_task(relay(event))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return {"status": "accepted"}


@app.post("/jira", status_code=status.HTTP_202_ACCEPTED)
async def jira(request: Request) -> dict[str, str]:
    await request.body()
    stats["jira_webhooks"] += 1
    return {"status": "ignored"}


async def relay(event: dict[str, Any]) -> None:
    assert client is not None
    kind = str(event["event_type"])
    data = event["data"]
    if data.get("type") != "incident":
        stats["ignored"] += 1
        return
    pd_id = str(data["id"])
    lock = locks.setdefault(pd_id, asyncio.Lock())
    async with lock:
        try:
            if kind == "incident.triggered":
                fields = {
                    "project": {"key": "OPS"},
                    "issuetype": {"name": "Incident"},
                    "summary": data["title"],
                    "labels": ["relay"],
                    "priority": {"name": _priority(data)},
                }
                response = await client.post("/issue", json={"fields": fields})
                response.raise_for_status()
                issues[pd_id] = str(response.json()["id"])
            elif pd_id not in issues:
                stats["unknown_incident"] += 1
                return
            elif kind in TRANSITIONS:
                response = await client.post(
                    f"/issue/{issues[pd_id]}/transitions", json={"transition": {"id": TRANSITIONS[kind]}}
                )
                response.raise_for_status()
            elif kind == "incident.priority_updated":
                response = await client.put(
                    f"/issue/{issues[pd_id]}", json={"fields": {"priority": {"name": _priority(data)}}}
                )
                response.raise_for_status()
            else:
                stats["ignored"] += 1
                return
            stats["relayed"] += 1
        except (httpx.HTTPError, KeyError, ValueError) as error:
            stats["errors"] += 1
            log.warning("relay failed: %s %s: %s", kind, pd_id, error)


def _priority(data: dict[str, Any]) -> str:
    priority = data.get("priority") or {}
    return JIRA_PRIORITY.get(str(priority.get("summary")), "Medium")
