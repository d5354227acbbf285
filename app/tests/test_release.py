"""The release artifacts: the wheel, and the service under gunicorn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import psycopg2
import pytest
import requests
from conftest import migrate
from gunicornserver import COMMAND, GunicornServer
from taskboard import __version__

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-wheel.sh"


def build(*args: str, dist: Path) -> Path:
    # into a directory of the test's own: the repository's dist/ is what
    # make up and the releases use (make test brings the fleet up meanwhile)
    result = subprocess.run(
        [str(BUILD), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "THREETIER_DIST_DIR": str(dist)},
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def test_wheel_carries_package_migrations_page_and_gunicorn_config(tmp_path):
    wheel = build(dist=tmp_path)
    assert wheel.name == f"taskboard-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in (
        "taskboard/app.py",
        "taskboard/gunicorn_conf.py",
        "taskboard/wsgi.py",
        "taskboard/migrations/env.py",
        "taskboard/migrations/script.py.mako",
        "taskboard/migrations/versions/0001_create_tasks.py",
        "taskboard/static/index.html",
        "taskboard/static/app.js",
        "taskboard/static/style.css",
    ):
        assert member in names, member
    assert not any("tests/" in n or "__pycache__" in n for n in names)
    meta = zipfile.ZipFile(wheel).read(f"taskboard-{__version__}.dist-info/METADATA").decode()
    assert "Requires-Python: >=3.11" in meta
    entry = zipfile.ZipFile(wheel).read(f"taskboard-{__version__}.dist-info/entry_points.txt")
    assert b"taskboard-migrate = taskboard.migrate:main" in entry

    # installed on its own (not the source tree), it migrates and serves
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = (
        "import taskboard, taskboard.migrations as m, sys; "
        "assert taskboard.__file__.startswith(sys.argv[1]), taskboard.__file__; "
        "from taskboard.migrate import main; rc = main(['upgrade']); "
        "app = taskboard.create_app(); c = app.test_client(); "
        "assert c.get('/readyz').status_code == 200; "
        "assert c.post('/api/tasks', json={'title': 'x'}).status_code == 201; sys.exit(rc)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.sqlite",
    }
    env.pop("TASKBOARD_DB_SECRET_ID", None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_wheel_of_another_version_leaves_the_tree_alone(tmp_path):
    source = REPO / "app" / "src" / "taskboard" / "_version.py"
    before = source.read_bytes()
    wheel = build("9.8.7rc1", dist=tmp_path)
    try:
        assert wheel.name == "taskboard-9.8.7rc1-py3-none-any.whl"
        inside = zipfile.ZipFile(wheel).read("taskboard/_version.py").decode()
        assert '__version__ = "9.8.7rc1"' in inside
        assert source.read_bytes() == before
    finally:
        wheel.unlink()


def test_wheel_refuses_a_bad_version():
    result = subprocess.run(
        [str(BUILD), "1.0; rm -rf /"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "not a release version" in result.stderr


# --- gunicorn ----------------------------------------------------------------


@pytest.fixture
def gunicorn(pg, tmp_path):
    url = pg.create_database(f"gunicorn_{os.getpid()}_{time.monotonic_ns()}")
    migrate(url)
    with GunicornServer(
        url,
        tmp_path / "gunicorn.log",
        TASKBOARD_WORKERS="2",
        TASKBOARD_MAX_BODY_BYTES="2048",
        TASKBOARD_GRACEFUL_TIMEOUT="10",
    ) as server:
        yield server


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_gunicorn_serves_with_config_as_code(gunicorn):
    proc, base, log = gunicorn.proc, gunicorn.url, gunicorn.log
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    created = requests.post(
        f"{base}/api/tasks",
        json={"title": "under gunicorn"},
        timeout=5,
        headers={"X-Request-ID": "gunicorn-1"},
    )
    assert created.status_code == 201
    assert created.headers["X-Request-ID"] == "gunicorn-1"
    # the master forks its workers one by one, up to 0.1 s apart: the first
    # may answer before the second exists (bounded wait, then no third)
    deadline = time.monotonic() + 10
    while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(children(proc.pid)) == 2

    # a chunked body (no Content-Length) past the limit is still refused
    def chunks():
        for _ in range(8):
            yield b'{"title": "' + b"x" * 512

    too_big = requests.post(
        f"{base}/api/tasks",
        data=chunks(),
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["status"] == 413
    assert requests.get(f"{base}/api/tasks", timeout=5).json()["total"] == 1
    chunked = requests.post(
        f"{base}/api/tasks",
        data=iter([b'{"title": ', b'"chunked"}']),
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 201, chunked.text
    assert chunked.json()["title"] == "chunked"

    # the log is JSON lines, request lines with the request id
    time.sleep(0.2)
    # every line is JSON: the app's and gunicorn's own
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    assert any(x["logger"] == "gunicorn.error" for x in lines)
    assert any(x.get("request_id") == "gunicorn-1" and x.get("status") == 201 for x in lines)


def test_gunicorn_finishes_requests_in_flight_on_sigterm(gunicorn, pg):
    proc, base, url = gunicorn.proc, gunicorn.url, gunicorn.database_url
    assert requests.post(f"{base}/api/tasks", json={"title": "t"}, timeout=5).status_code == 201
    dbname = url.rsplit("/", 1)[1]
    blocker = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=dbname)
    result: dict[str, object] = {}

    def slow_request():
        try:
            result["response"] = requests.get(f"{base}/api/tasks", timeout=15)
        except requests.RequestException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(1.0)  # the request is now waiting on the lock
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    finally:
        blocker.rollback()
        blocker.close()
    thread.join(timeout=15)
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert response.status_code == 200
    assert response.json()["total"] == 1
    assert proc.wait(timeout=15) == 0


def _conf(monkeypatch, **env: str):
    import importlib

    for name in ("TASKBOARD_BIND", "TASKBOARD_WORKERS", "TASKBOARD_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    # the configuration refuses a service without its database
    for name in ("TASKBOARD_DB_SECRET_ID", "TASKBOARD_DEVELOPMENT"):
        monkeypatch.delenv(name, raising=False)
    env.setdefault("DATABASE_URL", "sqlite://")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # imported after the environment is set: the module checks it on import
    import taskboard.gunicorn_conf as conf

    return importlib.reload(conf)


def test_gunicorn_config_defaults(monkeypatch):
    conf = _conf(monkeypatch)
    assert conf.bind == "0.0.0.0:5000"
    assert conf.workers == len(os.sched_getaffinity(0)) * 2 + 1
    assert conf.graceful_timeout > 0
    assert conf.max_requests > 0
    assert 0 < conf.max_requests_jitter < conf.max_requests
    assert conf.timeout > conf.graceful_timeout


def test_gunicorn_config_refuses_a_service_without_its_database(monkeypatch):
    with pytest.raises(SystemExit, match=r"TASKBOARD_DB_SECRET_ID.*DATABASE_URL"):
        _conf(monkeypatch, DATABASE_URL="")
    assert _conf(monkeypatch, DATABASE_URL="", TASKBOARD_DEVELOPMENT="1").bind == "0.0.0.0:5000"
    assert _conf(monkeypatch, DATABASE_URL="", TASKBOARD_DB_SECRET_ID="arn:x").bind
    _conf(monkeypatch)


def test_gunicorn_without_its_database_exits_at_start_and_never_listens(tmp_path):
    """As an app image boots before its user data: gunicorn must not serve."""
    server = GunicornServer("", tmp_path / "gunicorn.log")
    server.env.pop("DATABASE_URL")
    server.env.pop("TASKBOARD_DEVELOPMENT", None)
    with server.log.open("wb") as out:
        proc = subprocess.Popen(COMMAND, env=server.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = server.log_tail()
    assert status != 0, log
    assert "TASKBOARD_DB_SECRET_ID" in log
    assert "DATABASE_URL" in log
    # it exited in the master, before binding: no worker, no listener
    assert "Listening at" not in log
    assert "Booting worker" not in log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/healthz", timeout=2)


def test_gunicorn_config_from_env(monkeypatch):
    conf = _conf(monkeypatch, TASKBOARD_BIND="127.0.0.1:6000", TASKBOARD_WORKERS="3")
    assert (conf.bind, conf.workers) == ("127.0.0.1:6000", 3)
    with pytest.raises(SystemExit, match="TASKBOARD_WORKERS"):
        _conf(monkeypatch, TASKBOARD_WORKERS="many")
    with pytest.raises(SystemExit, match="TASKBOARD_WORKERS"):
        _conf(monkeypatch, TASKBOARD_WORKERS="0")
    _conf(monkeypatch)
