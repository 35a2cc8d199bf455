"""`incident-hub connectors list|health|check`: what is configured, and whether each vendor answers."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from incident_hub.clock import utcnow
from incident_hub.connectors.base import CheckResult, ConnectorError, Health
from incident_hub.console.output import as_json, table
from incident_hub.console.session import hub_session
from incident_hub.hub import Hub

app = typer.Typer(help="Configured connectors and their vendors.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_connectors(json_: JsonOption = False) -> None:
    """Every configured connector: kind, source, enabled, paused."""
    with hub_session() as hub:
        states = hub.connectors.states()
    if json_:
        as_json(
            [
                {
                    "id": s.config.id,
                    "kind": s.config.kind,
                    "base_url": s.config.base_url,
                    "source": s.source,
                    "enabled": s.config.enabled,
                    "paused_until": s.paused_until,
                    "pause_reason": s.pause_reason,
                    "consecutive_failures": s.consecutive_failures,
                }
                for s in states
            ]
        )
        return
    if not states:
        typer.echo("no connectors configured (INCIDENT_HUB_CONFIG, or PUT /api/v1/connectors/{id})")
        return
    now = utcnow()
    table(
        ["ID", "KIND", "SOURCE", "ENABLED", "PAUSED", "BASE URL"],
        [
            [
                s.config.id,
                s.config.kind,
                s.source,
                "yes" if s.config.enabled else "no",
                f"until {s.paused_until:%H:%M:%S}: {s.pause_reason}" if s.paused(now) else "no",
                s.config.base_url,
            ]
            for s in states
        ],
    )


@app.command()
def health(
    connector_id: Annotated[str | None, typer.Argument(help="One connector; none: every one.")] = None,
    json_: JsonOption = False,
) -> None:
    """Call each vendor with the configured credentials; exit 1 if any does not answer."""
    with hub_session() as hub:
        ids = [connector_id] if connector_id else [s.config.id for s in hub.connectors.states()]
        if connector_id:
            hub.connectors.state(connector_id)  # one line for an unknown id
        answers = asyncio.run(_health(hub, ids))
    if json_:
        as_json({one: answer for one, answer in zip(ids, answers, strict=True)})
    else:
        table(
            ["ID", "OK", "LATENCY", "DETAIL"],
            [
                [one, "ok" if a.ok else "FAIL", f"{a.latency_ms:.0f} ms" if a.latency_ms else None, a.detail]
                for one, a in zip(ids, answers, strict=True)
            ],
        )
    if not all(a.ok for a in answers):
        raise typer.Exit(1)


async def _health(hub: Hub, ids: list[str]) -> list[Health]:
    answers = []
    try:
        for one in ids:
            try:
                connector = hub.connectors.get(one)
                answers.append(await connector.health())
            except ConnectorError as error:
                answers.append(Health(ok=False, detail=str(error)))
    finally:
        await hub.connectors.close()  # on this loop: some clients belong to it
    return answers


@app.command()
def check(connector_id: str, json_: JsonOption = False) -> None:
    """Check one connector against its vendor: credentials readable, accepted, the configured
    service/project present, webhooks where the vendor can be asked. Exit 1 if any check fails."""
    with hub_session() as hub:
        hub.connectors.state(connector_id)  # one line for an unknown id
        results = asyncio.run(_check(hub, connector_id))
    if json_:
        as_json(results)
    else:
        width = max(len(r.name) for r in results)
        for result in results:
            mark = {True: "ok  ", False: "FAIL", None: "--  "}[result.ok]
            typer.echo(f"{mark}  {result.name:<{width}}  {' '.join(result.detail.split())}")
    if any(r.ok is False for r in results):
        raise typer.Exit(1)


async def _check(hub: Hub, connector_id: str) -> list[CheckResult]:
    try:
        connector = hub.connectors.get(connector_id)
        return await connector.check()
    except ConnectorError as error:
        return [CheckResult(name="configuration", ok=False, detail=str(error))]
    finally:
        await hub.connectors.close()  # on this loop: some clients belong to it
