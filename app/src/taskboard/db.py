"""Engine and per-request sessions.

PostgreSQL connections are bounded so a database outage fails fast instead of
hanging workers: connect_timeout, statement_timeout (libpq options), a short
pool checkout timeout, and pool_pre_ping so connections broken by an outage
are replaced by the next request once the database is back.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from taskboard.config import Settings

EXT_KEY = "taskboard.db"


def make_engine(settings: Settings, *, for_migrations: bool = False) -> Engine:
    """The engine of the app; for migrations without the statement timeout."""
    url = settings.database_url
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
    if url.get_backend_name() == "postgresql":
        kwargs.update(
            pool_size=5,
            max_overflow=5,
            pool_timeout=settings.db_connect_timeout,
            pool_recycle=1800,
            connect_args={
                "connect_timeout": settings.db_connect_timeout,
                "options": _pg_options(settings, for_migrations),
                "application_name": "taskboard",
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        return create_engine(url, **kwargs)
    # SQLite: the run-alone mode.
    kwargs["connect_args"] = {"timeout": settings.db_statement_timeout_ms / 1000}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    return engine


def _pg_options(settings: Settings, for_migrations: bool) -> str:
    if for_migrations:
        # schema changes may run long, but must not queue forever behind a lock
        return "-c lock_timeout=30000"
    ms = settings.db_statement_timeout_ms
    return f"-c statement_timeout={ms} -c lock_timeout={ms}"


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)


def init_app(app: Flask, settings: Settings) -> Database:
    database = Database(make_engine(settings))
    app.extensions[EXT_KEY] = database

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()

    return database


def get_db() -> Database:
    return current_app.extensions[EXT_KEY]


def session() -> Session:
    """The session of the current request (opened on first use)."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    return g.db_session
