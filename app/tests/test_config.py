"""Configuration from the environment, and credentials from a real Secrets
Manager API (moto server started here on 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pgserver import free_port, wait_for_port
from sqlalchemy import text
from taskboard import create_app
from taskboard.config import ConfigError, Settings, clear_secret_cache
from taskboard.db import EXT_KEY

REGION = "eu-west-1"


def test_without_a_database_the_start_is_refused(tmp_path):
    # an image booting before its user data named the database: no SQLite
    # fallback, whatever else is set, and nothing written
    for env in (
        {},
        {"DATABASE_URL": "  ", "TASKBOARD_DB_SECRET_ID": ""},
        {"TASKBOARD_DEVELOPMENT": "0", "TASKBOARD_PROXY_HOPS": "2"},
    ):
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env, instance_path=str(tmp_path))
        message = str(info.value)
        assert "TASKBOARD_DB_SECRET_ID" in message
        assert "DATABASE_URL" in message
        assert "TASKBOARD_DEVELOPMENT" in message
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app(env={})
    assert list(tmp_path.iterdir()) == []


def test_development_mode_must_be_a_boolean():
    with pytest.raises(ConfigError, match="TASKBOARD_DEVELOPMENT"):
        Settings.from_env({"TASKBOARD_DEVELOPMENT": "maybe"})


def test_development_mode_allows_the_sqlite_default(tmp_path):
    env = {"TASKBOARD_DEVELOPMENT": "1"}
    settings = Settings.from_env(env, instance_path=str(tmp_path))
    assert settings.development is True
    assert settings.database_source == "default"
    # a database that is named still wins in development mode
    named = Settings.from_env({**env, "DATABASE_URL": "postgresql://u@db/t"})
    assert named.database_source == "env"
    assert named.database_url.host == "db"


def test_the_app_in_development_mode_serves_from_its_sqlite_file(monkeypatch, tmp_path):
    from flask import Flask

    # the instance directory Flask gives the app, pointed at tmp_path
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(tmp_path / "inst"))
    monkeypatch.setenv("TASKBOARD_DEVELOPMENT", "1")
    for name in ("DATABASE_URL", "TASKBOARD_DB_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    from taskboard.migrate import main

    assert main(["upgrade"]) == 0
    app = create_app()
    try:
        client = app.test_client()
        assert client.post("/api/tasks", json={"title": "dev"}).status_code == 201
        assert client.get("/readyz").status_code == 200
    finally:
        app.extensions[EXT_KEY].engine.dispose()
    assert (tmp_path / "inst" / "taskboard.sqlite").is_file()


def test_defaults_of_the_development_mode(tmp_path):
    settings = Settings.from_env({"TASKBOARD_DEVELOPMENT": "yes"}, instance_path=str(tmp_path))
    assert settings.database_source == "default"
    assert settings.database_url.get_backend_name() == "sqlite"
    assert settings.database_url.database == str(tmp_path / "taskboard.sqlite")
    assert settings.proxy_hops == 0
    assert settings.serve_static is False
    assert settings.log_level == "INFO"
    assert settings.db_connect_timeout == 3
    assert settings.db_statement_timeout_ms == 5000
    assert settings.db_tcp_user_timeout_ms == 3000
    assert (
        settings.db_keepalives_idle,
        settings.db_keepalives_interval,
        settings.db_keepalives_count,
    ) == (5, 2, 3)
    assert settings.git_commit == "unknown"
    assert len(settings.secret_key) >= 32


def test_values_are_read():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p%40ss@db.internal:5433/tasks",
            "SECRET_KEY": "k",
            "TASKBOARD_LOG_LEVEL": "debug",
            "TASKBOARD_PROXY_HOPS": "2",
            "TASKBOARD_MAX_BODY_BYTES": "2048",
            "TASKBOARD_RELEASE": "1.2.3",
            "TASKBOARD_GIT_COMMIT": "abc1234",
            "TASKBOARD_SERVE_STATIC": "1",
            "TASKBOARD_DB_CONNECT_TIMEOUT": "5",
            "TASKBOARD_DB_STATEMENT_TIMEOUT_MS": "750",
            "TASKBOARD_DB_TCP_USER_TIMEOUT_MS": "4500",
            "TASKBOARD_DB_KEEPALIVES_IDLE": "7",
            "TASKBOARD_DB_KEEPALIVES_INTERVAL": "3",
            "TASKBOARD_DB_KEEPALIVES_COUNT": "4",
        }
    )
    url = settings.database_url
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "p@ss",
        "db.internal",
        5433,
        "tasks",
    )
    assert settings.database_source == "env"
    assert settings.secret_key == "k"
    assert settings.log_level == "DEBUG"
    assert settings.proxy_hops == 2
    assert settings.max_body_bytes == 2048
    assert (settings.release, settings.git_commit) == ("1.2.3", "abc1234")
    assert settings.serve_static is True
    assert (settings.db_connect_timeout, settings.db_statement_timeout_ms) == (5, 750)
    assert settings.db_tcp_user_timeout_ms == 4500
    assert (
        settings.db_keepalives_idle,
        settings.db_keepalives_interval,
        settings.db_keepalives_count,
    ) == (7, 3, 4)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TASKBOARD_PROXY_HOPS": "two"}, "TASKBOARD_PROXY_HOPS"),
        ({"TASKBOARD_PROXY_HOPS": "-1"}, "TASKBOARD_PROXY_HOPS"),
        ({"TASKBOARD_MAX_BODY_BYTES": "10"}, "TASKBOARD_MAX_BODY_BYTES"),
        ({"TASKBOARD_LOG_LEVEL": "LOUD"}, "TASKBOARD_LOG_LEVEL"),
        ({"TASKBOARD_SERVE_STATIC": "maybe"}, "TASKBOARD_SERVE_STATIC"),
        ({"TASKBOARD_DB_CONNECT_TIMEOUT": "0"}, "TASKBOARD_DB_CONNECT_TIMEOUT"),
        ({"TASKBOARD_DB_STATEMENT_TIMEOUT_MS": "x"}, "TASKBOARD_DB_STATEMENT_TIMEOUT_MS"),
        # 0 would turn the kernel's limit off
        ({"TASKBOARD_DB_TCP_USER_TIMEOUT_MS": "0"}, "TASKBOARD_DB_TCP_USER_TIMEOUT_MS"),
        ({"TASKBOARD_DB_TCP_USER_TIMEOUT_MS": "999"}, "TASKBOARD_DB_TCP_USER_TIMEOUT_MS"),
        ({"TASKBOARD_DB_KEEPALIVES_IDLE": "0"}, "TASKBOARD_DB_KEEPALIVES_IDLE"),
        ({"TASKBOARD_DB_KEEPALIVES_INTERVAL": "61"}, "TASKBOARD_DB_KEEPALIVES_INTERVAL"),
        ({"TASKBOARD_DB_KEEPALIVES_COUNT": "many"}, "TASKBOARD_DB_KEEPALIVES_COUNT"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u:secretpw@h/db"}, "DATABASE_URL"),
    ],
)
def test_bad_settings_stop_the_start_with_the_name(env, name):
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env(env)
    assert "secretpw" not in str(info.value)


PG = "postgresql://u@db.example.internal/taskboard"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKBOARD_DB_SSLMODE": "strict"}, "TASKBOARD_DB_SSLMODE must be one of"),
        # verifying needs the bundle to verify against
        ({"TASKBOARD_DB_SSLMODE": "verify-full"}, "verify-full needs TASKBOARD_DB_SSLROOTCERT"),
        ({"TASKBOARD_DB_SSLMODE": "verify-ca"}, "verify-ca needs TASKBOARD_DB_SSLROOTCERT"),
        # a bundle nobody reads
        ({"TASKBOARD_DB_SSLROOTCERT": "{ca}"}, "TASKBOARD_DB_SSLMODE is unset"),
        (
            {"TASKBOARD_DB_SSLMODE": "require", "TASKBOARD_DB_SSLROOTCERT": "{ca}"},
            "TASKBOARD_DB_SSLMODE is require",
        ),
        (
            {"TASKBOARD_DB_SSLMODE": "verify-full", "TASKBOARD_DB_SSLROOTCERT": "{missing}"},
            "TASKBOARD_DB_SSLROOTCERT: .* is not a readable file",
        ),
        (
            {"DATABASE_URL": "sqlite:///x.db", "TASKBOARD_DB_SSLMODE": "require"},
            "applies to PostgreSQL only",
        ),
    ],
)
def test_bad_tls_settings_stop_the_start(tmp_path, env, message):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here\n")
    paths = {"ca": str(ca), "missing": str(tmp_path / "nowhere.pem")}
    env = {"DATABASE_URL": PG} | {k: v.format(**paths) for k, v in env.items()}
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_tls_settings_reach_libpq(tmp_path):
    from taskboard.db import _libpq_args

    ca = tmp_path / "ca.pem"
    ca.write_text("bundle\n")
    env = {"DATABASE_URL": PG, "TASKBOARD_DB_SSLMODE": "verify-full"}
    settings = Settings.from_env({**env, "TASKBOARD_DB_SSLROOTCERT": str(ca)})
    args = _libpq_args(settings, for_migrations=False)
    assert (args["sslmode"], args["sslrootcert"]) == ("verify-full", str(ca))
    # unset: nothing passed, the URL's own sslmode (or libpq's default) holds
    args = _libpq_args(Settings.from_env({"DATABASE_URL": PG}), for_migrations=True)
    assert "sslmode" not in args
    assert "sslrootcert" not in args


# --- Secrets Manager, against moto server -----------------------------------


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    exe = Path(sys.executable).with_name("moto_server")
    cmd = str(exe) if exe.exists() else shutil.which("moto_server")
    assert cmd, "moto_server not found: run `make setup`"
    port = free_port()
    proc = subprocess.Popen(
        [cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_env(aws_endpoint, monkeypatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    # boto3 reads credentials from the process environment
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clear_secret_cache()
    yield env
    clear_secret_cache()


def put_secret(endpoint: str, name: str, value: object) -> str:
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
    body = value if isinstance(value, str) else json.dumps(value)
    return client.create_secret(Name=name, SecretString=body)["ARN"]


def rds_secret(pg, dbname: str, **over: object) -> dict[str, object]:
    secret = {
        "engine": "postgres",
        "username": "postgres",
        "password": "pw-not-checked-by-trust",
        "host": "127.0.0.1",
        "port": pg.port,
        "dbname": dbname,
    }
    secret.update(over)
    return secret


def test_secret_gives_the_database_and_wins_over_database_url(aws_env, pg, pg_migrated_url):
    arn = put_secret(aws_env["AWS_ENDPOINT_URL"], "taskboard/db", rds_secret(pg, "taskboard_api"))
    env = {**aws_env, "TASKBOARD_DB_SECRET_ID": arn, "DATABASE_URL": "sqlite:///nowhere.db"}
    app = create_app(env=env)
    try:
        settings = app.config["TASKBOARD_SETTINGS"]
        assert settings.database_source == "secret"
        assert settings.database_url.port == pg.port
        assert settings.database_url.password == "pw-not-checked-by-trust"
        # the password never shows in the URL's text form
        assert "pw-not-checked" not in str(settings.database_url)
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        assert client.post("/api/tasks", json={"title": "from secret"}).status_code == 201
        with app.extensions[EXT_KEY].engine.connect() as conn:
            assert conn.scalar(text("SELECT current_database()")) == "taskboard_api"
    finally:
        app.extensions[EXT_KEY].engine.dispose()


def test_secret_is_fetched_once_and_cached(aws_env, pg):
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    put_secret(endpoint, "taskboard/cached", rds_secret(pg, "postgres"))
    env = {**aws_env, "TASKBOARD_DB_SECRET_ID": "taskboard/cached"}
    first = Settings.from_env(env)
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
    client.delete_secret(SecretId="taskboard/cached", ForceDeleteWithoutRecovery=True)
    # the secret is gone from the API, the process still has it
    assert Settings.from_env(env).database_url == first.database_url
    clear_secret_cache()
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not a JSON object"),
        ('["a"]', "not a JSON object"),
        ({"username": "u", "password": "p", "host": "h", "port": 5432}, "lacks dbname"),
        ({"username": "u", "password": "", "host": "h", "port": 1, "dbname": "d"}, "password"),
        ({"username": "u", "password": "p", "host": "h", "port": "x", "dbname": "d"}, "port"),
        (
            {
                "engine": "mysql",
                "username": "u",
                "password": "p",
                "host": "h",
                "port": 1,
                "dbname": "d",
            },
            "not postgres",
        ),
    ],
)
def test_bad_secrets_stop_the_start(aws_env, value, message, request):
    name = f"taskboard/bad-{request.node.callspec.id}"
    put_secret(aws_env["AWS_ENDPOINT_URL"], name, value)
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({**aws_env, "TASKBOARD_DB_SECRET_ID": name})
    assert "'p'" not in str(info.value)


def test_missing_secret_and_missing_region(aws_env):
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        Settings.from_env({**aws_env, "TASKBOARD_DB_SECRET_ID": "taskboard/absent"})
    env = {k: v for k, v in aws_env.items() if k != "AWS_REGION"}
    with pytest.raises(ConfigError, match="AWS_REGION"):
        Settings.from_env({**env, "TASKBOARD_DB_SECRET_ID": "taskboard/absent"})


def test_region_from_aws_default_region(aws_env, pg):
    put_secret(aws_env["AWS_ENDPOINT_URL"], "taskboard/default-region", rds_secret(pg, "d"))
    env = {k: v for k, v in aws_env.items() if k != "AWS_REGION"}
    env.update(AWS_DEFAULT_REGION=REGION, TASKBOARD_DB_SECRET_ID="taskboard/default-region")
    assert Settings.from_env(env).database_url.database == "d"
