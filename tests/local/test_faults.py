"""Faults under load: an app instance killed (the balancer takes it out; only
the requests in flight on it may fail), PostgreSQL restarted (the API answers
503 quickly meanwhile, recovers by itself, and every task answered 201 is
still there)."""

from __future__ import annotations

import time

import requests
import yaml
from fleetlib import ROOT, fleet, podman, skip_unless_asked
from load import Load
from test_fleet import psql
from test_release import all_up

pytestmark = skip_unless_asked

# the target groups' checks of the local inventory (HAProxy follows them)
LB = yaml.safe_load((ROOT / "inventories/local/group_vars/all/load_balancers.yml").read_text())
# unhealthy threshold x interval + timeout
HEALTH_WINDOW = (
    LB["aws_load_balancers_unhealthy_threshold"] * LB["aws_load_balancers_health_check_interval"]
    + LB["aws_load_balancers_health_check_timeout"]
)


def wait_all_up(balancer: str, backend: str, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all_up(balancer, backend) == ["UP"] * count:
            return
        time.sleep(2)
    raise AssertionError(f"{balancer}/{backend}: {all_up(balancer, backend)}")


def test_killed_app_instance_is_taken_out():
    load = Load(fleet()["url"], rate=40, workers=6, max_seconds=300).start()
    try:
        time.sleep(3)
        podman("kill", "tt-local-app-2")
        killed_at = time.monotonic()
        deadline = killed_at + HEALTH_WINDOW + 10
        while time.monotonic() < deadline and all_up("tt-local-lb-int", "app")[1:] == ["UP"]:
            time.sleep(1)
        out_after = time.monotonic() - killed_at
        time.sleep(5)
    finally:
        result = load.stop()
        podman("start", "tt-local-app-2")
    print(f"killed instance out after {out_after:.0f} s; {result.sent} requests; {result.statuses}")
    assert out_after <= HEALTH_WINDOW + 5
    # only requests in flight on the killed instance may fail (one per worker at most)
    assert len(result.failures) <= 6, result.failures
    wait_all_up("tt-local-lb-int", "app", 2)


def test_postgres_restart_answers_503_fast_and_keeps_every_task():
    load = Load(
        fleet()["url"], rate=40, workers=6, max_seconds=300, accept=(200, 201, 503), timeout=20
    ).start()
    try:
        time.sleep(3)
        # PostgreSQL down for 8 s (the instance stays: same address and MAC,
        # as an RDS reboot keeps its endpoint), then back
        podman("exec", "tt-local-db", "systemctl", "stop", "postgresql@15-main", timeout=60)
        time.sleep(8)
        podman("exec", "tt-local-db", "systemctl", "start", "postgresql@15-main", timeout=60)
        restarted = time.monotonic()
        recovered = None
        while time.monotonic() < restarted + 60:
            try:
                probe = requests.post(
                    fleet()["url"] + "/api/tasks", json={"title": "probe"}, timeout=10
                )
                if probe.status_code == 201:
                    recovered = time.monotonic() - restarted
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        time.sleep(5)
        before_stop = dict(load.result.statuses)
    finally:
        result = load.stop()
    print(f"postgres restart: {result.sent} requests, statuses {result.statuses}")
    assert recovered is not None, "the API did not recover within 60 s"
    print(f"API answering 201 again {recovered:.1f} s after PostgreSQL came back")
    assert result.failures == [], result.failures[:20]
    assert result.statuses.get(503, 0) > 0, "no 503 seen while the database was down"
    assert max(result.latencies) < 10, f"slowest answer {max(result.latencies):.1f} s"
    assert before_stop.get(201, 0) > 0
    ids = sorted(set(result.created))
    assert ids
    # integers from the API's own answers only
    found = psql(f"SELECT count(*) FROM tasks WHERE id IN ({','.join(map(str, ids))})")  # noqa: S608
    assert int(found) == len(ids)
