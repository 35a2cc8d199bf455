"""Ordinary mistakes as one line: `incident-hub: <reason>` on stderr and exit status 1.

Only failures an operator causes and can fix (unknown connector, unset environment variable, unreachable
vendor or database, read-only data directory, invalid input) are shortened; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer import _click
from typer.core import TyperGroup
from typer.exceptions import TyperException

from incident_hub.connectors.base import ConnectorError
from incident_hub.errors import HubError
from incident_hub.store.db import DataDirectoryUnusable
from incident_hub.sync.retry import DeliveryError

EXIT_FAILURE = 1


class OperatorError(Exception):
    """A mistake the CLI reports in one line (raised by the commands themselves)."""


def ordinary_reason(error: BaseException) -> str | None:
    """The one line to print for an ordinary mistake; None for anything else (a bug: keep the traceback)."""
    if isinstance(error, OperatorError | ConnectorError | DeliveryError | DataDirectoryUnusable):
        return str(error)
    if isinstance(error, HubError):
        return error.detail
    if isinstance(error, ValidationError) and error.title == "Settings":
        return "; ".join(_setting(e) for e in error.errors())
    if isinstance(error, OperationalError):
        return _database_reason(error)
    if isinstance(error, sqlite3.OperationalError):
        return _sqlite_reason(str(error), _url_of(error))
    if isinstance(error, PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError):
        where = f" {error.filename}" if error.filename else ""
        return f"cannot write{where}: {error.strerror or error} (is the data directory writable?)"
    if isinstance(error, OSError) and error.errno is not None and error.filename:
        return f"{error.filename}: {error.strerror}"
    return None


def _setting(problem: ErrorDetails) -> str:
    name = "INCIDENT_HUB_" + "_".join(str(p) for p in problem["loc"][:1]).upper()
    return f"{name}: {problem['msg']}"


def _database_reason(error: OperationalError) -> str:
    message = str(error.orig) if error.orig is not None else str(error)
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    url = _url_of(error)
    if isinstance(error.orig, sqlite3.Error):
        return _sqlite_reason(first, url)
    what = "database unreachable" if "connect" in first.lower() else "database refused"
    return f"{what}: {first}" + (f" ({url})" if url else "")


def _sqlite_reason(message: str, url: str | None) -> str:
    where = f" {url}" if url else ""
    lowered = message.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return f"the SQLite database{where} is read-only: make the data directory and its files writable"
    if "unable to open database file" in lowered:
        return (
            f"cannot open the SQLite database{where}: the data directory is missing or not writable "
            "(INCIDENT_HUB_DATA_DIR)"
        )
    return f"SQLite{where}: {message}"


def _url_of(error: Any) -> str | None:
    """The configured database URL without its password (the hub has one database)."""
    del error
    try:
        from incident_hub.settings import get_settings

        url = make_url(get_settings().resolved_database_url())
    except Exception:  # the settings themselves may be what is wrong
        return None
    if url.get_backend_name() == "sqlite":
        return url.database
    return url.render_as_string(hide_password=True)


class OneLineErrors(TyperGroup):
    """The root command group: ordinary mistakes from any subcommand become one line and exit 1."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own: usage errors (exit 2), aborted prompts, explicit exits
        except Exception as error:
            reason = ordinary_reason(error)
            if reason is None:
                raise
            typer.echo(f"incident-hub: {_one_line(reason)}", err=True)
            raise typer.Exit(EXIT_FAILURE) from None


def _one_line(reason: str) -> str:
    return " ".join(reason.split())
