"""Helpers of the fleet tests (tests/local/): real containers, real traffic on
127.0.0.1. They need the fleet (`make up`; the `fleet` fixture runs
scripts/up.sh, a no-op when it is up) and take minutes, so they only run
when asked: `make test-fleet` (THREETIER_FLEET_TESTS=1); otherwise every
test module is skipped (`skip_unless_asked`). No conftest.py here: the kit's
tests/conftest.py is imported as `conftest` by its own tests."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

skip_unless_asked = pytest.mark.skipif(
    os.environ.get("THREETIER_FLEET_TESTS") != "1",
    reason="fleet tests: make up, then make test-fleet (THREETIER_FLEET_TESTS=1)",
)


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.timer")
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["CONTAINERS_CONF"] = str(ROOT / "scripts" / "containers.conf")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("THREETIER_LOCAL_DIR", None)
    env.pop("THREETIER_MODE", None)
    env.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    return env


def run(argv: list[str], timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
        )
    return result


def podman(*args: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout, check=check)


@functools.cache
def fleet() -> dict[str, str]:
    """The fleet is up (scripts/up.sh, once per test run; a no-op when it
    is up): its URL and up.sh's output. THREETIER_FLEET_UP=1 says the caller
    has just run it (scripts/test-all.sh): then it is not run again here."""
    log = ROOT / ".local" / "fleet" / "up.log"  # Ansible's output of the last up.sh
    if os.environ.get("THREETIER_FLEET_UP") == "1":
        port = os.environ.get("THREETIER_LOCAL_PORT", "8080")
        return {"url": f"http://127.0.0.1:{port}", "up": log.read_text(errors="replace")}
    up = run([str(ROOT / "scripts" / "up.sh")], timeout=3600)
    url = up.stdout.strip().splitlines()[-1].split()[-1]
    assert url.startswith("http://127.0.0.1:"), up.stdout
    return {"url": url.rstrip("/"), "up": up.stdout + log.read_text(errors="replace")}


def lb_servers(balancer: str, backend: str) -> list[tuple[str, str]]:
    """(server, status) of every server of a balancer's backend, from
    HAProxy's runtime API inside its container."""
    script = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy-admin.sock')\n"
        "s.sendall(b'show stat\\n'); d = b''\n"
        "while (c := s.recv(65536)): d += c\n"
        "print(d.decode())\n"
    )
    out = podman("exec", balancer, "python3", "-c", script).stdout
    rows = [line.split(",") for line in out.splitlines() if line.startswith(backend + ",")]
    return [(r[1], r[17]) for r in rows if r[1] not in ("FRONTEND", "BACKEND")]
