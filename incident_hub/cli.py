"""`incident-hub`: serve, migrate, manage API keys, replay dead letters, reconcile, backfill, run the demo."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from incident_hub import __version__
from incident_hub.console import connectors as connectors_cli
from incident_hub.console import deliveries as deliveries_cli
from incident_hub.console import mappings as mappings_cli
from incident_hub.console import reconcile as reconcile_cli
from incident_hub.console.errors import OneLineErrors
from incident_hub.console.output import as_json, table
from incident_hub.settings import get_settings

app = typer.Typer(
    cls=OneLineErrors,
    help="incident-hub: one canonical record of every incident.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(connectors_cli.app, name="connectors")
app.add_typer(deliveries_cli.app, name="deliveries")
app.add_typer(mappings_cli.app, name="mappings")
app.add_typer(reconcile_cli.app, name="reconcile")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"incident-hub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """incident-hub: one canonical record of every incident."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default INCIDENT_HUB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default INCIDENT_HUB_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes, each with API and dispatcher (>1: PostgreSQL only)."),
    ] = 1,
) -> None:
    """Run the API and the dispatcher."""
    import uvicorn
    from sqlalchemy.engine import make_url

    from incident_hub.api.app import app_from_env
    from incident_hub.hub import Hub
    from incident_hub.logs import configure
    from incident_hub.metrics import multiprocess_dir, multiprocess_metrics

    settings = get_settings()
    if workers > 1 and make_url(settings.resolved_database_url()).get_backend_name() == "sqlite":
        typer.echo(
            "error: --workers above 1 needs PostgreSQL: SQLite allows one writer process; "
            "set INCIDENT_HUB_DATABASE_URL=postgresql+psycopg://...",
            err=True,
        )
        raise typer.Exit(2)
    configure(settings.log_level, json_lines=settings.log_json)
    # Migrate once before the workers start, so they do not race for it.
    Hub(settings).migrate()
    if workers == 1 and multiprocess_dir() is None:
        uvicorn.run(
            app_from_env(),
            host=host or settings.host,
            port=port or settings.port,
            log_config=None,
            access_log=False,
        )
        return
    # Each worker counts in files of its own in one directory; /metrics in any worker sums them all.
    with multiprocess_metrics():
        uvicorn.run(
            "incident_hub.api.app:app_from_env",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=None,
            access_log=False,
        )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to `revision`."""
    from incident_hub.store import migrate
    from incident_hub.store.db import Database

    db = Database(get_settings().resolved_database_url())
    migrate.upgrade(db, revision)
    typer.echo(f"database at revision {migrate.current_revision(db)}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database and whether it is the newest this version knows."""
    from incident_hub.store import migrate
    from incident_hub.store.db import Database

    db = Database(get_settings().resolved_database_url())
    try:
        current, head = migrate.current_revision(db), migrate.head_revision(db)
    finally:
        db.dispose()
    if current == head:
        typer.echo(f"database at revision {current} (head)")
        return
    typer.echo(
        f"database at revision {current or 'none (empty)'}; head is {head}: run `incident-hub db upgrade`"
    )
    raise typer.Exit(1)


@apikey_app.command("list")
def apikey_list(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every key issued: id, name, scopes, public prefix, created, revoked (never the key itself)."""
    from incident_hub.api.auth import ApiKeys
    from incident_hub.store import migrate
    from incident_hub.store.db import Database

    db = Database(get_settings().resolved_database_url())
    try:
        migrate.upgrade(db)
        keys = ApiKeys(db).issued()
    finally:
        db.dispose()
    if json_:
        as_json([{**vars(k), "scopes": [s.value for s in k.scopes]} for k in keys])
        return
    table(
        ["ID", "NAME", "SCOPES", "PREFIX", "CREATED", "REVOKED"],
        [
            [k.id, k.name, ",".join(s.value for s in k.scopes), k.prefix, k.created_at, k.revoked_at]
            for k in keys
        ],
    )


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[list[str], typer.Option(help="read, write or admin (repeatable).")],
) -> None:
    """Make a key and print it once: it is stored only as a hash."""
    from incident_hub.api.auth import ApiKeys, Scope
    from incident_hub.store import migrate
    from incident_hub.store.db import Database

    try:
        scopes = [Scope(s) for s in scope]
    except ValueError as error:
        raise typer.BadParameter("scopes are read, write, admin") from error
    db = Database(get_settings().resolved_database_url())
    migrate.upgrade(db)
    issued = ApiKeys(db).create(name, scopes)
    typer.echo(
        f"id:     {issued.id}\nscopes: {', '.join(s.value for s in issued.scopes)}\nkey:    {issued.key}"
    )
    typer.echo("Store the key now: it cannot be shown again.", err=True)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by id (replicas stop accepting it within INCIDENT_HUB_API_KEY_CACHE_SECONDS)."""
    from incident_hub.api.auth import ApiKeys
    from incident_hub.console.errors import OperatorError
    from incident_hub.store.db import Database

    if not ApiKeys(Database(get_settings().resolved_database_url())).revoke(key_id):
        raise OperatorError(f"no active API key {key_id} (see `incident-hub apikey list`)")
    typer.echo(f"revoked {key_id}")


# `incident-hub replay` is kept as a short form of `incident-hub deliveries replay` (same options).
app.command("replay")(deliveries_cli.replay)


@app.command()
def scheduler() -> None:
    """Run only the reconciler (no API, no dispatcher): passes every INCIDENT_HUB_RECONCILE_INTERVAL_SECONDS.

    On PostgreSQL one replica at a time runs it (advisory lock); the repairs it makes are sent by the
    dispatchers of the `serve` processes."""
    from incident_hub.hub import Hub
    from incident_hub.logs import configure

    settings = get_settings()
    configure(settings.log_level, json_lines=settings.log_json)
    hub = Hub(settings)
    hub.migrate()
    asyncio.run(_schedule(hub))


async def _schedule(hub: object) -> None:
    import signal

    from incident_hub.hub import Hub

    assert isinstance(hub, Hub)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await hub.schedule.run(stop)
    finally:
        await hub.connectors.close()
        hub.db.dispose()


@app.command()
def backfill(
    connector: Annotated[str, typer.Option(help="Connector id.")],
    since: Annotated[
        datetime,
        typer.Option(
            help="Objects changed since this UTC date or time.", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]
        ),
    ],
    all_: Annotated[
        bool, typer.Option("--all", help="Resolved and closed objects too (default: open ones only).")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Apply, report, and roll everything back.")] = False,
) -> None:
    """Import a vendor's existing objects: link those that carry a hub incident id, create the rest."""
    from incident_hub.hub import Hub
    from incident_hub.logs import configure
    from incident_hub.scheduler.backfill import backfill as run_backfill

    settings = get_settings()
    configure(settings.log_level, json_lines=settings.log_json)
    hub = Hub(settings)
    hub.migrate()

    async def run() -> list[str]:
        try:
            report = await run_backfill(hub.reconciler, connector, since, include_ended=all_, dry_run=dry_run)
            return report.lines()
        finally:
            await hub.connectors.close()
            hub.db.dispose()

    for line in asyncio.run(run()):
        typer.echo(line)


@app.command()
def demo() -> None:
    """Start a throw-away hub and walk an incident through its life, showing the events sent out."""
    from incident_hub.demo import run

    raise typer.Exit(run())


def main() -> None:
    app()  # ordinary mistakes become one line in `OneLineErrors`
