"""Capacity by hand, end to end: the app group's desired capacity 2 -> 4
(SetDesiredCapacity, as an operator or a scaling policy would) launches two
instances that serve once healthy; back to 2 drains two and removes them.
Zero failed requests under load throughout."""

from __future__ import annotations

import time

from fleetlib import (
    PREFIX,
    emulator,
    fleet,
    instances,
    podman,
    served_by,
    skip_unless_asked,
    wait_fleet,
)
from load import Load

pytestmark = skip_unless_asked


def set_desired(count: int) -> None:
    emulator("autoscaling").set_desired_capacity(
        AutoScalingGroupName=f"{PREFIX}-app", DesiredCapacity=count, HonorCooldown=False
    )


def test_scale_out_and_in_under_load():
    two = wait_fleet("app", 2)
    load = Load(fleet()["url"], rate=40, workers=6, max_seconds=600).start()
    try:
        time.sleep(3)
        started = time.monotonic()
        set_desired(4)
        four = wait_fleet("app", 4, timeout=240)
        out_took = time.monotonic() - started
        # the new instances serve: every app instance answers through the balancers
        names = {i["hostname"] for i in instances("app")}
        # slow start is 30 s (aws_load_balancers_slow_start); 90 s allows for it
        hosts = served_by(names, 90)
        started = time.monotonic()
        set_desired(2)
        back = wait_fleet("app", 2, timeout=240)
        in_took = time.monotonic() - started
        time.sleep(3)
    finally:
        result = load.stop()
        set_desired(2)
    print(
        f"app 2 -> 4 healthy in {out_took:.0f} s, 4 -> 2 drained and gone in {in_took:.0f} s; "
        f"{result.sent} requests, statuses {result.statuses}"
    )
    assert set(two) <= set(four)
    assert len(names) == 4, names
    assert set(hosts) == names, (hosts, names)
    assert len(back) == 2
    gone = set(four) - set(back)
    assert len(gone) == 2
    # the controller removes a terminated instance's container on its next
    # pass over the emulator's state (each second; later on a busy machine)
    deadline = time.monotonic() + 30
    left = set(gone)
    while left and time.monotonic() < deadline:
        left = {i for i in left if podman("container", "exists", i, check=False).returncode == 0}
        time.sleep(0.5)
    assert not left, f"containers of terminated instances still there after 30 s: {left}"
    assert result.failures == [], result.failures[:20]
