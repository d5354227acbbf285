"""Immutable releases against a real moto server (no data plane: targets are
healthy once registered): a new AMI becomes a new default launch-template
version that keeps every other setting; an instance refresh (the default
strategy; the emulator's, scripts/localaws) or surge and retire replaces
every instance with capacity never below desired, and the group ends on the
new version by number, tagged with the release; a second run changes
nothing; a refresh that cannot start undoes the template switch; a refresh
that "succeeds" without replacing the instances is not believed; a failing
surge batch is undone (surge removed, previous default restored, old
instances left serving)."""

from __future__ import annotations

import time

import pytest
from aws_stack import (
    EXTRA,
    CapacityWatch,
    ensure_stack,
    group,
    images_of,
    launch_template,
    make_ami,
    placeholder_ami,
)

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(kit, moto):
    ensure_stack(kit, moto)


def release(kit, tier, ami, *extra):
    return kit.playbook(
        "release_immutable.yml",
        *EXTRA,
        "-e",
        f"release_tier={tier}",
        "-e",
        f"release_ami_id={ami}",
        "-e",
        "aws_fleet_replace_instance_warmup=1",
        *extra,
    )


def replace_fleet(kit, moto, tier, batch, strategy="auto"):
    """Release a fresh AMI on `tier`; check versions, capacity and instances."""
    before = group(moto, tier)
    desired = before["DesiredCapacity"]
    old = {i["InstanceId"] for i in before["Instances"]}
    lt_before = launch_template(moto, tier)
    ami = make_ami(moto, f"test-{tier}-{time.monotonic_ns()}")
    with CapacityWatch(moto, tier) as watch:
        run = release(
            kit,
            tier,
            ami,
            "-e",
            f"release_batch_size={batch}",
            "-e",
            "release_poll_interval=1",
            "-e",
            f"release_strategy={strategy}",
        )
    assert run.rc == 0, run.output[-5000:]
    TIMINGS[f"{tier} x{desired} {strategy}"] = run.seconds
    print(f"{strategy}, {tier}, {desired} instances, batch {batch}: {run.seconds:.1f} s")

    # the launch template: one new version, the default, same data but the AMI
    lt = launch_template(moto, tier)
    assert lt["latest"] == lt_before["latest"] + 1
    assert lt["default"] == lt["latest"]
    new_data = lt["versions"][lt["default"]]["LaunchTemplateData"]
    old_data = lt_before["versions"][lt_before["default"]]["LaunchTemplateData"]
    assert new_data["ImageId"] == ami != old_data["ImageId"]
    assert {k: v for k, v in new_data.items() if k != "ImageId"} == {
        k: v for k, v in old_data.items() if k != "ImageId"
    }
    assert new_data.get("UserData"), "user data kept"

    # capacity: every observation had at least `desired` instances in service
    assert len(watch.seen) >= 3, watch.seen
    assert min(s for s, _ in watch.seen) >= desired, watch.seen
    assert max(s for s, _ in watch.seen) > desired, "the surge was observed"

    after = group(moto, tier)
    now = {i["InstanceId"] for i in after["Instances"]}
    assert after["DesiredCapacity"] == desired
    assert after["MaxSize"] == before["MaxSize"], "max size given back"
    assert len(now) == desired
    assert not now & old, "no old instance remains"
    assert set(images_of(moto, now).values()) == {ami}
    assert all(i["LifecycleState"] == "InService" for i in after["Instances"])
    # the group names the new version by number, and every instance reports it
    assert after["LaunchTemplate"]["Version"] == str(lt["default"])
    assert {i["LaunchTemplate"]["Version"] for i in after["Instances"]} == {str(lt["default"])}
    return ami, run


def test_release_web_by_instance_refresh_two_instances(kit, moto, stack):
    ami, _ = replace_fleet(kit, moto, "web", batch=1)
    refresh = moto.client("autoscaling", "us-west-2").describe_instance_refreshes(
        AutoScalingGroupName="threetier-dev-web"
    )["InstanceRefreshes"][0]
    assert (refresh["Status"], refresh["PercentageComplete"]) == ("Successful", 100), refresh
    assert refresh["Preferences"]["AutoRollback"] is True
    assert refresh["Preferences"]["MinHealthyPercentage"] == 100
    assert refresh["DesiredConfiguration"]["LaunchTemplate"]["Version"] == str(
        launch_template(moto, "web")["default"]
    )
    # the same release again: nothing to change
    again = release(kit, "web", ami)
    assert again.rc == 0, again.output[-3000:]
    assert again.recap()["changed"] == 0, again.output[-3000:]
    # the launch-template layer re-run keeps the released AMI (no new version)
    lt = launch_template(moto, "web")
    layer = kit.playbook("launch_templates.yml", *EXTRA)
    assert layer.rc == 0, layer.output[-3000:]
    assert layer.recap()["changed"] == 0, layer.output[-3000:]
    assert launch_template(moto, "web")["latest"] == lt["latest"]


