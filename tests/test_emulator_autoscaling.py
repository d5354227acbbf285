"""EC2 Auto Scaling of the emulator (docs/local-data-plane.md, "EC2 Auto
Scaling"), against real servers: placement over the group's AZs, the
launch-template version per instance, AWS's scale-in choice, and, with a
data plane, Terminating, health replacement and the API sequences the
amazon.aws autoscaling_instance and autoscaling_group modules poll."""

from __future__ import annotations

import base64
import time
from collections import Counter

import botocore.exceptions
import pytest
from ansible_collections.amazon.aws.plugins.module_utils._autoscaling.waiters import (
    waiter_factory,
)
from test_emulator_support import LOOP, Player, World, emulator, report, wait_for

# the emulator's switch (scripts/localaws/emulator_autoscaling.py)
IAM_PROPAGATION_ENV = "THREETIER_EMULATOR_IAM_PROPAGATION"


@pytest.fixture(scope="module")
def dp(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


@pytest.fixture(scope="module")
def propagating(tmp_path_factory):
    """An emulator where a new instance profile takes 3 s to be usable."""
    return emulator(tmp_path_factory, data_plane=False, extra_env={IAM_PROPAGATION_ENV: "3"})


def zones(world: World, name: str) -> Counter:
    return Counter(i["AvailabilityZone"] for i in world.in_service(name))


def versions(world: World, name: str) -> dict[str, str]:
    return {i["InstanceId"]: i["LaunchTemplate"]["Version"] for i in world.in_service(name)}


# ---------------------------------------------------------------- both modes


def test_instances_are_spread_over_the_groups_azs(plain):
    world = World(plain)
    name = world.group(desired=4)
    assert zones(world, name) == Counter({"us-east-1a": 2, "us-east-1b": 2})
    subnets = {
        i["SubnetId"]
        for i in world.ec2_instances(x["InstanceId"] for x in world.in_service(name)).values()
    }
    assert subnets == set(world.subnets)

    world.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=5)
    assert sorted(zones(world, name).values()) == [2, 3]
    world.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    assert zones(world, name) == Counter({"us-east-1a": 1, "us-east-1b": 1}), "AZ balance kept"


def test_each_instance_reports_and_runs_its_own_version(plain):
    world = World(plain)
    profile = world.iam.create_instance_profile(InstanceProfileName=f"prof-{world.tag}")
    world.template(versions=1, IamInstanceProfile={"Name": f"prof-{world.tag}"})
    name = world.group(version="$Latest", desired=1)
    [first] = world.in_service(name)
    sg2 = world.ec2.create_security_group(
        GroupName=f"sg2-{world.tag}", Description="v2", VpcId=world.vpc
    )["GroupId"]
    world.add_version(2, SecurityGroupIds=[sg2])
    world.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)

    by_id = versions(world, name)
    [second] = [i for i in by_id if i != first["InstanceId"]]
    assert by_id == {first["InstanceId"]: "1", second: "2"}, "moto reported 1 for both"
    described = world.asg.describe_auto_scaling_instances(InstanceIds=[second])
    assert described["AutoScalingInstances"][0]["LaunchTemplate"] == {
        "LaunchTemplateId": world.template_id,
        "LaunchTemplateName": f"lt-{world.tag}",
        "Version": "2",
    }
    ec2 = world.ec2_instances([first["InstanceId"], second])
    assert ec2[first["InstanceId"]]["ImageId"] == world.image(1)
    assert ec2[second]["ImageId"] == world.image(2)
    assert [g["GroupId"] for g in ec2[second]["SecurityGroups"]] == [sg2]
    assert [g["GroupId"] for g in ec2[first["InstanceId"]]["SecurityGroups"]] == [world.sg]
    user_data = world.ec2.describe_instance_attribute(InstanceId=second, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode().endswith("echo v2\n")
    assert (
        ec2[first["InstanceId"]]["IamInstanceProfile"]["Arn"] == (profile["InstanceProfile"]["Arn"])
    )


def test_scale_in_keeps_az_balance_then_drops_other_versions_first(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="1", desired=2)
    old = set(versions(world, name))
    world.asg.update_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": world.template_id, "Version": "2"},
        DesiredCapacity=4,
    )
    assert sorted(versions(world, name).values()) == ["1", "1", "2", "2"]
    world.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    left = versions(world, name)
    assert set(left.values()) == {"2"}, left
    assert not old & set(left)
    assert zones(world, name) == Counter({"us-east-1a": 1, "us-east-1b": 1})


