"""Alembic environment: runs on the connection given by taskboard.migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from taskboard.migrations import MIGRATION_LOCK
from taskboard.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through taskboard.migrations
    raise RuntimeError("run migrations with taskboard-migrate")

is_postgres = connection.dialect.name == "postgresql"
if is_postgres:
    # Several instances may start a release at once: serialise them.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=not is_postgres,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
