"""A failover that moves the database to another host: the connections to
the old one are black-holed (bytes go nowhere, nothing is refused or
closed), then the new host answers. A proxy of the test's own
(blackhole.py) stands between the app and the tests' PostgreSQL.

Requests answer 503 within the app's own limits (taskboard.db.wait_limits,
from the settings), never hang, never fail otherwise; once the new host
answers they succeed again without a restart, and every write answered 201
is in the database."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg2
import pytest
import requests
from blackhole import BlackHoleProxy
from conftest import migrate, settings_for
from gunicornserver import GunicornServer
from pgserver import PostgresServer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from taskboard import create_app
from taskboard.db import EXT_KEY, make_engine, wait_limits
from taskboard.pgwait import WaitLimits
from werkzeug.test import TestResponse

# Short limits keep the test fast; the bounds below are derived from them.
LIMITS = {"TASKBOARD_DB_CONNECT_TIMEOUT": "2", "TASKBOARD_DB_STATEMENT_TIMEOUT_MS": "1000"}
# A statement's answer awaited 0.1 s + the connect timeout: the tests that
# wait for one to be given up stay short.
QUICK_STATEMENTS = {**LIMITS, "TASKBOARD_DB_STATEMENT_TIMEOUT_MS": "100"}
# Seconds a request costs beyond its waits for the database (gunicorn,
# Flask, the proxy's threads) on a busy machine.
SLACK = 1.0
# gunicorn's sync workers, one client thread each: no request queues for a
# worker, so a request's time is the app's own.
WORKERS = 3
PAUSE = 0.02  # seconds between a thread's requests
MAX_PER_THREAD = 1000

_names = itertools.count(1)


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int | None  # None: no answer (error)
    error: str | None = None
    task_id: int | None = None

    @property
    def took(self) -> float:
        return self.ended - self.started


@pytest.fixture
def database(pg: PostgresServer) -> str:
    """A migrated database of the test's own: its name."""
    name = f"failover_{os.getpid()}_{next(_names)}"
    migrate(pg.create_database(name))
    return name


@pytest.fixture
def proxy(pg: PostgresServer) -> Iterator[BlackHoleProxy]:
    with BlackHoleProxy(pg.port) as running:
        yield running


