"""A throwaway PostgreSQL server from the machine's binaries (tests and bench).

Runs as the ``postgres`` system user when we are root (PostgreSQL refuses to
run as root), on a free port of 127.0.0.1, with its data in a temporary
directory that is removed on stop.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresNotFoundError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_bindir() -> Path:
    candidates: list[Path] = []
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
        candidates.append(Path(out.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [
        Path(p).parent
        for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup`"
    )


class PostgresServer:
    """``tls``: a directory with server.crt and server.key (PEM): the server
    then speaks TLS with them and accepts TCP logins over TLS only (as RDS
    with rds.force_ssl)."""

    def __init__(self, port: int | None = None, tls: Path | None = None) -> None:
        self.tls = tls
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="taskboard-pg-"))
        self.data = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chmod(self.base, 0o755)  # noqa: S103 - postgres must traverse it
            for path in (self.data, self.sockdir):
                path.mkdir(mode=0o700)
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.logfile.touch()
            os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        else:
            self.data.mkdir(mode=0o700)
            self.sockdir.mkdir(mode=0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )
        if tls is not None:
            self._tls_setup(tls)

    def _tls_setup(self, tls: Path) -> None:
        for name in ("server.crt", "server.key"):
            target = self.data / name
            shutil.copyfile(tls / name, target)
            os.chmod(target, 0o600)
            if self.user:
                pw = pwd.getpwnam(self.user)
                os.chown(target, pw.pw_uid, pw.pw_gid)
        # TCP only over TLS; the socket (the tests' own tools) as before
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=timeout, cwd=self.base
        )

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PostgresServer:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        if self.tls is not None:
            opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        try:
            self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.logfile),
                "-o",
                opts,
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"postgres did not start: {exc.stderr}\n{self.log()}") from exc
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60", timeout=90)

    def running(self) -> bool:
        try:
            self._run("pg_ctl", "status", "-D", str(self.data), timeout=10)
        except subprocess.CalledProcessError:
            return False
        return True

    def log(self) -> str:
        try:
            return self.logfile.read_text()[-4000:]
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def wait_for_port(
    host: str, port: int, timeout: float = 30, proc: subprocess.Popen | None = None
) -> None:
    """Until host:port accepts; ``proc``, the process meant to listen there,
    ends the wait at once (RuntimeError) when it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"exited with status {proc.returncode} before {host}:{port} answered"
            )
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
