"""Operations endpoints, request ids, JSON logs, proxy headers, the static page."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from pgserver import free_port
from taskboard import __version__, create_app
from taskboard.db import EXT_KEY
from taskboard.logs import JsonFormatter


@pytest.fixture
def unreachable_app():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(env={"DATABASE_URL": url, "TASKBOARD_DB_CONNECT_TIMEOUT": "1"})
    yield app
    app.extensions[EXT_KEY].engine.dispose()


def test_healthz_never_touches_the_database(unreachable_app):
    client = unreachable_app.test_client()
    started = time.monotonic()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert time.monotonic() - started < 1.0
    assert unreachable_app.extensions[EXT_KEY].engine.pool.checkedout() == 0


def test_readyz_when_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["revision"]


def test_readyz_when_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database unreachable"}


def test_api_answers_503_json_when_the_database_is_unreachable(unreachable_app):
    started = time.monotonic()
    response = unreachable_app.test_client().get("/api/tasks")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["error"]["status"] == 503


def test_version(db_url):
    env = {"DATABASE_URL": db_url, "TASKBOARD_RELEASE": "2.0.1", "TASKBOARD_GIT_COMMIT": "deadbee"}
    app = create_app(env=env)
    body = app.test_client().get("/version").get_json()
    app.extensions[EXT_KEY].engine.dispose()
    assert body["version"] == "2.0.1"
    assert body["commit"] == "deadbee"
    assert body["hostname"]


def test_version_defaults_to_the_package(client):
    body = client.get("/version").get_json()
    assert body["version"] == __version__
    assert body["commit"] == "unknown"


def test_request_id_is_taken_or_generated(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "lb-1.2_x"}).headers["X-Request-ID"]
        == "lb-1.2_x"
    )
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/healthz").headers["X-Request-ID"] != generated
    # anything that could forge log lines or headers is replaced
    for bad in ("a b", "x" * 129, 'evil"}'):
        rid = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert rid != bad
        assert len(rid) == 32


def test_errors_carry_the_request_id(client):
    response = client.get("/api/tasks/x", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "req-42"


def test_json_log_lines_carry_the_request_id(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("taskboard.access")
    logger.addHandler(handler)
    try:
        client.post("/api/tasks", json={"title": "logged"}, headers={"X-Request-ID": "log-7"})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "log-7"
    assert line["method"] == "POST"
    assert line["path"] == "/api/tasks"
    assert line["status"] == 201
    assert line["level"] == "INFO"
    assert isinstance(line["duration_ms"], float)


def _remote_addr(caplog, app, **headers):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taskboard.access"):
        app.test_client().get(
            "/version", environ_base={"REMOTE_ADDR": "10.0.2.15"}, headers=headers
        )
    records = [r for r in caplog.records if r.name == "taskboard.access"]
    return records[-1].remote_addr


@pytest.mark.parametrize(("hops", "expected"), [("0", "10.0.2.15"), ("2", "203.0.113.9")])
def test_proxy_hops(db_url, caplog, hops, expected):
    app = create_app(env={"DATABASE_URL": db_url, "TASKBOARD_PROXY_HOPS": hops})
    # client -> nginx (adds the client) -> internal ALB (adds nginx) -> app
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.1.7"}
    try:
        assert _remote_addr(caplog, app, **forwarded) == expected
    finally:
        app.extensions[EXT_KEY].engine.dispose()


def test_static_page_only_in_run_alone_mode(db_url):
    plain = create_app(env={"DATABASE_URL": db_url})
    alone = create_app(env={"DATABASE_URL": db_url, "TASKBOARD_SERVE_STATIC": "1"})
    try:
        assert plain.test_client().get("/").status_code == 404
        assert plain.test_client().get("/app.js").status_code == 404
        client = alone.test_client()
        page = client.get("/")
        assert page.status_code == 200
        assert page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert 'src="app.js"' in html
        assert 'href="style.css"' in html
        script = client.get("/app.js")
        assert script.status_code == 200
        assert "/api/tasks" in script.get_data(as_text=True)
        assert client.get("/style.css").mimetype == "text/css"
        assert client.get("/config.py").status_code == 404
        assert client.get("/../app.py").status_code == 404
    finally:
        for app in (plain, alone):
            app.extensions[EXT_KEY].engine.dispose()


def test_openapi_documents_every_api_route(app, client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["version"] == __version__
    documented = {
        (path.replace("{id}", "<task_id>"), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "openapi_json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served
