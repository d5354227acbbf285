"""Faults under load, as they happen in production: an app instance dies
(its container killed: the host gone, its connections black-holed), and
the emulator's Auto Scaling group replaces it as AWS does (the controller
reports the dead instance, the group launches a new one, the balancer takes
it once healthy); PostgreSQL restarted (the API answers 503 quickly
meanwhile, recovers by itself, and every task answered 201 is still
there); the database moved to a new interface (its container restarted:
the app's open connections go nowhere, as after a Multi-AZ failover; the
API answers 503 within its own limits and recovers as soon as the database
answers)."""

from __future__ import annotations

import time

import requests
from fleetlib import fleet, group, ids, podman, skip_unless_asked, wait_fleet
from load import Load, Result
from taskboard.config import Settings
from taskboard.db import wait_limits
from taskboard.pgwait import WaitLimits
from test_fleet import addresses, probe, psql

pytestmark = skip_unless_asked

# Seconds within which the group is back to its desired healthy count after
# an instance dies: the controller's report (1 s pass), the group's
# replacement (1 s tick), a container's boot and user data (about 10 s on a
# busy 2-core machine), the healthy threshold of checks (2 at 1 s while a
# target changes state), plus margin for a loaded machine.
REPLACED_WITHIN = 90
# The local stand-in of RDS (inventories/local: local_fleet_db.name, the
# container of roles/local_database).
DB_CONTAINER = "tt-local-db"
# Seconds the stack adds to a request beyond the app's own waits for the
# database: two balancers, nginx and gunicorn, on a busy 2-core machine.
STACK_MARGIN = 1.0


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


def serves_bounded_waits(instance_id: str) -> bool:
    """Whether the release taskboard runs on the instance has its bounded
    database waits (taskboard.pgwait): the fleet runs this tree's app."""
    script = (
        "pid=$(systemctl show --property=MainPID --value taskboard); "
        "python=$(tr '\\0' '\\n' </proc/$pid/cmdline | head -n 1); "
        '"$python" -c "import taskboard.pgwait"'
    )
    return podman("exec", instance_id, "sh", "-c", script, check=False).returncode == 0


def app_wait_limits(instance_id: str) -> WaitLimits:
    """The app's limits on waiting for the database (taskboard.db.wait_limits)
    from the TASKBOARD_DB_* settings its service runs with on an instance
    (gunicorn's environment), the secret's name and the TLS settings left out
    (their CA bundle is the instance's file, not this machine's)."""
    script = (
        "tr '\\0' '\\n' </proc/$(systemctl show --property=MainPID --value taskboard)/environ"
        " | grep '^TASKBOARD_DB_' | grep -v -e '^TASKBOARD_DB_SECRET_ID=' -e '^TASKBOARD_DB_SSL'"
    )
    lines = podman("exec", instance_id, "sh", "-c", script).stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines)
    assert "TASKBOARD_DB_CONNECT_TIMEOUT" in env, lines
    return wait_limits(Settings.from_env({"DATABASE_URL": "postgresql://app@db/taskboard", **env}))


def wait_reachable(instance_id: str, address: str, seconds: float) -> float | None:
    """Until PostgreSQL answers at address:5432 from the app instance (a
    real protocol answer, through the network the app uses): when, on the
    monotonic clock; None after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe(instance_id, address, 5432, "postgres"):
            return time.monotonic()
        time.sleep(0.2)
    return None


def refusals(result: Result) -> tuple[int, float, float]:
    """How many answers were 503, when the first of them was sent and the
    last answered (monotonic clock; 0 when none)."""
    refused = [(sent, answered) for sent, answered, status in result.answers if status == 503]
    if not refused:
        return 0, 0.0, 0.0
    return len(refused), min(s for s, _ in refused), max(a for _, a in refused)


def test_database_moved_to_a_new_interface_answers_503_fast_and_keeps_every_task():
    url = fleet()["url"]
    app_ids = wait_fleet("app")
    stale = [i for i in app_ids if not serves_bounded_waits(i)]
    assert not stale, f"{stale}: taskboard without taskboard.pgwait (older than this test)"
    limits = app_wait_limits(app_ids[0])
    assert limits.statement is not None
    database = addresses(DB_CONTAINER)[0]
    # once the database answers: an attempt begun just before it (the
    # connect timeout), the backoff after that attempt, the stack
    recovery_bound = limits.connect + limits.backoff + STACK_MARGIN
    load = Load(url, rate=60, workers=6, max_seconds=300, accept=(200, 201, 503), timeout=30)
    load.start()
    try:
        time.sleep(5)
        down = time.monotonic()
        # a new network namespace and interface at the same name and address:
        # the app's connections to the old one are black-holed
        podman("restart", DB_CONTAINER, timeout=180)
        restarted = time.monotonic()
        up = wait_reachable(app_ids[0], database, 120)
        time.sleep(recovery_bound + 10)
    finally:
        result = load.stop()
    assert up is not None, f"PostgreSQL not reachable from {app_ids[0]} within 120 s"
    count, first_503, last_503 = refusals(result)
    late = sorted(result.latencies)
    print(
        f"database moved: away {up - down:.1f} s (podman restart {restarted - down:.1f} s); "
        f"{result.sent} requests, statuses {result.statuses}; {count} 503s from "
        f"{first_503 - down:+.1f} s to {last_503 - down:+.1f} s after the restart began, the "
        f"last {last_503 - up:+.1f} s after the database answered (bound {recovery_bound:.1f} s); "
        f"p99 {p99(late):.2f} s (bound {limits.connect + STACK_MARGIN:.1f} s), slowest "
        f"{late[-1]:.2f} s (bound {limits.statement + STACK_MARGIN:.1f} s)"
    )
    assert result.failures == [], result.failures[:20]  # only 200, 201 and 503
    assert count > 0, "no 503 while the database was away"
    assert last_503 - up <= recovery_bound
    assert p99(late) <= limits.connect + STACK_MARGIN
    assert late[-1] <= limits.statement + STACK_MARGIN
    # writes answered 201 before the move, and again once the 503s were over
    assert any(status == 201 and answered < down for _, answered, status in result.answers)
    assert any(status == 201 and sent >= last_503 for sent, _, status in result.answers)
    created = sorted(set(result.created))
    assert created
    # integers from the API's own answers only
    found = psql(f"SELECT count(*) FROM tasks WHERE id IN ({','.join(map(str, created))})")  # noqa: S608
    assert int(found) == len(created)
