"""Configuration, from the environment only.

Every setting the service reads is listed in ``ENV_VARS`` and parsed (and
checked) by :meth:`Settings.from_env`; a bad value stops the start with a
message naming the variable, before anything is served or changed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from taskboard._version import __version__

log = logging.getLogger(__name__)

ENV_VARS = (
    "DATABASE_URL",
    "TASKBOARD_DB_SECRET_ID",
    "TASKBOARD_DEVELOPMENT",
    "SECRET_KEY",
    "TASKBOARD_LOG_LEVEL",
    "TASKBOARD_PROXY_HOPS",
    "TASKBOARD_MAX_BODY_BYTES",
    "TASKBOARD_RELEASE",
    "TASKBOARD_GIT_COMMIT",
    "TASKBOARD_SERVE_STATIC",
    "TASKBOARD_DB_CONNECT_TIMEOUT",
    "TASKBOARD_DB_STATEMENT_TIMEOUT_MS",
    "TASKBOARD_DB_TCP_USER_TIMEOUT_MS",
    "TASKBOARD_DB_KEEPALIVES_IDLE",
    "TASKBOARD_DB_KEEPALIVES_INTERVAL",
    "TASKBOARD_DB_KEEPALIVES_COUNT",
    "TASKBOARD_DB_SSLMODE",
    "TASKBOARD_DB_SSLROOTCERT",
    "TASKBOARD_METRICS_PORT",
    "PROMETHEUS_MULTIPROC_DIR",
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# libpq's sslmode values; the last two check the server's certificate
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SSL_VERIFYING = ("verify-ca", "verify-full")
SECRET_KEYS = ("username", "password", "host", "port", "dbname")


class ConfigError(ValueError):
    """A setting of the environment is wrong; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _database_url(raw: str, name: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        # never echo the value: it may hold a password
        raise ConfigError(f"{name} is not a database URL") from None
    backend = url.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ConfigError(f"{name}: unsupported database {backend!r} (postgresql or sqlite)")
    if backend == "postgresql" and url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url


def _tls(env: Mapping[str, str]) -> tuple[str, str]:
    """TASKBOARD_DB_SSLMODE and TASKBOARD_DB_SSLROOTCERT, checked together.

    A mode that verifies the server needs the CA bundle it verifies against
    (libpq would otherwise look in the service user's home, which it has
    none of); a bundle without such a mode would be read by nobody, which
    hides a configuration that does not do what it says.
    """
    mode = env.get("TASKBOARD_DB_SSLMODE", "").strip()
    rootcert = env.get("TASKBOARD_DB_SSLROOTCERT", "").strip()
    if mode and mode not in SSL_MODES:
        raise ConfigError(
            f"TASKBOARD_DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {mode!r}"
        )
    if mode in SSL_VERIFYING and not rootcert:
        raise ConfigError(
            f"TASKBOARD_DB_SSLMODE={mode} needs TASKBOARD_DB_SSLROOTCERT, the CA bundle "
            "the database's certificate is checked against"
        )
    if rootcert and mode not in SSL_VERIFYING:
        raise ConfigError(
            "TASKBOARD_DB_SSLROOTCERT is set but TASKBOARD_DB_SSLMODE is "
            f"{mode or 'unset'}: the certificate would not be checked (use verify-full)"
        )
    if rootcert and not os.access(rootcert, os.R_OK):
        raise ConfigError(f"TASKBOARD_DB_SSLROOTCERT: {rootcert!r} is not a readable file")
    return mode, rootcert


# --- Secrets Manager ------------------------------------------------------

_secret_cache: dict[tuple[str, str | None, str | None], URL] = {}
_secret_lock = threading.Lock()


def _aws_region(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


def url_from_secret(secret_id: str, env: Mapping[str, str]) -> URL:
    """The database URL from an RDS-style secret; fetched once per process."""
    region = _aws_region(env)
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    key = (secret_id, region, endpoint)
    with _secret_lock:
        cached = _secret_cache.get(key)
        if cached is not None:
            return cached
        url = _fetch_secret_url(secret_id, region, endpoint)
        _secret_cache[key] = url
        return url


def clear_secret_cache() -> None:
    with _secret_lock:
        _secret_cache.clear()


def _fetch_secret_url(secret_id: str, region: str | None, endpoint: str | None) -> URL:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError

    if not region:
        raise ConfigError("TASKBOARD_DB_SECRET_ID is set but no AWS_REGION/AWS_DEFAULT_REGION")
    client = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=endpoint,
        config=BotoConfig(
            connect_timeout=5,
            read_timeout=10,
            retries={"max_attempts": 4},
            # the service's calls are told apart in CloudTrail (and in the
            # emulator's recording: tests/recorder.py)
            user_agent_extra=f"taskboard/{__version__}",
        ),
    )
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(
            f"TASKBOARD_DB_SECRET_ID: cannot read secret {secret_id!r}: {code}"
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"TASKBOARD_DB_SECRET_ID: Secrets Manager unreachable: {exc}") from None
    try:
        data: Any = json.loads(response.get("SecretString") or "")
    except ValueError:
        raise ConfigError(f"secret {secret_id!r} is not a JSON object") from None
    if not isinstance(data, dict):
        raise ConfigError(f"secret {secret_id!r} is not a JSON object")
    # The RDS form: username, password, host, port, dbname (engine optional).
    missing = [k for k in SECRET_KEYS if data.get(k) in (None, "")]
    if missing:
        raise ConfigError(f"secret {secret_id!r} lacks {', '.join(missing)}")
    try:
        port = int(data["port"])
    except (TypeError, ValueError):
        raise ConfigError(f"secret {secret_id!r}: port is not an integer") from None
    if str(data.get("engine", "postgres")).lower() not in ("postgres", "postgresql"):
        raise ConfigError(f"secret {secret_id!r}: engine {data['engine']!r} is not postgres")
    log.info("database credentials read from Secrets Manager", extra={"secret_id": secret_id})
    return URL.create(
        "postgresql+psycopg2",
        username=str(data["username"]),
        password=str(data["password"]),
        host=str(data["host"]),
        port=port,
        database=str(data["dbname"]),
    )


# --- Settings ---------------------------------------------------------------

# Without its database the service refuses to start: a host whose
# configuration is not complete yet (an image booting before its user data
# wrote the secret's name) must not serve, nor pass a health check, while
# writing to a local file. Only the development mode has a default database.
NO_DATABASE = (
    "no database configured: set TASKBOARD_DB_SECRET_ID (a Secrets Manager secret) or "
    "DATABASE_URL; TASKBOARD_DEVELOPMENT=1 allows a SQLite file in the instance directory "
    "(development only)"
)


def check_database_configured(env: Mapping[str, str]) -> None:
    """Raise ConfigError unless ``env`` names a database or is in development mode.

    Cheap (reads nothing): gunicorn's master calls it before it binds, so a
    service without its configuration exits at start.
    """
    if env.get("TASKBOARD_DB_SECRET_ID", "").strip() or env.get("DATABASE_URL", "").strip():
        return
    if not _bool(env, "TASKBOARD_DEVELOPMENT", False):
        raise ConfigError(NO_DATABASE)


def _database(env: Mapping[str, str], instance_path: str) -> tuple[URL, str]:
    """The database URL and where it came from: "secret", "env" or "default"."""
    secret_id = env.get("TASKBOARD_DB_SECRET_ID", "").strip()
    if secret_id:
        return url_from_secret(secret_id, env), "secret"
    if env.get("DATABASE_URL", "").strip():
        return _database_url(env["DATABASE_URL"].strip(), "DATABASE_URL"), "env"
    check_database_configured(env)
    path = os.path.join(instance_path, "taskboard.sqlite")
    return URL.create("sqlite", database=path), "default"


@dataclass(frozen=True)
class Settings:
    database_url: URL
    database_source: str  # "secret", "env" or "default" (development mode only)
    secret_key: str
    log_level: str = "INFO"
    proxy_hops: int = 0
    max_body_bytes: int = 64 * 1024
    release: str = __version__
    git_commit: str = "unknown"
    serve_static: bool = False
    db_connect_timeout: int = 3
    db_statement_timeout_ms: int = 5000
    db_tcp_user_timeout_ms: int = 3000
    db_keepalives_idle: int = 5
    db_keepalives_interval: int = 2
    db_keepalives_count: int = 3
    # libpq's sslmode ("" = the URL's, else libpq's default) and the CA
    # bundle of verify-ca / verify-full
    db_sslmode: str = ""
    db_sslrootcert: str = ""
    hostname: str = field(default_factory=socket.gethostname)
    metrics_port: int = 0
    metrics_multiprocess_dir: str | None = None
    development: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, instance_path: str = ".") -> Settings:
        env = os.environ if env is None else env
        development = _bool(env, "TASKBOARD_DEVELOPMENT", False)
        level = env.get("TASKBOARD_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in LOG_LEVELS:
            raise ConfigError(f"TASKBOARD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        secret_key = env.get("SECRET_KEY", "")
        if not secret_key:
            # The API keeps no session; a per-process key is enough when unset.
            secret_key = os.urandom(32).hex()
        metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None
        if metrics_dir is not None and not os.path.isdir(metrics_dir):
            raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR: {metrics_dir!r} is not a directory")
        # every other setting is checked before the database: a bad value is
        # named before any call to Secrets Manager
        values = {
            "secret_key": secret_key,
            "log_level": level,
            "proxy_hops": _int(env, "TASKBOARD_PROXY_HOPS", 0, 0, 10),
            "max_body_bytes": _int(
                env, "TASKBOARD_MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024
            ),
            "release": env.get("TASKBOARD_RELEASE", "").strip() or __version__,
            "git_commit": env.get("TASKBOARD_GIT_COMMIT", "").strip() or "unknown",
            "serve_static": _bool(env, "TASKBOARD_SERVE_STATIC", False),
            "db_connect_timeout": _int(env, "TASKBOARD_DB_CONNECT_TIMEOUT", 3, 1, 60),
            "db_statement_timeout_ms": _int(
                env, "TASKBOARD_DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000
            ),
            # the kernel's limits on a connection whose host is gone
            "db_tcp_user_timeout_ms": _int(
                env, "TASKBOARD_DB_TCP_USER_TIMEOUT_MS", 3000, 1000, 120_000
            ),
            "db_keepalives_idle": _int(env, "TASKBOARD_DB_KEEPALIVES_IDLE", 5, 1, 600),
            "db_keepalives_interval": _int(env, "TASKBOARD_DB_KEEPALIVES_INTERVAL", 2, 1, 60),
            "db_keepalives_count": _int(env, "TASKBOARD_DB_KEEPALIVES_COUNT", 3, 1, 30),
            "metrics_port": _int(env, "TASKBOARD_METRICS_PORT", 0, 0, 65535),
            "metrics_multiprocess_dir": metrics_dir,
            "development": development,
        }
        values["db_sslmode"], values["db_sslrootcert"] = _tls(env)
        url, source = _database(env, instance_path)
        if values["db_sslmode"] and url.get_backend_name() != "postgresql":
            raise ConfigError(
                "TASKBOARD_DB_SSLMODE applies to PostgreSQL only, the database is SQLite"
            )
        return cls(database_url=url, database_source=source, **values)