def test_without_a_data_plane_terminations_are_immediate(plain):
    world = World(plain)
    tg = world.target_group()
    name = world.group(desired=2, min_size=1, target_groups=[tg])
    a, b = sorted(i["InstanceId"] for i in world.in_service(name))
    assert set(world.health(tg)) == {a, b}

    world.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a, ShouldDecrementDesiredCapacity=True
    )
    group = world.describe(name)
    assert group["DesiredCapacity"] == 1
    assert [i["InstanceId"] for i in group["Instances"]] == [b]
    assert world.ec2_instances([a])[a]["State"]["Name"] == "terminated"
    assert set(world.health(tg)) == {b}, "deregistered from the group's target group"

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        world.asg.terminate_instance_in_auto_scaling_group(
            InstanceId=b, ShouldDecrementDesiredCapacity=True
        )
    assert "min size constraint" in caught.value.response["Error"]["Message"]

    world.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=b, ShouldDecrementDesiredCapacity=False
    )
    [replacement] = world.in_service(name)
    assert replacement["InstanceId"] != b, "replaced at once"


def test_a_new_instance_profile_is_refused_until_it_propagated(propagating):
    world = World(propagating)
    world.iam.create_instance_profile(InstanceProfileName=f"prof-{world.tag}")
    made = time.monotonic()
    world.template(versions=1, IamInstanceProfile={"Name": f"prof-{world.tag}"})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        world.group(desired=1)
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "Invalid IAM Instance Profile name" in str(refused.value)
    assert world.asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    time.sleep(max(0.0, 3.2 - (time.monotonic() - made)))
    name = world.group(desired=1)
    assert len(world.in_service(name)) == 1


def test_a_zero_grace_period_stays_zero(plain):
    world = World(plain)
    name = world.group(desired=0, grace=0)
    assert world.describe(name)["HealthCheckGracePeriod"] == 0, "moto made it 300"


def test_unknown_instance_is_a_validation_error(plain):
    world = World(plain)
    terminate = world.asg.terminate_instance_in_auto_scaling_group
    calls = (
        (world.asg.set_instance_health, {"HealthStatus": "Unhealthy"}),
        (terminate, {"ShouldDecrementDesiredCapacity": False}),
    )
    for call, kwargs in calls:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call(InstanceId="i-0123456789abcdef0", **kwargs)
        assert caught.value.response["Error"]["Code"] == "ValidationError"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ---------------------------------------------------------------- data plane


def test_termination_goes_through_terminating_until_drained(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    name = world.group(desired=2, target_groups=[tg])
    a, b = sorted(i["InstanceId"] for i in world.in_service(name))
    world.report(report(tg, a, "healthy"), report(tg, b, "healthy"))

    world.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a, ShouldDecrementDesiredCapacity=True
    )
    states = {i["InstanceId"]: i["LifecycleState"] for i in world.instances(name)}
    assert states == {a: "Terminating", b: "InService"}
    assert world.health(tg)[a]["State"] == "draining"
    assert world.ec2_instances([a])[a]["State"]["Name"] == "running", "still serving its requests"
    time.sleep(1.5)  # a tick or more: nothing launched, the instance still drains
    assert len(world.instances(name)) == 2
    assert world.describe(name)["DesiredCapacity"] == 1

    world.report(report(tg, a, "drained"))
    wait_for(lambda: len(world.instances(name)) == 1, LOOP, "terminated once drained", dp)
    assert world.ec2_instances([a])[a]["State"]["Name"] == "terminated"


def test_autoscaling_instance_module_sequence(dp):
    """amazon.aws.autoscaling_instance state=terminated,
    decrement_desired_capacity=true, wait=true: TerminateInstanceInAutoScalingGroup
    per instance, then its waiter polls DescribeAutoScalingInstances until
    the instances are gone (Terminating is not a failure)."""
    world = World(dp)
    tg = world.target_group(delay=1)
    name = world.group(desired=3, target_groups=[tg])
    ids = sorted(i["InstanceId"] for i in world.in_service(name))[:2]
    for instance_id in ids:
        world.asg.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
        )
    listed = world.asg.describe_auto_scaling_instances(InstanceIds=ids)["AutoScalingInstances"]
    assert {i["LifecycleState"] for i in listed} == {"Terminating"}
    waiter = waiter_factory.get_waiter(world.asg, "instances_terminated")
    started = time.monotonic()
    waiter.wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    assert time.monotonic() - started < 8, "ended by the deregistration delay (1 s)"
    group = world.describe(name)
    assert group["DesiredCapacity"] == 1
    assert len(group["Instances"]) == 1


