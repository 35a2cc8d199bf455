"""`incident-hub deliveries list|replay|discard`: the outbox, and what to do with dead letters."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from incident_hub.console.errors import OperatorError
from incident_hub.console.output import as_json, table
from incident_hub.console.session import hub_session
from incident_hub.hub import Hub
from incident_hub.sync.outbox import Delivery

app = typer.Typer(help="Deliveries to vendors and subscribers; dead letters.", no_args_is_help=True)

STATES = ("pending", "delivered", "dead", "cancelled")
ACTOR = "incident-hub cli"  # the audit log's actor for changes made from the command line


@app.command("list")
def list_deliveries(
    state: Annotated[str | None, typer.Option(help=f"One of {', '.join(STATES)}.")] = None,
    target: Annotated[str | None, typer.Option(help="Target kind: connector or subscriber.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Deliveries, oldest first (`--state dead`: the dead letters, with their last error)."""
    if state is not None and state not in STATES:
        raise typer.BadParameter(f"state is one of {', '.join(STATES)}", param_hint="--state")
    with hub_session() as hub:
        found = hub.outbox.search(state=state, target_kind=target, limit=limit)
    if json_:
        as_json(found)
        return
    if not found:
        typer.echo(f"no {state or ''} deliveries".replace("  ", " "))
        return
    table(
        ["ID", "STATE", "TARGET", "EVENT", "INCIDENT", "ATTEMPTS", "LAST ERROR"],
        [
            [
                d.id,
                d.state,
                f"{d.target_kind}:{d.target_id}",
                d.event_type,
                d.incident_id,
                d.attempts,
                (d.last_error or "")[:120],
            ]
            for d in found
        ],
    )


@app.command()
def replay(
    delivery_id: Annotated[list[int] | None, typer.Argument(help="Dead deliveries to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead delivery.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replaying all.")] = False,
    send: Annotated[bool, typer.Option(help="Send them now, from this process.")] = False,
) -> None:
    """Replay dead deliveries with a fresh retry budget (a running hub sends them; `--send` sends them
    from here). With no id, asks before replaying every dead one, or give `--all`."""
    replay_dead(delivery_id or [], all_=all_, yes=yes, send=send)


def replay_dead(ids: list[int], *, all_: bool, yes: bool, send: bool) -> None:
    """Shared by `deliveries replay` and the older top-level `replay`."""
    if ids and all_:
        raise OperatorError("give delivery ids or --all, not both")
    with hub_session() as hub:
        if not ids:
            ids = [d.id for d in hub.outbox.search(state="dead", limit=100_000)]
            if not ids:
                typer.echo("no dead deliveries")
                return
            if not all_ and not yes:
                typer.confirm(f"Replay all {len(ids)} dead deliveries?", abort=True)
        for one in ids:
            hub.outbox.replay(one)
            hub.audit.record(ACTOR, "delivery.replay", f"delivery/{one}", {})
            typer.echo(f"replaying delivery {one}")
        if send:
            asyncio.run(_drain(hub))
            for one in ids:
                typer.echo(f"delivery {one}: {hub.outbox.get(one).state}")


async def _drain(hub: Hub) -> None:
    try:
        await hub.dispatcher.drain()
    finally:
        await hub.connectors.close()


@app.command()
def discard(
    delivery_id: Annotated[list[int], typer.Argument(help="Dead deliveries to give up on.")],
) -> None:
    """Give up on dead deliveries (kept as `cancelled`): the deliveries waiting behind them go out."""
    with hub_session() as hub:
        for one in delivery_id:
            delivery: Delivery = hub.outbox.discard(one)
            hub.audit.record(ACTOR, "delivery.discard", f"delivery/{one}", {})
            typer.echo(f"discarded delivery {delivery.id} ({delivery.target_kind}:{delivery.target_id})")
