"""The schema comes from the migrations: up from empty to head, and back down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import settings_for
from sqlalchemy import inspect
from taskboard import create_app, migrations
from taskboard.db import EXT_KEY, make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/empty.sqlite"
    return request.getfixturevalue("pg_empty_url")


def test_up_from_empty_to_head_and_back_down(empty_url):
    engine = make_engine(settings_for(empty_url), for_migrations=True)
    try:
        assert inspect(engine).get_table_names() == []
        migrations.upgrade(engine)
        insp = inspect(engine)
        assert set(insp.get_table_names()) == {"alembic_version", "tasks"}
        columns = {c["name"]: c for c in insp.get_columns("tasks")}
        assert set(columns) == {"id", "title", "notes", "done", "created_at", "updated_at"}
        assert not columns["title"]["nullable"]
        assert columns["notes"]["nullable"]
        assert "ix_tasks_done_id" in {i["name"] for i in insp.get_indexes("tasks")}
        with engine.connect() as conn:
            current, head = migrations.revisions(conn)
        assert current == head == migrations.head()

        migrations.downgrade(engine, "base")
        assert inspect(engine).get_table_names() == ["alembic_version"]
        with engine.connect() as conn:
            assert migrations.revisions(conn)[0] is None

        # and up again: the downgrade left nothing behind that breaks it
        migrations.upgrade(engine)
        assert "tasks" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_models_match_the_migrations(empty_url):
    """alembic autogenerate finds nothing to add: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from taskboard.models import Base

    engine = make_engine(settings_for(empty_url), for_migrations=True)
    try:
        migrations.upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_app_never_creates_the_schema(empty_url):
    app = create_app(env={"DATABASE_URL": empty_url})
    try:
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "expected" in ready.get_json()["reason"]
        # no table: the request fails as a server-side problem, the schema stays absent
        engine = app.extensions[EXT_KEY].engine
        assert "tasks" not in inspect(engine).get_table_names()
    finally:
        app.extensions[EXT_KEY].engine.dispose()


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("taskboard-migrate")
    env = {k: v for k, v in os.environ.items() if k != "TASKBOARD_DB_SECRET_ID"}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_taskboard_migrate_console_script(pg_empty_url):
    """The whole command set, on PostgreSQL (the CLI is the same on SQLite)."""
    empty_url = pg_empty_url
    check = run_cli(empty_url, "check")
    assert check.returncode == 1, check.stderr
    assert "not at head" in check.stdout
    assert run_cli(empty_url, "current").stdout.strip() == "base"

    up = run_cli(empty_url)  # upgrade is the default
    assert up.returncode == 0, up.stderr
    head = migrations.head()
    assert up.stdout.strip() == head
    assert run_cli(empty_url, "check").returncode == 0
    assert run_cli(empty_url, "upgrade").returncode == 0  # again: a no-op

    down = run_cli(empty_url, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert run_cli(empty_url, "check").returncode == 1

    bad = run_cli(empty_url, "downgrade", "nosuchrev")
    assert bad.returncode == 2
    assert "nosuchrev" in bad.stderr


def test_taskboard_migrate_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    assert run_cli(url, "upgrade").returncode == 0
    assert run_cli(url, "check").returncode == 0


def test_taskboard_migrate_reports_an_unreachable_database():
    from pgserver import free_port

    result = run_cli(f"postgresql://postgres@127.0.0.1:{free_port()}/x", "check")
    assert result.returncode == 3
    assert "database error" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_migrations_on_postgresql_are_serialised(pg, pg_empty_url):
    """Instances starting a release together: they queue on one lock; all succeed."""
    import time

    import psycopg2
    from taskboard.migrations import MIGRATION_LOCK

    dbname = pg_empty_url.rsplit("/", 1)[1]
    holder = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=dbname)
    holder.autocommit = True
    exe = Path(sys.executable).with_name("taskboard-migrate")
    env = {k: v for k, v in os.environ.items() if k != "TASKBOARD_DB_SECRET_ID"}
    env["DATABASE_URL"] = pg_empty_url
    procs = []
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            procs = [
                subprocess.Popen(
                    [str(exe), "upgrade"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(3)
            ]
            deadline = time.monotonic() + 30
            waiting = 0
            while time.monotonic() < deadline and waiting < 3:
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                waiting = cur.fetchone()[0]
                time.sleep(0.1)
            assert waiting == 3, "the migrators did not queue on the migration lock"
            cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        results = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        holder.close()
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert run_cli(pg_empty_url, "check").returncode == 0