def test_autoscaling_group_module_wait_sequence(dp):
    """amazon.aws.autoscaling_group wait_for_instances: InService and Healthy
    instances (viable) reach the desired capacity, then (health check type
    ELB) DescribeTargetHealth with Targets=[{Id}] (no port) of those counts
    at least MinSize healthy."""
    world = World(dp)
    tg = world.target_group()
    name = world.group(desired=1, min_size=2, max_size=4, target_groups=[tg])
    world.asg.update_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=2, MaxSize=4, DesiredCapacity=3
    )

    def viable() -> list[str]:
        return [
            i["InstanceId"]
            for i in world.describe(name)["Instances"]
            if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
        ]

    ids = wait_for(lambda: len(viable()) >= 3 and viable(), LOOP, "3 viable instances", dp)

    def tg_healthy() -> int:
        listing = world.elb.describe_target_health(
            TargetGroupArn=tg, Targets=[{"Id": i} for i in ids]
        )["TargetHealthDescriptions"]
        return sum(1 for d in listing if d["TargetHealth"]["State"] == "healthy")

    assert tg_healthy() == 0, "initial until the data plane reports"
    with Player(world, [tg]):
        wait_for(lambda: tg_healthy() >= 2, LOOP, "target group healthy >= MinSize", dp)


def test_unhealthy_instance_is_replaced(dp):
    world = World(dp)
    tg = world.target_group(delay=1)
    name = world.group(desired=2, grace=30, target_groups=[tg])
    a, b = sorted(i["InstanceId"] for i in world.in_service(name))
    # within the grace period, respecting it (the default): ignored, as on AWS
    world.asg.set_instance_health(InstanceId=a, HealthStatus="Unhealthy")
    assert {i["InstanceId"]: i["HealthStatus"] for i in world.in_service(name)}[a] == "Healthy"

    world.asg.set_instance_health(
        InstanceId=a, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
    )
    wait_for(
        lambda: {i["InstanceId"] for i in world.in_service(name)} - {a, b},
        LOOP,
        "a replacement launched",
        dp,
    )
    ids = {i["InstanceId"]: i["LifecycleState"] for i in world.instances(name)}
    assert a not in ids or ids[a] == "Terminating"
    wait_for(lambda: a not in {i["InstanceId"] for i in world.instances(name)}, LOOP, "gone", dp)
    assert len(world.in_service(name)) == 2


def test_elb_health_check_and_ec2_state_replace_instances(dp):
    world = World(dp)
    tg = world.target_group(delay=1)
    name = world.group(desired=2, grace=1, target_groups=[tg])
    sick, stopped = sorted(i["InstanceId"] for i in world.in_service(name))
    time.sleep(1)  # past the grace period
    world.report(report(tg, sick, "unhealthy"))
    world.ec2.stop_instances(InstanceIds=[stopped])
    wait_for(
        lambda: not {sick, stopped} & {i["InstanceId"] for i in world.in_service(name)},
        LOOP,
        "both replaced",
        dp,
        show=lambda: world.instances(name),
    )
    wait_for(lambda: len(world.in_service(name)) == 2, LOOP, "capacity kept", dp)


def test_ec2_terminated_instance_is_replaced(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    name = world.group(desired=1, target_groups=[tg])
    [gone] = [i["InstanceId"] for i in world.in_service(name)]
    world.ec2.terminate_instances(InstanceIds=[gone])
    [new] = world.in_service(name)
    assert new["InstanceId"] != gone
    health = world.health(tg)
    assert health[gone]["State"] == "draining"
    assert health[new["InstanceId"]]["State"] == "initial"


def test_deleting_a_group_drains_its_instances_first(dp):
    world = World(dp)
    tg = world.target_group(delay=300)
    name = world.group(desired=2, target_groups=[tg])
    ids = sorted(i["InstanceId"] for i in world.in_service(name))
    world.asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    group = world.describe(name)
    assert group["Status"] == "Delete in progress"
    assert {i["LifecycleState"] for i in group["Instances"]} == {"Terminating"}
    world.report(*(report(tg, i, "drained") for i in ids))
    wait_for(lambda: not world.describe(name), LOOP, "the group deleted", dp)
    assert {i["State"]["Name"] for i in world.ec2_instances(ids).values()} == {"terminated"}
