"""The kit's moto server on a free loopback port (the kit's tests and bench).

It is scripts/moto_server.py, moto with the kit's extensions (scripts/localaws,
docs/local-data-plane.md), the same server scripts/moto.sh starts; without a
data plane unless ``env`` says THREETIER_EMULATOR_DATA_PLANE=1.
tests/conftest.py imports it as a sibling module, bench/provision_bench.py by
path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

SERVER = Path(__file__).resolve().parent.parent / "scripts" / "moto_server.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Moto:
    url: str
    log: Path
    proc: subprocess.Popen

    def client(self, service: str, region: str = "us-east-1"):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        # request lines are noise (4xx are the normal "not found" answers);
        # keep server errors and everything that is not a request line
        kept = [x for x in text if ('"POST ' not in x and '"GET ' not in x) or '" 50' in x]
        return "\n".join(kept[-lines:])


@contextlib.contextmanager
def moto_server(
    log: Path, cwd: Path | None = None, timeout: float = 30, env: dict[str, str] | None = None
) -> Iterator[Moto]:
    """Started and answering (RuntimeError with its output when it is not
    within ``timeout`` seconds), its output in ``log``, stopped on leaving.
    ``cwd`` is where its recorder writes its file; ``env`` is added to the
    server's environment (e.g. THREETIER_EMULATOR_DATA_PLANE=1)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 (loopback)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                raise RuntimeError(
                    f"moto server did not start:\n{log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.1)
    try:
        yield Moto(url=url, log=log, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
