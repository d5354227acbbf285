"""Deadlines on every wait for PostgreSQL, also when its host is black-holed.

When a failover moves the database to another host, packets to the old one
go nowhere: no RST, no FIN. libpq then waits in poll() without a deadline
(its connect_timeout covers connecting only), and a sync gunicorn worker
hangs until gunicorn's worker timeout kills it. The kernel's limits
(tcp_user_timeout, keepalives; set in db.py) end such a connection only at
TCP level, and not at all when something on the way still acknowledges the
bytes (a proxy whose server stalls).

So taskboard installs a psycopg2 wait callback (psycopg2's coroutine
support): libpq runs in non-blocking mode and :func:`wait` polls its socket,
each wait with a deadline. A connection made by taskboard is a
:class:`BoundedConnection`, which carries its limits; when one is reached the
wait raises :class:`DatabaseTimeout` (an OperationalError: the API answers
503) and psycopg2 closes the connection, so SQLAlchemy discards it.

The callback is process-wide: other psycopg2 connections of the process run
in non-blocking mode too and wait without a deadline, as before (COPY is not
available in this mode; taskboard uses none).
"""

from __future__ import annotations

import logging
import math
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import extensions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaitLimits:
    """Seconds taskboard waits for PostgreSQL.

    ``connect``: a new connection (libpq's connect_timeout, which libpq does
    not enforce in non-blocking mode); also the whole checkout of a pooled
    connection: its ping (:attr:`ping`) and the reconnect a failed ping
    needs; and what sets the backoff (:attr:`backoff`, db.py).
    ``statement``: the answer to one statement (the server cancels it at its
    statement timeout; the rest is for the network); None: no limit (schema
    migrations)."""

    connect: float
    statement: float | None

    @property
    def ping(self) -> float:
        """The ping of a pooled connection gets half of the checkout, so a
        connection to a host that is gone is replaced within the rest."""
        return self.connect / 2

    @property
    def backoff(self) -> float:
        """After a connection attempt failed this slowly, no new attempt for
        as long (half the connect timeout): meanwhile requests fail at once."""
        return self.connect / 2


class DatabaseTimeout(psycopg2.OperationalError):
    """PostgreSQL did not answer within the limit (the connection is closed)."""


class BoundedConnection(extensions.connection):
    """A psycopg2 connection whose waits :func:`wait` bounds: each by its
    ``deadline`` while one is set (connecting, a ping), else each statement
    by ``limits.statement``."""

    def __init__(
        self, dsn: str, async_: int = 0, *, limits: WaitLimits, connect_within: float
    ) -> None:
        self.limits = limits
        self.deadline: float | None = time.monotonic() + connect_within
        try:
            super().__init__(dsn, async_)
        finally:
            self.deadline = None

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Every wait of the block ends by ``seconds`` from now."""
        self.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.deadline = None


def _deadline(conn: Any) -> float | None:
    if not isinstance(conn, BoundedConnection):
        return None
    if conn.deadline is not None:
        return conn.deadline
    if conn.limits.statement is None:
        return None
    return time.monotonic() + conn.limits.statement


def _await_socket(fd: int, events: int, deadline: float | None, started: float) -> None:
    poller = select.poll()
    poller.register(fd, events)
    if deadline is None:
        poller.poll()
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise DatabaseTimeout(
            f"no answer from the database within {time.monotonic() - started:.1f} s"
        )
    poller.poll(math.ceil(left * 1000))


def wait(conn: Any) -> None:
    """psycopg2's wait callback: until libpq is done with ``conn``, or its
    deadline passes (DatabaseTimeout; psycopg2 then closes it)."""
    started = time.monotonic()
    deadline = _deadline(conn)
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            _await_socket(conn.fileno(), select.POLLIN, deadline, started)
        elif state == extensions.POLL_WRITE:
            _await_socket(conn.fileno(), select.POLLOUT, deadline, started)
        else:
            raise psycopg2.OperationalError(f"bad state from poll: {state}")


def install() -> None:
    """Make :func:`wait` psycopg2's wait callback (once per process)."""
    current = extensions.get_wait_callback()
    if current is wait:
        return
    if current is not None:
        log.warning(
            "another psycopg2 wait callback is installed: database waits are "
            "bounded by the kernel's TCP limits only"
        )
        return
    extensions.set_wait_callback(wait)
