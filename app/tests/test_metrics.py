"""The metrics endpoint: by route and status, only on its own port, summed over workers."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import migrate
from flask import Flask
from gunicornserver import GunicornServer
from pgserver import PostgresServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from taskboard import create_app
from taskboard.config import ConfigError, Settings
from taskboard.db import EXT_KEY

METRICS_PORT = 9107
SERVICE = "http://localhost"
METRICS = f"http://localhost:{METRICS_PORT}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (parsing checks the format)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def count(found: dict, route: str, method: str, status: int) -> float:
    key = (
        "taskboard_http_requests_total",
        (("method", method), ("route", route), ("status", str(status))),
    )
    return found.get(key, 0.0)


@pytest.fixture
def metrics_app(pg_migrated_url: str) -> Iterator[Flask]:
    app = create_app(
        env={"DATABASE_URL": pg_migrated_url, "TASKBOARD_METRICS_PORT": str(METRICS_PORT)}
    )
    yield app
    app.extensions[EXT_KEY].engine.dispose()


def test_requests_counted_and_timed_by_route_and_status(metrics_app):
    client = metrics_app.test_client()
    created = client.post(f"{SERVICE}/api/tasks", json={"title": "measured"})
    assert created.status_code == 201
    task = created.get_json()["id"]
    assert client.get(f"{SERVICE}/api/tasks/{task}").status_code == 200
    assert client.get(f"{SERVICE}/api/tasks/{task + 1000}").status_code == 404
    assert client.post(f"{SERVICE}/api/tasks", json={}).status_code == 422
    assert client.get(f"{SERVICE}/no/such/{task}").status_code == 404
    assert client.get(f"{SERVICE}/healthz").status_code == 200

    scrape = client.get(f"{METRICS}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    found = samples(scrape.get_data(as_text=True))
    # the URL rule, not the path: two ids share one series
    assert count(found, "/api/tasks/<task_id>", "GET", 200) == 1
    assert count(found, "/api/tasks/<task_id>", "GET", 404) == 1
    assert count(found, "/api/tasks", "POST", 201) == 1
    assert count(found, "/api/tasks", "POST", 422) == 1
    assert count(found, "<unmatched>", "GET", 404) == 1
    assert count(found, "/healthz", "GET", 200) == 1
    routes = {v for _, labels in found for k, v in labels if k == "route"}
    assert routes == {"/api/tasks", "/api/tasks/<task_id>", "<unmatched>", "/healthz"}
    # the histogram: cumulative buckets up to +Inf, count and a positive sum
    labels = (("method", "POST"), ("route", "/api/tasks"), ("status", "201"))
    hist = "taskboard_http_request_duration_seconds"
    assert found[(f"{hist}_count", labels)] == 1
    assert found[(f"{hist}_sum", labels)] > 0
    assert found[(f"{hist}_bucket", (("le", "+Inf"), *labels))] == 1
    # scrapes themselves are not requests of the service
    again = samples(client.get(f"{METRICS}/metrics").get_data(as_text=True))
    assert not [k for k in again if ("route", "/metrics") in k[1]]


def test_metrics_only_on_the_metrics_port_and_nothing_else_there(metrics_app):
    client = metrics_app.test_client()
    assert client.get(f"{SERVICE}/metrics").status_code == 404
    assert client.get(f"{SERVICE}:5000/metrics").status_code == 404
    for path in ("/healthz", "/api/tasks", "/version", "/metrics/", "/"):
        response = client.get(f"{METRICS}{path}")
        assert response.status_code == 404, path
        assert response.get_json()["error"]["status"] == 404
    refused = client.post(f"{METRICS}/metrics")
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET, HEAD"
    assert client.head(f"{METRICS}/metrics").status_code == 200


def test_no_metrics_port_no_metrics(pg_migrated_url):
    app = create_app(env={"DATABASE_URL": pg_migrated_url})
    try:
        client = app.test_client()
        assert client.get(f"{SERVICE}/metrics").status_code == 404
        assert client.get(f"{METRICS}/metrics").status_code == 404
    finally:
        app.extensions[EXT_KEY].engine.dispose()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKBOARD_METRICS_PORT": "http"}, "TASKBOARD_METRICS_PORT must be an integer"),
        ({"TASKBOARD_METRICS_PORT": "70000"}, "TASKBOARD_METRICS_PORT must be between 0 and"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/x"}, "PROMETHEUS_MULTIPROC_DIR"),
    ],
)
def test_bad_metrics_settings_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"DATABASE_URL": "sqlite://", **env})


# --- under gunicorn, two workers ----------------------------------------------


@pytest.fixture
def served(pg: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    url = pg.create_database(f"metrics_{os.getpid()}_{time.monotonic_ns()}")
    migrate(url)
    metrics_port = free_port()
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    (multiproc / "counter_99999999.db").write_bytes(b"stale")  # an earlier run's values
    with GunicornServer(
        url,
        tmp_path / "gunicorn.log",
        TASKBOARD_METRICS_PORT=str(metrics_port),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        TASKBOARD_WORKERS="2",
    ) as server:
        yield server.url, f"http://127.0.0.1:{metrics_port}", multiproc


def test_gunicorn_two_workers_counts_add_up(served):
    base, metrics, multiproc = served
    assert not (multiproc / "counter_99999999.db").exists()  # emptied at start
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 404
    assert requests.get(f"{metrics}/healthz", timeout=5).status_code == 404
    # the Host header does not choose the listener
    spoofed = requests.get(
        f"{base}/metrics", headers={"Host": metrics.removeprefix("http://")}, timeout=5
    )
    assert spoofed.status_code == 404

    def get(_: int) -> int:
        return requests.get(f"{base}/healthz", timeout=5).status_code

    # concurrent requests until both workers have answered some (bounded)
    sent = 0
    pids: set[str] = set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(20):
            assert set(pool.map(get, range(20))) == {200}
            sent += 20
            pids = {re.sub(r"\D", "", p.name) for p in multiproc.glob("counter_*.db")}
            if len(pids) >= 2:
                break
    assert len(pids) == 2, f"one worker answered all {sent} requests"

    # each scrape is answered by one worker; every one sees all the counts
    for _ in range(4):
        scrape = requests.get(f"{metrics}/metrics", timeout=5)
        assert scrape.status_code == 200
        found = samples(scrape.text)
        assert count(found, "/healthz", "GET", 200) == sent
        assert count(found, "<unmatched>", "GET", 404) == 2  # /metrics on the service port
        hist = "taskboard_http_request_duration_seconds_count"
        labels = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
        assert found[(hist, labels)] == sent


# --- the gunicorn configuration ------------------------------------------------


def _conf(monkeypatch, **env: str):
    import importlib

    for name in ("TASKBOARD_BIND", "TASKBOARD_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # the configuration refuses a service without its database
    for name in ("TASKBOARD_DB_SECRET_ID", "TASKBOARD_DEVELOPMENT"):
        monkeypatch.delenv(name, raising=False)
    env.setdefault("DATABASE_URL", "sqlite://")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # imported after the environment is set: the module checks it on import
    import taskboard.gunicorn_conf as conf

    return importlib.reload(conf)


def test_gunicorn_config_binds_the_metrics_port_and_empties_its_directory(monkeypatch, tmp_path):
    try:
        conf = _conf(
            monkeypatch,
            TASKBOARD_BIND="[::1]:6000",
            TASKBOARD_METRICS_PORT="6001",
            XDG_RUNTIME_DIR=str(tmp_path),
        )
        assert conf.bind == ["[::1]:6000", "[::1]:6001"]
        # the per-service directory, in the master's environment for the workers
        where = tmp_path / "taskboard-metrics"
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(where)
        (where / "counter_1.db").write_bytes(b"old")
        (where / "keep.txt").write_text("not ours")
        conf.on_starting(None)
        assert sorted(p.name for p in where.iterdir()) == ["keep.txt"]

        for bad, message in (("x", "port number"), ("65536", "between 0 and 65535")):
            with pytest.raises(SystemExit, match=message):
                _conf(monkeypatch, TASKBOARD_METRICS_PORT=bad)
        with pytest.raises(SystemExit, match="must differ from the service port"):
            _conf(monkeypatch, TASKBOARD_BIND="127.0.0.1:7000", TASKBOARD_METRICS_PORT="7000")
        with pytest.raises(SystemExit, match="TCP TASKBOARD_BIND"):
            _conf(monkeypatch, TASKBOARD_BIND="unix:/run/x.sock", TASKBOARD_METRICS_PORT="7001")
        assert _conf(monkeypatch, TASKBOARD_METRICS_PORT="0").bind == "0.0.0.0:5000"
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    finally:
        monkeypatch.undo()
        _conf(monkeypatch)
        monkeypatch.undo()