def proxied_url(proxy: BlackHoleProxy, database: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/{database}"


def timed(call: Callable[[], TestResponse]) -> tuple[TestResponse, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def limits_of(url: str) -> WaitLimits:
    return wait_limits(settings_for(url, **LIMITS))


def stored_ids(pg: PostgresServer, database: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are in the tasks table, read past the app and the proxy."""
    conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM tasks WHERE id = ANY(%s)", (ids,))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


# --- one connection, in process ----------------------------------------------


def test_connections_carry_the_kernels_limits(pg, database):
    """tcp_user_timeout and the keepalives are set on the socket itself."""
    settings = settings_for(
        pg.url_for(database),
        TASKBOARD_DB_TCP_USER_TIMEOUT_MS="4500",
        TASKBOARD_DB_KEEPALIVES_IDLE="7",
        TASKBOARD_DB_KEEPALIVES_INTERVAL="3",
        TASKBOARD_DB_KEEPALIVES_COUNT="4",
    )
    engine = make_engine(settings)
    try:
        raw = engine.raw_connection()
        try:
            fd = raw.dbapi_connection.fileno()  # type: ignore[union-attr]
            with socket.socket(fileno=os.dup(fd)) as sock:
                options = {
                    name: sock.getsockopt(level, option)
                    for name, level, option in (
                        ("keepalive", socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                        ("user_timeout", socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                        ("idle", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                        ("interval", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                        ("count", socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    )
                }
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert options == {"keepalive": 1, "user_timeout": 4500, "idle": 7, "interval": 3, "count": 4}


def test_statement_in_flight_on_a_black_holed_connection_is_given_up(proxy, database):
    url = proxied_url(proxy, database)
    settings = settings_for(url, **QUICK_STATEMENTS)
    limits = wait_limits(settings)
    assert limits.statement is not None
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
            proxy.black_hole()
            started = time.monotonic()
            with pytest.raises(OperationalError, match="no answer from the database"):
                conn.execute(text("SELECT 2"))
            took = time.monotonic() - started
            assert conn.invalidated
    finally:
        engine.dispose()
    assert limits.statement <= took <= limits.statement + SLACK


def test_an_answer_stands_when_the_database_goes_away_before_the_rollback(proxy, database):
    """The rollback that ends a read waits (bounded) and fails: the read
    was answered, the request stays a success."""
    url = proxied_url(proxy, database)
    limits = wait_limits(settings_for(url, **QUICK_STATEMENTS))
    assert limits.statement is not None
    app = create_app(env={"DATABASE_URL": url, **QUICK_STATEMENTS})

    @app.teardown_appcontext
    def _go_away(_exc: BaseException | None) -> None:
        proxy.black_hole()  # Flask runs it before the session's close

    try:
        listed, took = timed(lambda: app.test_client().get("/api/tasks"))
    finally:
        app.extensions[EXT_KEY].engine.dispose()
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert listed.get_json()["items"] == []
    assert limits.statement <= took <= limits.statement + SLACK


def test_pooled_connection_to_the_old_host_is_replaced_without_an_error(pg, proxy, database):
    url = proxied_url(proxy, database)
    limits = limits_of(url)
    app = create_app(env={"DATABASE_URL": url, **LIMITS})
    try:
        client = app.test_client()
        created = client.post("/api/tasks", json={"title": "before the failover"})
        assert created.status_code == 201
        proxy.black_hole()  # the pooled connection now goes nowhere...
        proxy.move_to(pg.port)  # ...and the new host answers
        started = time.monotonic()
        listed = client.get("/api/tasks")
        took = time.monotonic() - started
    finally:
        app.extensions[EXT_KEY].engine.dispose()
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [t["id"] for t in listed.get_json()["items"]] == [created.get_json()["id"]]
    # the ping waited for the old host, the reconnect took the rest
    assert limits.ping <= took <= limits.connect + SLACK


def test_after_a_connection_attempt_without_answer_requests_fail_at_once(pg, proxy, database):
    """The backoff: no new attempt for a moment, then one succeeds."""
    url = proxied_url(proxy, database)
    limits = limits_of(url)
    proxy.black_hole()
    app = create_app(env={"DATABASE_URL": url, **LIMITS})
    try:
        client = app.test_client()
        first, first_took = timed(lambda: client.get("/api/tasks"))
        second, second_took = timed(lambda: client.get("/api/tasks"))
        proxy.move_to(pg.port)
        time.sleep(limits.backoff)
        third = client.get("/api/tasks")
    finally:
        app.extensions[EXT_KEY].engine.dispose()
    assert first.status_code == 503
    assert limits.connect <= first_took <= limits.connect + SLACK
    assert second.status_code == 503
    assert second_took < limits.backoff
    assert third.status_code == 200, third.get_data(as_text=True)


# --- under load, through gunicorn ---------------------------------------------


class RequestLoop:
    """``threads`` clients, each a POST then a GET /api/tasks in turn until
    stop(), MAX_PER_THREAD requests or ``max_seconds``; every answer kept."""

    def __init__(self, url: str, threads: int, timeout: float, max_seconds: float) -> None:
        self.url, self.timeout, self.max_seconds = url, timeout, max_seconds
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> RequestLoop:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        with self._lock:
            return sorted(self.answers, key=lambda a: a.started)

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        for n in range(MAX_PER_THREAD):
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            answer = self._request(session, write=n % 2 == 0)
            with self._lock:
                self.answers.append(answer)
            time.sleep(PAUSE)

    def _request(self, session: requests.Session, write: bool) -> Answer:
        started = time.monotonic()
        try:
            if write:
                r = session.post(f"{self.url}/api/tasks", json={"title": "t"}, timeout=self.timeout)
            else:
                r = session.get(f"{self.url}/api/tasks?limit=5", timeout=self.timeout)
        except requests.RequestException as exc:
            return Answer(started, time.monotonic(), None, f"{type(exc).__name__}: {exc}")
        task_id = r.json()["id"] if r.status_code == 201 else None
        return Answer(started, time.monotonic(), r.status_code, None, task_id)


@dataclass(frozen=True)
class Phases:
    """The answers by when they started: before the black hole, in flight
    when it began, during it, after the new host answered, and once every
    attempt begun before that (connect timeout) and its backoff were over."""

    before: list[Answer]
    in_flight: list[Answer]
    during: list[Answer]
    after: list[Answer]
    settled: list[Answer]

    @classmethod
    def split(
        cls, answers: list[Answer], black_hole: float, moved: float, settled: float
    ) -> Phases:
        return cls(
            before=[a for a in answers if a.ended < black_hole],
            in_flight=[a for a in answers if a.started < black_hole <= a.ended],
            during=[a for a in answers if black_hole <= a.started < moved],
            after=[a for a in answers if moved <= a.started < settled],
            settled=[a for a in answers if a.started >= settled],
        )


def ok(answer: Answer) -> bool:
    return answer.status in (200, 201)


def report(phases: Phases, black_hole: float, moved: float) -> None:
    """The figures: how many requests when, how fast the 503s, the recovery."""
    later = phases.in_flight + phases.during + phases.after + phases.settled
    refused = sorted(a.took for a in later if a.status == 503)
    last_503 = max((a.ended for a in later if a.status == 503), default=moved) - moved
    first_ok = min((a.ended for a in phases.after + phases.settled if ok(a)), default=moved)
    print(
        f"requests: {len(phases.before)} before, {len(phases.in_flight)} in flight, "
        f"{len(phases.during)} during the black hole ({moved - black_hole:.1f} s), "
        f"{len(phases.after) + len(phases.settled)} after; {len(refused)} answered 503 in "
        f"{refused[0]:.3f}-{refused[-1]:.2f} s (median {refused[len(refused) // 2]:.3f} s); "
        f"the last 503 {last_503:+.2f} s from the move, the first success after it "
        f"{first_ok - moved:+.2f} s"
    )


def test_black_holed_database_gives_fast_503s_then_recovers(pg, proxy, database, tmp_path):
    url = proxied_url(proxy, database)
    limits = limits_of(url)
    assert limits.statement is not None
    checkout_bound = limits.connect + SLACK  # a request that finds the database gone
    in_flight_bound = limits.statement + SLACK  # a statement sent before it went
    # long enough for attempts and backoffs in every worker; after the move,
    # for the last attempts at the old host and a while past them
    black_for, after_for = 2 * limits.connect, limits.connect + 2 * limits.backoff
    with GunicornServer(
        url, tmp_path / "gunicorn.log", TASKBOARD_WORKERS=str(WORKERS), **LIMITS
    ) as server:
        load = RequestLoop(
            server.url, WORKERS, timeout=2 * in_flight_bound, max_seconds=black_for + after_for + 10
        ).start()
        time.sleep(1.0)
        black_hole = time.monotonic()
        proxy.black_hole()
        time.sleep(black_for)
        moved = time.monotonic()
        proxy.move_to(pg.port)
        time.sleep(after_for)
        answers = load.stop()
    phases = Phases.split(answers, black_hole, moved, moved + limits.connect + limits.backoff)
    report(phases, black_hole, moved)
    # no other status, no request without an answer
    assert [a for a in answers if a.status != 503 and not ok(a)] == []
    assert phases.before
    assert all(ok(a) for a in phases.before)
    assert all(a.took <= in_flight_bound for a in phases.in_flight), phases.in_flight
    # while black-holed: 503 within the checkout's limit, most at once (the
    # backoff); a success only for a request that connected after the move
    refused = [a for a in phases.during if a.status == 503]
    assert len(refused) >= WORKERS
    assert all(a.status == 503 or a.ended >= moved for a in phases.during)
    assert max(a.took for a in phases.during + phases.after) <= checkout_bound
    assert len([a for a in refused if a.took < limits.backoff]) > len(refused) // 2
    # the new host answers: once the last attempts at the old one are over,
    # every request succeeds
    assert phases.settled
    assert all(ok(a) for a in phases.settled), phases.settled
    created = [a.task_id for a in answers if a.task_id is not None]
    assert len(created) >= len(phases.before) // 2
    assert stored_ids(pg, database, created) == set(created)
