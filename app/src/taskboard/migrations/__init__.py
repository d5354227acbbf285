"""Alembic migrations, shipped inside the package: the only source of the schema."""

from __future__ import annotations

import functools
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

HERE = os.path.dirname(os.path.abspath(__file__))
# PostgreSQL advisory lock key taken by env.py: one migrator at a time
MIGRATION_LOCK = 72_616_263


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", HERE)
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str | None:
    """The code's head revision (read once: the files do not change under us)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions(conn: Connection) -> tuple[str | None, str | None]:
    """(current revision of the database, head revision of the code)."""
    current = MigrationContext.configure(conn).get_current_revision()
    return current, head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
