"""After `make up`: the fleet is what the emulator says (its Auto Scaling
groups' instances, as containers named by instance id, spread over both
AZs, found by the EC2 inventory), the page and the API answer through the
external balancer, the data lands in PostgreSQL, and the security groups
hold with real protocol answers (only the tier in front reaches each port;
nothing reaches a peer of its own tier)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests
from fleetlib import (
    PREFIX,
    ROOT,
    emulator,
    fleet,
    group,
    instances,
    podman,
    run,
    served_by,
    skip_unless_asked,
)

pytestmark = skip_unless_asked


def probe(container: str, host: str, port: int, kind: str) -> bool:
    """Real packets from inside a container: does a PostgreSQL server (its
    answer to an SSLRequest is S or N), taskboard or nginx (/healthz answers
    its JSON) answer at host:port? A plain TCP connect would not do: this
    machine's own egress may accept any connection it routes out. A
    security group drops what it does not allow: 2 s without an answer."""
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


def test_the_app_reaches_the_database_over_verified_tls():
    """As on RDS (TLS logins only; taskboard verifies the server with
    sslmode verify-full against the CA bundle baked into the AMI): every app
    instance has the local CA as its bundle, taskboard's connections are
    TLS, and a login without TLS is refused by the database."""
    fleet()
    ca = (ROOT / ".local" / "ca" / "ca.crt").read_text()
    app = instances("app")
    for i in app:
        env = podman("exec", i["id"], "cat", "/etc/taskboard/taskboard.env").stdout
        assert 'TASKBOARD_DB_SSLMODE="verify-full"' in env, (i["id"], env)
        assert 'TASKBOARD_DB_SSLROOTCERT="/etc/taskboard/db-ca.pem"' in env, (i["id"], env)
        assert podman("exec", i["id"], "cat", "/etc/taskboard/db-ca.pem").stdout == ca, i["id"]
    for _ in range(6):
        listed = requests.get(fleet()["url"] + "/api/tasks", timeout=10)
        assert listed.status_code == 200, listed.text
    rows = psql(
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
        " WHERE a.application_name = 'taskboard'"
    ).splitlines()
    assert rows, "no connection of taskboard's"
    assert {r.split("|")[0] for r in rows} == {"t"}, rows
    assert all(r.split("|")[1].startswith("TLSv1.") for r in rows), rows
    endpoint = emulator("rds").describe_db_instances(DBInstanceIdentifier=f"{PREFIX}-db")[
        "DBInstances"
    ][0]["Endpoint"]["Address"]
    attempt = podman(
        "exec",
        app[0]["id"],
        "/opt/taskboard/current/bin/python",
        "-c",
        "import sys, psycopg2\n"
        "try:\n"
        f"    psycopg2.connect(host={endpoint!r}, user='taskboard', password='x',"
        " dbname='taskboard', sslmode='disable', connect_timeout=5)\n"
        "except psycopg2.OperationalError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n",
        check=False,
    )
    assert attempt.returncode == 3, attempt
    assert "no encryption" in attempt.stdout, attempt.stdout


# taskboard-migrate check on an app instance with the service's environment
# (root reads both files), the CA bundle optionally another: a new process,
# so a new connection, verified as the service's are.
MIGRATE_CHECK = (
    "set -a; . /etc/taskboard/taskboard.env; . /etc/threetier/app.env; set +a; "
    '[ -z "$1" ] || TASKBOARD_DB_SSLROOTCERT=$1; '
    "exec /opt/taskboard/current/bin/taskboard-migrate check"
)


def test_the_app_refuses_a_database_its_bundle_does_not_vouch_for(tmp_path):
    """verify-full is in effect in the service's environment: with its
    bundle the instance reaches the database; with a bundle of another CA
    (as if something else answered at the endpoint's name) it refuses."""
    fleet()
    instance = instances("app")[0]["id"]
    ok = podman("exec", instance, "sh", "-c", MIGRATE_CHECK, "sh", "", check=False)
    assert ok.returncode == 0, ok.stderr
    assert "at head" in ok.stdout, ok.stdout
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(tmp_path / "other.key"), "-out", str(tmp_path / "other.pem"),
            "-days", "1", "-subj", "/CN=another CA",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    podman("cp", str(tmp_path / "other.pem"), f"{instance}:/tmp/other-ca.pem")
    try:
        refused = podman(
            "exec", instance, "sh", "-c", MIGRATE_CHECK, "sh", "/tmp/other-ca.pem", check=False
        )
    finally:
        podman("exec", instance, "rm", "-f", "/tmp/other-ca.pem", check=False)
    assert refused.returncode != 0, refused.stdout
    assert "certificate verify failed" in refused.stderr, refused.stderr


def test_the_fleet_is_the_emulators_groups():
    """Each group's desired capacity of instances, each a running container
    named by its instance id, on its subnet's network at its private IP,
    labelled with its tags; spread over both AZs' subnets."""
    fleet()
    for tier in ("web", "app"):
        g = group(tier)
        found = instances(tier)
        assert len(found) == g["DesiredCapacity"] == 2, (tier, found)
        assert len({i["az"] for i in found}) == 2, f"{tier}: not spread over both AZs: {found}"
        assert len({i["subnet"] for i in found}) == 2
        for i in found:
            info = json.loads(podman("container", "inspect", i["id"]).stdout)[0]
            assert info["State"]["Status"] == "running", i
            labels = info["Config"]["Labels"]
            assert labels.get("threetier.tag.Tier") == tier, labels
            addresses = [n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values()]
            assert addresses == [i["ip"]], (i, addresses)


def test_the_ec2_inventory_finds_the_instances():
    fleet()
    out = run(["ansible-inventory", "--list"]).stdout
    inventory = json.loads(out)
    for tier in ("web", "app"):
        assert sorted(inventory[f"tier_{tier}"]["hosts"]) == [i["id"] for i in instances(tier)]
    hostvars = inventory["_meta"]["hostvars"]
    first = instances("app")[0]["id"]
    assert hostvars[first]["ansible_connection"] == "containers.podman.podman"
    host = hostvars[first]["ansible_host"]
    # ansible-inventory marks values from the plugin as unsafe in its JSON
    assert (host.get("__ansible_unsafe") if isinstance(host, dict) else host) == first


def test_requests_reach_both_app_instances():
    names = {i["hostname"] for i in instances("app")}
    hosts = served_by(names, 60)
    assert set(hosts) == names, (hosts, names)


def test_only_the_external_balancer_is_published():
    out = podman("ps", "--filter", "label=fleet=local", "--format", "{{.Names}} {{.Ports}}").stdout
    published = {line.split()[0]: line for line in out.splitlines() if "->" in line}
    assert list(published) == ["tt-local-lb-ext"], out
    assert re.search(r"127\.0\.0\.1:\d+->80/tcp", published["tt-local-lb-ext"]), out


def addresses(container: str) -> list[str]:
    info = json.loads(podman("container", "inspect", container).stdout)[0]
    return [n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values()]


@pytest.fixture(scope="module")
def matrix():
    """Who is where: both instances of each tier, each balancer's addresses,
    the database's."""
    fleet()
    return {
        "web": instances("web"),
        "app": instances("app"),
        "lb_ext": addresses("tt-local-lb-ext"),
        "lb_int": addresses("tt-local-lb-int"),
        "db": addresses("tt-local-db")[0],
    }


def test_security_groups_with_real_protocol_answers(matrix):
    """The security-group chain per instance, as on AWS: each port answers
    the tier in front of it only (a PostgreSQL SSLRequest, an HTTP
    /healthz), never the tier behind it, a tier further away or a peer of
    the same tier (they share subnets: only the groups keep them apart)."""
    web1, web2 = matrix["web"]
    app1, app2 = matrix["app"]
    db = matrix["db"]
    # the database: the app tier only
    assert probe(app1["id"], db, 5432, "postgres")
    assert probe(app2["id"], db, 5432, "postgres")
    assert not probe(web1["id"], db, 5432, "postgres")
    assert not probe("tt-local-lb-int", db, 5432, "postgres")
    assert not probe("tt-local-lb-ext", db, 5432, "postgres")
    # the app port: the internal balancer only (not the web tier, not a peer)
    assert probe("tt-local-lb-int", app1["ip"], 5000, "taskboard")
    assert probe("tt-local-lb-int", app2["ip"], 5000, "taskboard")
    assert not probe(web1["id"], app1["ip"], 5000, "taskboard")
    assert not probe(app2["id"], app1["ip"], 5000, "taskboard")
    assert not probe("tt-local-lb-ext", app1["ip"], 5000, "taskboard")
    # the internal balancer: the web tier only
    for address in matrix["lb_int"]:
        assert probe(web1["id"], address, 5000, "taskboard")
        assert not probe(app1["id"], address, 5000, "taskboard")
        assert not probe("tt-local-lb-ext", address, 5000, "taskboard")
    # the web port: the external balancer only (not a peer, not the app tier)
    assert probe("tt-local-lb-ext", web1["ip"], 80, "nginx")
    assert probe("tt-local-lb-ext", web2["ip"], 80, "nginx")
    assert not probe(web2["id"], web1["ip"], 80, "nginx")
    assert not probe(app1["id"], web1["ip"], 80, "nginx")
    assert not probe("tt-local-lb-int", web1["ip"], 80, "nginx")


def test_user_data_ran_at_first_boot():
    web, app = instances("web"), instances("app")
    for i in web + app:
        done = podman("exec", i["id"], "cat", "/var/lib/threetier/user-data.done", check=False)
        assert done.returncode == 0, f"{i['id']}: user data did not run"
    upstream = podman("exec", web[0]["id"], "nginx-web-upstream", "show").stdout
    assert re.search(
        r"^internal-.*\.elb\.amazonaws\.com:5000$|^threetier-local-int.*:5000$", upstream, re.M
    ), upstream
    env = podman("exec", app[0]["id"], "cat", "/etc/threetier/app.env").stdout
    assert "TASKBOARD_DB_SECRET_ID=" in env
    assert "password" not in env.lower()


def test_no_password_in_user_data_or_logs():
    client = emulator("secretsmanager")
    value = client.get_secret_value(SecretId="threetier/local/db-master")["SecretString"]
    secret = json.loads(value)["password"]
    assert len(secret) >= 8
    assert secret not in fleet()["up"]
    for i in instances("app"):
        data = podman("exec", i["id"], "cat", "/var/lib/threetier/user-data").stdout
        assert secret not in data
