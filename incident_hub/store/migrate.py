"""Alembic, driven from code: the hub upgrades its schema on start and by `incident-hub db upgrade`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from incident_hub.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = database.engine
    return config


def declared_for(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's `include_object` for comparing a database of `dialect` with the tables: an index the
    tables declare for another dialect only (`.ddl_if(dialect=...)`) is not expected there."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        only = getattr(obj, "_ddl_if", None)
        if only is None or only.dialect is None:
            return True
        dialects = (only.dialect,) if isinstance(only.dialect, str) else tuple(only.dialect)
        return dialect in dialects

    return include


def upgrade(database: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(database), revision)


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(database: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def is_current(database: Database) -> bool:
    return current_revision(database) == head_revision(database)
