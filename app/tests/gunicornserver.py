"""taskboard under gunicorn with the release configuration (tests and bench).

``gunicorn --config python:taskboard.gunicorn_conf taskboard.wsgi:app``, as
the fleet runs it, on a free port of 127.0.0.1, its output in a log file.
Like pgserver.py it is no part of the wheel: the tests import it as a
sibling module, bench/app_bench.py by path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pgserver import free_port, wait_for_port

COMMAND = (
    sys.executable,
    "-m",
    "gunicorn",
    "--config",
    "python:taskboard.gunicorn_conf",
    "--no-control-socket",
    "taskboard.wsgi:app",
)


class GunicornServer:
    """The service on ``url``, with the given TASKBOARD_* (or other) settings.

    The database is ``database_url``, never a Secrets Manager secret of the
    caller's environment. ``start()`` waits until the service port answers,
    and the metrics port too when TASKBOARD_METRICS_PORT is set. Leaving a
    ``with`` block stops it (SIGTERM, gunicorn's graceful stop; SIGKILL after
    ``stop_timeout`` seconds) and, unless the block raised, fails with the end
    of the log when gunicorn did not exit 0.
    """

    def __init__(
        self, database_url: str, log: Path, *, stop_timeout: float = 15, **settings: str
    ) -> None:
        self.database_url = database_url
        self.log = log
        self.stop_timeout = stop_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TASKBOARD_BIND": f"127.0.0.1:{self.port}",
            **settings,
        }
        self.env.pop("TASKBOARD_DB_SECRET_ID", None)
        self.ports = [self.port]
        if settings.get("TASKBOARD_METRICS_PORT"):
            self.ports.append(int(settings["TASKBOARD_METRICS_PORT"]))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> GunicornServer:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                COMMAND, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            for port in self.ports:
                wait_for_port("127.0.0.1", port, timeout=timeout, proc=self.proc)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"gunicorn did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def stop(self) -> int:
        """Stop it (when it still runs); its exit status (negative: a signal)."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        status = self.stop()
        if exc_type is None and status != 0:
            raise RuntimeError(f"gunicorn exited with status {status}:\n{self.log_tail()}")
