"""gunicorn configuration as code.

Run: gunicorn --config python:taskboard.gunicorn_conf taskboard.wsgi:app
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
import tempfile

from taskboard.config import ConfigError, check_database_configured


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}")
    return value


def _cpus() -> int:
    """CPUs this process may run on (respects affinity, e.g. a pinned container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return multiprocessing.cpu_count()


def _port_env(name: str) -> int:
    """A port number, or 0 when unset (no such listener)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a port number, got {raw!r}") from exc
    if not 0 <= value <= 65535:
        raise SystemExit(f"{name} must be between 0 and 65535, got {value}")
    return value


def _same_host(address: str, port: int) -> str:
    """``address`` (host:port, [v6]:port) with another port."""
    host, sep, _old = address.rpartition(":")
    if not sep or address.startswith("unix:"):
        raise SystemExit(f"TASKBOARD_METRICS_PORT needs a TCP TASKBOARD_BIND, got {address!r}")
    return f"{host}:{port}"


# No database configured (and not the development mode): exit here, in the
# master, before it binds or starts a worker. Otherwise gunicorn would listen
# (systemd would see it started) until its workers fail to load the app.
try:
    check_database_configured(os.environ)
except ConfigError as exc:
    raise SystemExit(f"taskboard: {exc}") from None

service_bind = os.environ.get("TASKBOARD_BIND", "0.0.0.0:5000")
# The metrics listener (TASKBOARD_METRICS_PORT, unset or 0: none): same
# address as the service, its own port; the app answers /metrics only there.
metrics_port = _port_env("TASKBOARD_METRICS_PORT")
bind: str | list[str] = service_bind
if metrics_port:
    if service_bind.endswith(f":{metrics_port}"):
        raise SystemExit(
            f"TASKBOARD_METRICS_PORT ({metrics_port}) must differ from the service port"
        )
    bind = [service_bind, _same_host(service_bind, metrics_port)]
workers = _int_env("TASKBOARD_WORKERS", _cpus() * 2 + 1)
worker_class = "sync"
timeout = _int_env("TASKBOARD_WORKER_TIMEOUT", 30)
graceful_timeout = _int_env("TASKBOARD_GRACEFUL_TIMEOUT", 20)
keepalive = 5
max_requests = _int_env("TASKBOARD_MAX_REQUESTS", 2000)
max_requests_jitter = _int_env("TASKBOARD_MAX_REQUESTS_JITTER", 200)
# The app logs a JSON line per request itself; gunicorn's access log would
# duplicate it. gunicorn's own messages are JSON lines on stdout too.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("TASKBOARD_LOG_LEVEL", "INFO").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": loglevel.upper(), "handlers": []},
    "formatters": {"json": {"()": "taskboard.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": loglevel.upper(), "handlers": [], "propagate": False},
    },
}
proc_name = "taskboard"
# Behind the proxy-fix of the app, not gunicorn's own header handling.
forwarded_allow_ips = "127.0.0.1"


# --- Metrics of several workers ------------------------------------------------
# Each worker writes its metric values to files in PROMETHEUS_MULTIPROC_DIR
# and /metrics sums them. The directory is the operator's when set, else
# <XDG_RUNTIME_DIR>/taskboard-metrics (the unit's runtime directory: one per
# service), else a new temporary one. It is set here, in the master, before
# any worker imports prometheus_client; a reload (SIGHUP) keeps it and its
# counts; a start empties it.
_created_metrics_dir = False
if metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
    _runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if _runtime:
        _dir = os.path.join(_runtime, "taskboard-metrics")
        os.makedirs(_dir, mode=0o750, exist_ok=True)
    else:
        _dir = tempfile.mkdtemp(prefix="taskboard-metrics-")
        _created_metrics_dir = True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir


def _metrics_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()


def on_starting(server) -> None:
    """Master start: values of an earlier run are not this run's."""
    path = _metrics_dir()
    if metrics_port and path:
        os.makedirs(path, mode=0o750, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)


def child_exit(server, worker) -> None:
    """A worker is gone: its live gauges no longer count (counters stay)."""
    if metrics_port and _metrics_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _created_metrics_dir:
        shutil.rmtree(_metrics_dir(), ignore_errors=True)
