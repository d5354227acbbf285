"""ELBv2 target health of the emulator (docs/local-data-plane.md, "Elastic
Load Balancing v2: target health"), against real servers: with a data plane
the tests report health as the data plane would; without one, moto's own
answers (healthy at once, deregistration immediate) must stay."""

from __future__ import annotations

import pytest
from test_emulator_support import LOOP, World, emulator, report, wait_for


@pytest.fixture(scope="module")
def dp(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


def run_instance(world: World, subnet: int = 0) -> str:
    return world.ec2.run_instances(
        ImageId=world.image(1),
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=world.subnets[subnet],
    )["Instances"][0]["InstanceId"]


def test_registered_target_is_initial_until_the_data_plane_reports(dp):
    world = World(dp)
    tg = world.target_group()
    a, b = run_instance(world), run_instance(world, 1)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}, {"Id": b, "Port": 5001}])

    health = world.health(tg)
    assert set(health) == {a, b}
    assert health[a] == {
        "State": "initial",
        "Reason": "Elb.RegistrationInProgress",
        "Description": "Target registration is in progress",
    }

    answer = world.report(
        report(tg, a, "healthy"),
        report(
            tg,
            b,
            "unhealthy",
            port=5001,
            reason="Target.Timeout",
            description="Request timed out",
        ),
        report(tg, b, "healthy", port=5000),  # another port: not this target
        report(tg, "i-0123456789abcdef0", "healthy"),  # not registered
        report(tg, a, "bogus"),  # no such state
        report(tg + "x", a, "healthy"),  # no such target group
    )
    assert answer == {"accepted": 2, "ignored": 4}
    health = world.health(tg)
    assert health[a] == {"State": "healthy"}
    assert health[b] == {
        "State": "unhealthy",
        "Reason": "Target.Timeout",
        "Description": "Request timed out",
    }

    # unhealthy without a reason: AWS's failed-health-checks reason; initial again
    world.report(report(tg, a, "unhealthy"), report(tg, b, "initial", port=5001))
    health = world.health(tg)
    assert health[a]["State"] == "unhealthy"
    assert health[a]["Reason"] == "Target.FailedHealthChecks"
    assert health[b]["State"] == "initial"


def test_deregistered_target_drains_until_reported_drained(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    a, b = run_instance(world), run_instance(world)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}, {"Id": b}])
    world.report(report(tg, a, "healthy"), report(tg, b, "healthy"))

    world.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    health = world.health(tg)
    assert set(health) == {a, b}, "DescribeTargetHealth lists the draining target too"
    assert health[a] == {
        "State": "draining",
        "Reason": "Target.DeregistrationInProgress",
        "Description": "Target deregistration is in progress",
    }
    # deregistering it again changes nothing; health reports do not apply to it
    world.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.report(report(tg, a, "healthy")) == {"accepted": 0, "ignored": 1}
    assert world.health(tg)[a]["State"] == "draining"

    assert world.report(report(tg, a, "drained")) == {"accepted": 1, "ignored": 0}
    assert set(world.health(tg)) == {b}, "a drained target is no longer listed"
    asked = world.health(tg, [a])[a]
    assert asked["State"] == "unused"
    assert asked["Reason"] == "Target.NotRegistered"
    # drained again: nothing drains any more
    assert world.report(report(tg, a, "drained")) == {"accepted": 0, "ignored": 1}


def test_draining_ends_when_the_deregistration_delay_passed(dp):
    world = World(dp)
    tg = world.target_group(delay=1)
    a = run_instance(world)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    world.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.health(tg)[a]["State"] == "draining"
    wait_for(lambda: a not in world.health(tg), LOOP, "draining ended by the delay", dp)
    assert world.health(tg, [a])[a]["State"] == "unused"


def test_registering_a_draining_target_again_makes_it_initial(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    a = run_instance(world)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    world.report(report(tg, a, "healthy"))
    world.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.health(tg)[a]["State"] == "initial"
    # registering a registered target again keeps its health
    world.report(report(tg, a, "healthy"))
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.health(tg)[a]["State"] == "healthy"


def test_terminated_and_stopped_instances(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    gone, stopped = run_instance(world), run_instance(world)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": gone}, {"Id": stopped}])
    world.report(report(tg, gone, "healthy"), report(tg, stopped, "healthy"))

    world.ec2.terminate_instances(InstanceIds=[gone])
    assert world.health(tg)[gone]["State"] == "draining", "deregistered as AWS does"
    world.ec2.stop_instances(InstanceIds=[stopped])
    health = world.health(tg)[stopped]
    assert (health["State"], health["Reason"]) == ("unused", "Target.InvalidState")


def test_without_a_data_plane_moto_answers_stay(plain):
    world = World(plain)
    tg = world.target_group(delay=300)
    a = run_instance(world)
    world.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.health(tg)[a] == {"State": "healthy"}, "healthy at once"
    world.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}])
    assert world.health(tg) == {}, "deregistration is immediate"

    status, answer = world.post("/_threetier/status", method="GET")
    assert (status, answer) == (200, {"data_plane": False})
    status, answer = world.post("/_threetier/target-health", b'{"reports": [{"state": "healthy"}]}')
    assert status == 409
    assert "THREETIER_EMULATOR_DATA_PLANE" in answer["error"]