def test_release_app_surge_and_retire_four_instances(kit, moto, stack):
    # four instances at max 4: each batch of 2 must raise max, then give it back
    moto.client("autoscaling", "us-west-2").update_auto_scaling_group(
        AutoScalingGroupName="threetier-dev-app", DesiredCapacity=4
    )
    try:
        replace_fleet(kit, moto, "app", batch=2, strategy="surge")
    finally:
        moto.client("autoscaling", "us-west-2").update_auto_scaling_group(
            AutoScalingGroupName="threetier-dev-app", DesiredCapacity=2
        )


def test_failed_batch_is_undone(kit, moto, stack):
    """moto reports every registered target of a running instance healthy, so
    the unhealthy case is made by judging health in a target group the new
    instances are never registered in (an empty one), with a 4 s limit."""
    tier = "web"
    before = group(moto, tier)
    lt_before = launch_template(moto, tier)
    elb = moto.client("elbv2", "us-west-2")
    tg = elb.describe_target_groups(Names=["threetier-dev-web"])["TargetGroups"][0]
    empty = elb.create_target_group(
        Name=f"test-empty-{time.monotonic_ns() % 10**6}",
        Protocol="HTTP",
        Port=80,
        VpcId=tg["VpcId"],
    )["TargetGroups"][0]["TargetGroupArn"]
    ami = make_ami(moto, f"test-bad-{time.monotonic_ns()}")
    with CapacityWatch(moto, tier) as watch:
        run = release(
            kit,
            tier,
            ami,
            "-e",
            "release_batch_timeout=4",
            "-e",
            "release_poll_interval=1",
            "-e",
            f"release_target_group_arn={empty}",
            "-e",
            "release_strategy=surge",
        )
    assert run.rc != 0, run.output[-3000:]
    out = " ".join(run.output.split())
    assert "Immutable rollout of tier web stopped in batch 1/2" in out, run.output[-3000:]
    assert "not registered" in out
    assert "within 4 s" in out
    assert f"is back on version {lt_before['default']}" in out

    lt = launch_template(moto, tier)
    assert lt["default"] == lt_before["default"], "previous default restored"
    assert lt["latest"] == lt_before["latest"] + 1, "the failed version stays, not default"
    after = group(moto, tier)
    assert {i["InstanceId"] for i in after["Instances"]} == {
        i["InstanceId"] for i in before["Instances"]
    }, "the old instances keep serving, the surge is gone"
    assert after["DesiredCapacity"] == before["DesiredCapacity"]
    assert after["MaxSize"] == before["MaxSize"]
    assert min(s for s, _ in watch.seen) >= before["DesiredCapacity"], watch.seen
    assert ami not in set(images_of(moto, [i["InstanceId"] for i in after["Instances"]]).values())


def test_bad_input_refused_before_any_change(kit, moto, stack):
    lt_before = launch_template(moto, "web")
    run = kit.playbook(
        "release_immutable.yml", *EXTRA, "-e", "release_tier=db", "-e", "release_ami_id=ami-1"
    )
    assert run.rc != 0
    assert "give release_tier=web|app" in " ".join(run.output.split())
    assert launch_template(moto, "web")["latest"] == lt_before["latest"]


def test_refresh_that_cannot_start_undoes_the_switch(kit, moto, stack):
    """A refresh of the group already in progress (towards another version,
    held at a checkpoint): the new one cannot start, and the template's
    default goes back to the version before the release."""
    tier = "app"
    asg = moto.client("autoscaling", "us-west-2")
    lt_before = launch_template(moto, tier)
    g = group(moto, tier)
    asg.start_instance_refresh(
        AutoScalingGroupName=g["AutoScalingGroupName"],
        DesiredConfiguration={
            "LaunchTemplate": {
                "LaunchTemplateName": g["LaunchTemplate"]["LaunchTemplateName"],
                "Version": g["LaunchTemplate"]["Version"],
            }
        },
        Preferences={"SkipMatching": False, "CheckpointPercentages": [50], "CheckpointDelay": 600,
                     "MinHealthyPercentage": 100, "MaxHealthyPercentage": 150, "InstanceWarmup": 0},
    )  # fmt: skip
    try:
        run = release(kit, tier, make_ami(moto, f"test-blocked-{time.monotonic_ns()}"))
    finally:
        asg.cancel_instance_refresh(AutoScalingGroupName=g["AutoScalingGroupName"])
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "by instance refresh FAILED" in out, run.output[-3000:]
    assert "already has instance refresh" in out
    assert f"is back on version {lt_before['default']}" in out
    assert launch_template(moto, tier)["default"] == lt_before["default"]
    assert group(moto, tier)["LaunchTemplate"]["Version"] == g["LaunchTemplate"]["Version"]


def test_a_successful_refresh_is_checked_instance_by_instance(kit, moto, stack):
    """SkipMatching can make a refresh succeed without replacing anything:
    asked to end on an AMI the group's version does not carry, the refresh
    skips every instance and reports success, and the role does not believe
    it."""
    tier = "web"
    lt = launch_template(moto, tier)
    run = kit.playbook(
        "../tests/playbooks/fleet_replace_refresh.yml",
        *EXTRA,
        "-e",
        f"aws_fleet_replace_tier={tier}",
        "-e",
        f"aws_fleet_replace_ami_id={placeholder_ami(moto)}",
        "-e",
        f"aws_fleet_replace_launch_template_version={lt['default']}",
    )
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "reported success, yet" in out, run.output[-3000:]
    assert "(another AMI)" in out
