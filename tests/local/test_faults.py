"""Faults under load, as they happen in production: an app instance dies
(its container killed: the host gone, its connections black-holed), and
the emulator's Auto Scaling group replaces it as AWS does (the controller
reports the dead instance, the group launches a new one, the balancer takes
it once healthy); PostgreSQL restarted (the API answers 503 quickly
meanwhile, recovers by itself, and every task answered 201 is still
there)."""

from __future__ import annotations

import time

import requests
from fleetlib import fleet, group, ids, podman, skip_unless_asked, wait_fleet
from load import Load
from test_fleet import psql

pytestmark = skip_unless_asked

# Seconds within which the group is back to its desired healthy count after
# an instance dies: the controller's report (1 s pass), the group's
# replacement (1 s tick), a container's boot and user data (about 10 s on a
# busy 2-core machine), the healthy threshold of checks (2 at 1 s while a
# target changes state), plus margin for a loaded machine.
REPLACED_WITHIN = 90


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0


def test_killed_app_instance_is_replaced_by_its_group():
    before = wait_fleet("app")
    victim = before[-1]
    load = Load(fleet()["url"], rate=40, workers=6, max_seconds=300).start()
    try:
        time.sleep(3)
        podman("kill", victim)
        killed_at = time.monotonic()
        back = wait_fleet("app", timeout=REPLACED_WITHIN + 60, without=(victim,))
        took = time.monotonic() - killed_at
        time.sleep(3)
    finally:
        result = load.stop()
    print(
        f"instance {victim} killed: group healthy again at {len(back)} in {took:.0f} s "
        f"(bound {REPLACED_WITHIN} s); {result.sent} requests, statuses {result.statuses}, "
        f"p99 {p99(result.latencies) * 1000:.0f} ms, slowest {max(result.latencies) * 1000:.0f} ms"
    )
    assert took <= REPLACED_WITHIN
    assert victim not in back
    assert len(set(back) - set(before)) == 1, (before, back)
    assert group("app")["DesiredCapacity"] == len(back)
    # the dead instance is gone from the emulator and its container too
    assert victim not in ids("app")
    assert podman("container", "exists", victim, check=False).returncode != 0
    # only requests in flight on the dead instance may fail (one per worker at most)
    assert len(result.failures) <= 6, result.failures


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
