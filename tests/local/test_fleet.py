"""After `make up`: the page and the API through the external balancer, the
data in PostgreSQL, the networks' reachability with real packets, and a
second `make up` that changes nothing."""

from __future__ import annotations

import json
import re

import requests
from fleetlib import fleet, podman, run, skip_unless_asked

pytestmark = skip_unless_asked

WEB = ["tt-local-web-1", "tt-local-web-2"]
APP = ["tt-local-app-1", "tt-local-app-2"]


def probe(container: str, host: str, port: int, kind: str) -> bool:
    """Real packets from inside a container: does a PostgreSQL server (its
    answer to an SSLRequest is S or N) or taskboard (/healthz answers its
    JSON) answer at host:port? A plain TCP connect would not do: this
    machine's own egress may accept any connection it routes out."""
    script = (
        "import socket, sys\n"
        "try:\n"
        f"    s = socket.create_connection(({host!r}, {port}), timeout=2)\n"
        "    s.settimeout(3)\n"
        f"    if {kind!r} == 'postgres':\n"
        "        s.sendall(bytes([0, 0, 0, 8, 4, 210, 22, 47]))\n"
        "        ok = s.recv(1) in (b'S', b'N')\n"
        "    else:\n"
        f"        s.sendall(b'GET /healthz HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n')\n"
        "        data = b''\n"
        "        while chunk := s.recv(4096):\n"
        "            data += chunk\n"
        "        ok = b'\"status\":\"ok\"' in data.replace(b' ', b'')\n"
        "except OSError:\n"
        "    ok = False\n"
        "sys.exit(0 if ok else 1)\n"
    )
    return podman("exec", container, "python3", "-c", script, check=False).returncode == 0


def psql(sql: str) -> str:
    out = podman(
        "exec",
        "tt-local-db",
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-d",
        "taskboard",
        "-tAc",
        sql,
    )
    return out.stdout.strip()


def test_page_loads_and_tasks_land_in_postgres():
    page = requests.get(fleet()["url"] + "/", timeout=10)
    assert page.status_code == 200
    assert "app.js" in page.text
    title = "fleet task through every tier"
    created = requests.post(fleet()["url"] + "/api/tasks", json={"title": title}, timeout=10)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert psql(f"SELECT title FROM tasks WHERE id = {int(task_id)}") == title  # noqa: S608 (an int)
    fetched = requests.get(fleet()["url"] + f"/api/tasks/{task_id}", timeout=10)
    assert fetched.status_code == 200
    assert fetched.json()["title"] == title


def test_requests_reach_both_app_instances():
    hosts = {
        requests.get(fleet()["url"] + "/version", timeout=10).json()["hostname"] for _ in range(20)
    }
    assert hosts == set(APP)


def test_only_the_external_balancer_is_published():
    out = podman("ps", "--filter", "label=fleet=local", "--format", "{{.Names}} {{.Ports}}").stdout
    published = {line.split()[0]: line for line in out.splitlines() if "->" in line}
    assert list(published) == ["tt-local-lb-ext"], out
    assert re.search(r"127\.0\.0\.1:\d+->80/tcp", published["tt-local-lb-ext"]), out


def test_reachability_with_real_packets():
    db, app_ip, lb_int_front = "10.0.5.10", "10.0.3.21", "10.0.1.11"
    # web cannot open the database; app can
    assert not probe("tt-local-web-1", db, 5432, "postgres")
    assert not probe("tt-local-lb-ext", db, 5432, "postgres")
    assert probe("tt-local-app-1", db, 5432, "postgres")
    # nothing on the web tier's network reaches the app port but through the
    # internal balancer
    assert not probe("tt-local-web-1", app_ip, 5000, "taskboard")
    assert not probe("tt-local-lb-ext", app_ip, 5000, "taskboard")
    assert probe("tt-local-web-1", lb_int_front, 5000, "taskboard")
    assert probe("tt-local-lb-int", app_ip, 5000, "taskboard")


def test_user_data_ran_at_first_boot():
    for name in WEB + APP:
        done = podman("exec", name, "cat", "/var/lib/threetier/user-data.done", check=False)
        assert done.returncode == 0, f"{name}: user data did not run"
    upstream = podman("exec", "tt-local-web-1", "nginx-web-upstream", "show").stdout
    assert re.search(
        r"^internal-.*\.elb\.amazonaws\.com:5000$|^threetier-local-int.*:5000$", upstream, re.M
    ), upstream
    env = podman("exec", "tt-local-app-1", "cat", "/etc/threetier/app.env").stdout
    assert "TASKBOARD_DB_SECRET_ID=" in env
    assert "password" not in env.lower()


def test_no_password_in_user_data_or_logs():
    import boto3

    client = boto3.client(
        "secretsmanager",
        endpoint_url="http://127.0.0.1:4566",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    value = client.get_secret_value(SecretId="threetier/local/db-master")["SecretString"]
    secret = json.loads(value)["password"]
    assert len(secret) >= 8
    assert secret not in fleet()["up"]
    for name in APP:
        data = podman("exec", name, "cat", "/var/lib/threetier/user-data").stdout
        assert secret not in data


def test_second_up_changes_nothing():
    again = run(["scripts/up.sh"], timeout=1800)
    steps = [
        line for line in again.stdout.splitlines() if line.startswith("up: ") and "changed=" in line
    ]
    assert steps, again.stdout
    for line in steps:
        if "site.yml" in line:
            continue  # the control plane's own idempotence is tests/test_provision.py's
        assert "changed=0" in line, again.stdout
    status = json.loads(podman("volume", "inspect", "tt-local-pgdata").stdout)[0]
    assert status["Name"] == "tt-local-pgdata"
