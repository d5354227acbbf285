"""`make up` / `make down` in the run-alone mode (scripts/up.sh, scripts/down.sh)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import requests
from pgserver import free_port

REPO = Path(__file__).resolve().parents[2]


def script(name: str, state: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "THREETIER_LOCAL_DIR": str(state), **env}
    return subprocess.run(
        [str(REPO / "scripts" / name)],
        env=full,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_up_is_idempotent_serves_the_page_and_down_stops_it(tmp_path):
    state = tmp_path / "local"
    port = free_port()
    try:
        up = script("up.sh", state, TASKBOARD_PORT=str(port))
        assert up.returncode == 0, up.stderr
        url = re.search(r"http://127\.0\.0\.1:\d+/", up.stdout).group(0)
        assert url == f"http://127.0.0.1:{port}/"
        pid = (state / "taskboard.pid").read_text().strip()

        again = script("up.sh", state)
        assert again.returncode == 0
        assert "already up" in again.stdout
        assert url in again.stdout
        assert (state / "taskboard.pid").read_text().strip() == pid

        page = requests.get(url, timeout=5)
        assert page.status_code == 200
        assert "app.js" in page.text
        created = requests.post(f"{url}api/tasks", json={"title": "alone"}, timeout=5)
        assert created.status_code == 201
        assert requests.get(f"{url}readyz", timeout=5).status_code == 200
        assert (state / "taskboard.sqlite").exists()
    finally:
        down = script("down.sh", state)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    assert not (state / "taskboard.pid").exists()
    assert not Path(f"/proc/{pid}").exists()
    assert "not running" in script("down.sh", state).stdout


def test_up_refuses_a_bad_port(tmp_path):
    result = script("up.sh", tmp_path / "local", TASKBOARD_PORT="http")
    assert result.returncode == 2
    assert "TASKBOARD_PORT" in result.stderr
