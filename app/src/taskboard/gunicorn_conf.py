"""gunicorn configuration as code.

Run: gunicorn --config python:taskboard.gunicorn_conf taskboard.wsgi:app
"""

from __future__ import annotations

import multiprocessing
import os


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


bind = os.environ.get("TASKBOARD_BIND", "0.0.0.0:5000")
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
