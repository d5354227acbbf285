"""A database outage: fast 503 JSON, no hanging worker, recovery without a restart."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import psycopg2
import pytest
from conftest import migrate
from pgserver import PostgresServer
from taskboard import create_app
from taskboard.db import EXT_KEY


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A server of this module's own: stopping it disturbs no other test."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def outage_app(own_pg):
    url = own_pg.url_for("postgres")
    migrate(url)
    app = create_app(
        env={
            "DATABASE_URL": url,
            "TASKBOARD_DB_CONNECT_TIMEOUT": "2",
            "TASKBOARD_DB_STATEMENT_TIMEOUT_MS": "500",
        }
    )
    yield app
    app.extensions[EXT_KEY].engine.dispose()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_outage_gives_fast_503_and_recovers_without_restart(own_pg, outage_app):
    client = outage_app.test_client()
    created = client.post("/api/tasks", json={"title": "survives the outage"})
    assert created.status_code == 201
    task_id = created.get_json()["id"]
    assert client.get("/readyz").status_code == 200

    own_pg.stop("fast")
    try:
        for call in (
            lambda: client.get("/api/tasks"),
            lambda: client.get(f"/api/tasks/{task_id}"),
            lambda: client.post("/api/tasks", json={"title": "lost"}),
            lambda: client.patch(f"/api/tasks/{task_id}", json={"done": True}),
        ):
            response, took = timed(call)
            assert response.status_code == 503, response.get_data(as_text=True)
            assert took < 2.0
            error = response.get_json()["error"]
            assert error["status"] == 503
            assert "database" in error["message"]
        ready, took = timed(lambda: client.get("/readyz"))
        assert ready.status_code == 503
        assert took < 2.0
        # liveness stays green: an outage must not take the fleet out of the LB
        assert client.get("/healthz").status_code == 200
    finally:
        own_pg.start()

    # the very next request works: broken pooled connections were replaced
    listed = client.get("/api/tasks")
    assert listed.status_code == 200
    assert [t["title"] for t in listed.get_json()["items"]] == ["survives the outage"]
    assert client.get("/readyz").status_code == 200
    assert client.patch(f"/api/tasks/{task_id}", json={"done": True}).status_code == 200


def test_statement_timeout_bounds_a_blocked_query(own_pg, outage_app):
    client = outage_app.test_client()
    assert client.get("/api/tasks").status_code == 200
    blocker = psycopg2.connect(host="127.0.0.1", port=own_pg.port, user="postgres")
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        response, took = timed(lambda: client.get("/api/tasks"))
        assert response.status_code == 503
        assert took < 2.0
    finally:
        blocker.rollback()
        blocker.close()
    assert client.get("/api/tasks").status_code == 200


def test_connect_timeout_bounds_a_silent_server():
    """A host that accepts TCP but never answers (a black hole) is given up on."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        app = create_app(
            env={
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
                "TASKBOARD_DB_CONNECT_TIMEOUT": "2",
            }
        )
        try:
            response, took = timed(lambda: app.test_client().get("/api/tasks"))
        finally:
            app.extensions[EXT_KEY].engine.dispose()
    assert response.status_code == 503
    assert took < 4.0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_unmigrated_database_gives_503_not_500(backend, pg_empty_url, tmp_path):
    """Before the migrations run, the API says 'not ready' (503), never 500."""
    url = pg_empty_url if backend == "postgresql" else f"sqlite:///{tmp_path}/empty.sqlite"
    app = create_app(env={"DATABASE_URL": url})
    try:
        client = app.test_client()
        for response in (
            client.get("/api/tasks"),
            client.post("/api/tasks", json={"title": "too early"}),
            client.get("/api/tasks/1"),
        ):
            assert response.status_code == 503
            assert response.get_json()["error"]["message"].startswith("the database schema")
            assert response.headers["Retry-After"] == "5"
        assert client.get("/readyz").status_code == 503
        migrate(url)
        assert client.post("/api/tasks", json={"title": "after"}).status_code == 201
    finally:
        app.extensions[EXT_KEY].engine.dispose()
