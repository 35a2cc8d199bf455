"""`incident-hub reconcile now [CONNECTOR]`: one reconciliation pass, from this process, reported."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from incident_hub.console.output import as_json, table
from incident_hub.console.session import hub_session
from incident_hub.hub import Hub
from incident_hub.scheduler.runs import PassKind, ReconciliationRun, RunState

app = typer.Typer(help="Reconciliation: repair what webhooks missed.", no_args_is_help=True)


@app.command()
def now(
    connector_id: Annotated[
        str | None, typer.Argument(help="One connector; none: every enabled one.")
    ] = None,
    kind: Annotated[PassKind, typer.Option(help="incremental (since the watermark) or full.")] = (
        PassKind.INCREMENTAL
    ),
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Run one pass now and print what it examined and repaired; exit 1 if a pass failed. Repairs are
    sent by the running hub's dispatcher."""
    with hub_session() as hub:
        if connector_id is not None:
            hub.connectors.state(connector_id)  # one line for an unknown id
        ids = [connector_id] if connector_id else hub.connectors.enabled_ids()
        if not ids:
            typer.echo("no connectors enabled: nothing to reconcile")
            return
        runs = asyncio.run(_run(hub, ids, kind))
    if json_:
        as_json(runs)
    else:
        table(
            ["RUN", "CONNECTOR", "KIND", "STATE", "EXAMINED", "DRIFT", "REPAIRED", "ERRORS"],
            [
                [
                    r.id,
                    r.connector_id,
                    r.kind.value,
                    r.state.value,
                    r.examined,
                    r.drift_found,
                    r.drift_repaired,
                    (r.errors or "")[:160],
                ]
                for r in runs
            ],
        )
    if any(r.state is RunState.FAILED for r in runs):
        raise typer.Exit(1)


async def _run(hub: Hub, ids: list[str], kind: PassKind) -> list[ReconciliationRun]:
    try:
        return [await hub.reconciler.run(one, kind, trigger="cli") for one in ids]
    finally:
        await hub.connectors.close()
