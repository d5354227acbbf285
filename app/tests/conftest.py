"""Fixtures: a real PostgreSQL server started by the tests, and SQLite."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pgserver import PostgresServer
from sqlalchemy import text
from taskboard import create_app, migrations
from taskboard.config import Settings
from taskboard.db import EXT_KEY, make_engine

BODY_LIMIT = 4096
_names = itertools.count(1)


def settings_for(url: str, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, **env})


def migrate(url: str, revision: str = "head") -> None:
    engine = make_engine(settings_for(url), for_migrations=True)
    try:
        migrations.upgrade(engine, revision)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_empty_url(pg: PostgresServer) -> str:
    """A new, empty PostgreSQL database."""
    return pg.create_database(f"empty_{os.getpid()}_{next(_names)}")


@pytest.fixture(scope="session")
def pg_migrated_url(pg: PostgresServer) -> str:
    url = pg.create_database("taskboard_api")
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A migrated database with no tasks, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/taskboard.sqlite"
        migrate(url)
        return url
    url = request.getfixturevalue("pg_migrated_url")
    engine = make_engine(settings_for(url))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tasks RESTART IDENTITY"))
    engine.dispose()
    return url


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    app = create_app(env={"DATABASE_URL": db_url, "TASKBOARD_MAX_BODY_BYTES": str(BODY_LIMIT)})
    yield app
    app.extensions[EXT_KEY].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def table_rows(app: Flask) -> list[tuple]:
    """Every row of the tasks table, read past the app (to see what changed)."""
    with app.extensions[EXT_KEY].engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM tasks ORDER BY id"))]
