"""Engine and per-request sessions.

PostgreSQL waits are bounded so that a database outage fails fast (503)
instead of hanging workers, also when the database's host is black-holed
(a failover moved it: packets to the old host go nowhere):

- every wait of libpq has a deadline (pgwait.py): connecting and a pooled
  connection's checkout (its ping, and the reconnect a failed ping needs)
  get the connect timeout in all, a statement's answer the statement timeout
  plus the connect timeout;
- the kernel ends a connection whose host is gone (tcp_user_timeout for
  unacknowledged bytes, keepalives for an idle connection), so an idle
  pooled connection is often found dead before a request picks it;
- after a connection attempt that failed slowly (no answer), requests
  answer 503 at once for half the connect timeout before the next attempt:
  the requests queued behind a sync worker do not each wait for one;
- a short pool checkout timeout; statement_timeout and lock_timeout on the
  server.

A failed ping invalidates the whole pool: the next requests connect anew,
so the app recovers by itself once the database answers again (at most the
connect timeout and a backoff later).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

import psycopg2
from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InvalidatePoolError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from taskboard import pgwait
from taskboard.config import Settings
from taskboard.pgwait import BoundedConnection, DatabaseTimeout, WaitLimits

EXT_KEY = "taskboard.db"
log = logging.getLogger(__name__)
_FRESH = "taskboard.fresh"  # in a pool entry's info: connected, not pinged yet

# The start of the checkout whose ping just failed, per thread.
_checkout = threading.local()


def wait_limits(settings: Settings, *, for_migrations: bool = False) -> WaitLimits:
    """How long the app (or the migrations: no statement limit) waits for
    PostgreSQL; see pgwait.WaitLimits."""
    connect = float(settings.db_connect_timeout)
    if for_migrations:
        return WaitLimits(connect=connect, statement=None)
    return WaitLimits(connect=connect, statement=settings.db_statement_timeout_ms / 1000 + connect)


def make_engine(settings: Settings, *, for_migrations: bool = False) -> Engine:
    """The engine of the app; for migrations without the statement timeout."""
    url = settings.database_url
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(settings, for_migrations)
    # SQLite: the run-alone mode.
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"timeout": settings.db_statement_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    return engine


def _postgres_engine(settings: Settings, for_migrations: bool) -> Engine:
    pgwait.install()
    engine = create_engine(
        settings.database_url,
        # the ping is ours (_bound_checkouts): SQLAlchemy's would wait unbounded
        pool_pre_ping=False,
        pool_size=5,
        max_overflow=5,
        pool_timeout=settings.db_connect_timeout,
        pool_recycle=1800,
        connect_args=_libpq_args(settings, for_migrations),
    )
    _bound_checkouts(engine, wait_limits(settings, for_migrations=for_migrations))
    return engine


def _libpq_args(settings: Settings, for_migrations: bool) -> dict[str, Any]:
    tls = {"sslmode": settings.db_sslmode} if settings.db_sslmode else {}
    if settings.db_sslrootcert:
        tls["sslrootcert"] = settings.db_sslrootcert
    return tls | {
        # libpq enforces it only when the wait callback is not pgwait's
        "connect_timeout": settings.db_connect_timeout,
        "options": _pg_options(settings, for_migrations),
        "application_name": "taskboard",
        # the kernel gives up on a connection whose host is gone: sent bytes
        # unacknowledged this long, or an idle connection's probes unanswered
        "tcp_user_timeout": settings.db_tcp_user_timeout_ms,
        "keepalives": 1,
        "keepalives_idle": settings.db_keepalives_idle,
        "keepalives_interval": settings.db_keepalives_interval,
        "keepalives_count": settings.db_keepalives_count,
    }


class _Backoff:
    """After a connection attempt failed slowly (no answer: a black hole),
    the engine answers at once for ``seconds`` instead of trying again. A
    sync gunicorn worker serves one request at a time: without this, the
    requests queued behind it would each wait for an attempt of their own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = 0.0

    def check(self) -> None:
        left = self.until - time.monotonic()
        if left > 0:
            raise DatabaseTimeout(f"the database did not answer; next attempt in {left:.1f} s")

    def failed(self, started: float) -> None:
        now = time.monotonic()
        if now - started >= self.seconds:
            self.until = now + self.seconds


def _bound_checkouts(engine: Engine, limits: WaitLimits) -> None:
    """Connect within the connect timeout (after a failed ping: within what
    is left of the checkout), with a backoff after slow failures; ping a
    pooled connection on checkout within ``limits.ping`` (a fresh one is not
    pinged)."""
    backoff = _Backoff(limits.backoff)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        started = _failed_checkout_start() or time.monotonic()
        backoff.check()
        within = started + limits.connect - time.monotonic()
        try:
            if within <= 0:
                raise DatabaseTimeout(f"no answer from the database within {limits.connect:.1f} s")
            factory = functools.partial(BoundedConnection, limits=limits, connect_within=within)
            return dialect.connect(*cargs, **{**cparams, "connection_factory": factory})
        except psycopg2.Error:
            backoff.failed(started)
            raise

    @event.listens_for(engine, "connect")
    def _mark_fresh(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False) or not isinstance(dbapi_conn, BoundedConnection):
            return
        started = time.monotonic()
        try:
            with dbapi_conn.within(limits.ping), dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error as exc:
            _checkout.started = started
            # SQLAlchemy invalidates every pooled connection and reconnects
            raise InvalidatePoolError(f"ping failed: {exc}") from exc


def _failed_checkout_start() -> float | None:
    """When the checkout whose ping just failed in this thread began (the
    reconnect that follows gets what is left of it); taken once."""
    started: float | None = getattr(_checkout, "started", None)
    _checkout.started = None
    return started


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
        if session is None:
            return
        try:
            session.close()  # a rollback when a transaction is open
        except SQLAlchemyError as exc:
            # The answer is decided (a read done, or an error); the database
            # went away since: SQLAlchemy has discarded the connection.
            log.warning("closing the session failed: %s", type(exc.__cause__ or exc).__name__)

    return database


def get_db() -> Database:
    return current_app.extensions[EXT_KEY]


def session() -> Session:
    """The session of the current request (opened on first use)."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    return g.db_session
