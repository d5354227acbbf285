"""The emulator's instance refresh (moto has none): AWS's request and
response shapes, errors and status flow, surge and terminate-first
replacement, skip matching, checkpoints, failure and rollback, history;
without a data plane (new instances healthy at once) and with one (the
tests play it: targets reported healthy, or unhealthy for a bad image)."""

from __future__ import annotations

import time

import botocore.exceptions
import pytest
from test_emulator_support import LOOP, Player, Watch, World, emulator, wait_for


@pytest.fixture(scope="module")
def dp(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


def lt(world: World, version: str) -> dict[str, str]:
    return {"LaunchTemplate": {"LaunchTemplateId": world.template_id, "Version": version}}


def prefs(**preferences: object) -> dict[str, object]:
    return {"Preferences": preferences}


def error(caught: pytest.ExceptionInfo) -> tuple[str, str]:
    response = caught.value.response
    return response["Error"]["Code"], response["Error"]["Message"]


def on_version(world: World, name: str) -> dict[str, str]:
    return {
        i["InstanceId"]: i["LaunchTemplate"]["Version"]
        for i in world.instances(name, ["InService"])
    }


# ---------------------------------------------------------------- the API


def test_start_refuses_bad_requests_with_aws_errors(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="$Default", desired=1)
    start = world.asg.start_instance_refresh

    no_desired = "cannot be set to true when the DesiredConfiguration parameter is empty"
    missing = {"LaunchTemplate": {"LaunchTemplateId": "lt-0000000000000000f"}}
    refused = [
        (prefs(MinHealthyPercentage=101), "less than or equal to 100"),
        (prefs(MinHealthyPercentage=90, MaxHealthyPercentage=201), "less than or equal to 200"),
        (prefs(MinHealthyPercentage=50, MaxHealthyPercentage=200), "can't be greater than 100"),
        (prefs(MaxHealthyPercentage=150), "must also specify MinHealthyPercentage"),
        (prefs(CheckpointDelay=10), "CheckpointPercentages must be specified"),
        (prefs(CheckpointPercentages=[50, 20]), "ascending order"),
        (prefs(AutoRollback=True), no_desired),
        ({**prefs(AutoRollback=True), "DesiredConfiguration": lt(world, "2")}, "$Default"),
        ({"DesiredConfiguration": missing}, "does not exist"),
    ]
    for kwargs, wording in refused:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            start(AutoScalingGroupName=name, **kwargs)
        code, message = error(caught)
        assert code == "ValidationError", (kwargs, message)
        assert wording in message, (kwargs, message)

    # what the emulator does not do answers 501, like any call moto lacks
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        start(AutoScalingGroupName=name, Strategy="ReplaceRootVolume")
    assert error(caught)[0] == "NotImplemented"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501

    # none active: cancel and rollback find nothing
    for call in (world.asg.cancel_instance_refresh, world.asg.rollback_instance_refresh):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call(AutoScalingGroupName=name)
        assert error(caught)[0] == "ActiveInstanceRefreshNotFound"

    # one active: a second is refused; it cannot be rolled back without a desired configuration
    first = start(AutoScalingGroupName=name, Preferences={"InstanceWarmup": 60})
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        start(AutoScalingGroupName=name)
    assert error(caught) == (
        "InstanceRefreshInProgress",
        "An Instance Refresh is already in progress and blocks the execution of this Instance "
        "Refresh.",
    )
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        world.asg.rollback_instance_refresh(AutoScalingGroupName=name)
    assert error(caught)[0] == "IrreversibleInstanceRefresh"
    assert (
        world.asg.cancel_instance_refresh(AutoScalingGroupName=name)["InstanceRefreshId"]
        == (first["InstanceRefreshId"])
    )
    world.wait_refresh(name, first["InstanceRefreshId"], LOOP, ["Cancelled"])


def test_history_is_listed_newest_first_and_filtered(plain):
    world = World(plain)
    name = world.group(desired=1)
    ids = []
    for _ in range(3):
        ids.append(
            world.asg.start_instance_refresh(
                AutoScalingGroupName=name, Preferences={"SkipMatching": True}
            )["InstanceRefreshId"]
        )
        world.wait_refresh(name, ids[-1], LOOP)
    listing = world.asg.describe_instance_refreshes(AutoScalingGroupName=name)
    assert [r["InstanceRefreshId"] for r in listing["InstanceRefreshes"]] == ids[::-1]
    page = world.asg.describe_instance_refreshes(AutoScalingGroupName=name, MaxRecords=2)
    assert [r["InstanceRefreshId"] for r in page["InstanceRefreshes"]] == ids[:0:-1]
    rest = world.asg.describe_instance_refreshes(
        AutoScalingGroupName=name, MaxRecords=2, NextToken=page["NextToken"]
    )
    assert [r["InstanceRefreshId"] for r in rest["InstanceRefreshes"]] == ids[:1]
    [only] = world.asg.describe_instance_refreshes(
        AutoScalingGroupName=name, InstanceRefreshIds=[ids[1]]
    )["InstanceRefreshes"]
    assert only["InstanceRefreshId"] == ids[1]
    assert only["AutoScalingGroupName"] == name
    assert only["Strategy"] == "Rolling"
    assert only["Preferences"]["SkipMatching"] is True
    assert only["Preferences"]["MinHealthyPercentage"] == 90, "AWS's default"
    assert only["EndTime"] >= only["StartTime"]


# ---------------------------------------------------------------- no data plane


def test_refresh_replaces_every_instance_without_a_data_plane(plain):
    world = World(plain)
    world.template(versions=1)
    name = world.group(version="$Latest", desired=2)
    old = set(on_version(world, name))
    world.add_version(2)
    with Watch(world, name) as watch:
        refresh_id = world.asg.start_instance_refresh(
            AutoScalingGroupName=name,
            **prefs(MinHealthyPercentage=100, MaxHealthyPercentage=200, InstanceWarmup=1),
        )["InstanceRefreshId"]
        pending = world.refresh(name, refresh_id)
        assert pending["Status"] == "Pending"
        assert (pending["PercentageComplete"], pending["InstancesToUpdate"]) == (0, 2)
        world.wait_refresh(name, refresh_id, LOOP, ["InProgress"])
        done = world.wait_refresh(name, refresh_id, 2 * LOOP)
    assert done["Status"] == "Successful", done
    assert (done["PercentageComplete"], done["InstancesToUpdate"]) == (100, 0)
    now = on_version(world, name)
    assert set(now.values()) == {"2"}
    assert not old & set(now)
    assert set(world.images_of(now).values()) == {world.image(2)}
    assert {d for _, d in watch.seen} == {2}, "DescribeAutoScalingGroups keeps the user's desired"
    assert min(s for s, _ in watch.seen) >= 2, "surge: never below desired"
    assert max(s for s, _ in watch.seen) > 2, "the surge was seen"
    assert "LaunchTemplate" in world.describe(name)
    assert world.describe(name)["LaunchTemplate"]["Version"] == "$Latest", "no desired config"


def test_skip_matching_with_nothing_to_replace_succeeds_at_once(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="2", desired=2)
    before = set(on_version(world, name))
    refresh_id = world.asg.start_instance_refresh(
        AutoScalingGroupName=name,
        DesiredConfiguration=lt(world, "2"),
        Preferences={"SkipMatching": True},
    )["InstanceRefreshId"]
    done = world.wait_refresh(name, refresh_id, LOOP)
    assert done["Status"] == "Successful"
    assert (done["PercentageComplete"], done["InstancesToUpdate"]) == (100, 0)
    assert set(on_version(world, name)) == before, "nothing replaced"


def test_bake_time_is_spent_baking_before_success(plain):
    world = World(plain)
    name = world.group(desired=0)
    refresh_id = world.asg.start_instance_refresh(AutoScalingGroupName=name, **prefs(BakeTime=2))[
        "InstanceRefreshId"
    ]
    baking = world.wait_refresh(name, refresh_id, LOOP, ["Baking"])
    assert baking["PercentageComplete"] == 100
    assert "EndTime" not in baking
    done = world.wait_refresh(name, refresh_id, LOOP)
    assert done["Status"] == "Successful"
    assert (done["EndTime"] - done["StartTime"]).total_seconds() >= 2


def test_checkpoints_pause_and_desired_configuration_applies(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="1", desired=4)
    refresh_id = world.asg.start_instance_refresh(
        AutoScalingGroupName=name,
        DesiredConfiguration=lt(world, "2"),
        Preferences={
            "MinHealthyPercentage": 50,
            "InstanceWarmup": 0,
            "CheckpointPercentages": [50, 100],
            "CheckpointDelay": 3,
        },
    )["InstanceRefreshId"]
    paused = world.wait_refresh(
        name,
        refresh_id,
        LOOP,
        ["InProgress"],
        until=lambda r: "checkpoint" in r.get("StatusReason", ""),
    )
    assert "checkpoint 1 of 2 (50%" in paused["StatusReason"], paused
    assert (paused["PercentageComplete"], paused["InstancesToUpdate"]) == (50, 2)
    assert sorted(on_version(world, name).values()) == ["1", "1", "2", "2"]
    assert world.describe(name)["LaunchTemplate"]["Version"] == "1", "not before success"
    # AWS: while a refresh with a desired configuration runs, the group's
    # launch template cannot change; other settings can
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        world.asg.update_auto_scaling_group(AutoScalingGroupName=name, **lt(world, "2"))
    assert "active instance refresh with a desired configuration" in error(caught)[1]
    world.asg.update_auto_scaling_group(AutoScalingGroupName=name, MaxSize=9)
    time.sleep(0.5)
    assert world.refresh(name, refresh_id)["Status"] == "InProgress", "still at the checkpoint"
    done = world.wait_refresh(name, refresh_id, LOOP)
    assert done["Status"] == "Successful", done
    assert set(on_version(world, name).values()) == {"2"}
    assert world.describe(name)["LaunchTemplate"]["Version"] == "2", "desired config applied"
    assert done["DesiredConfiguration"] == lt(world, "2")


def test_a_last_checkpoint_below_100_ends_the_refresh_after_its_pause(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="1", desired=2)
    refresh_id = world.asg.start_instance_refresh(
        AutoScalingGroupName=name,
        DesiredConfiguration=lt(world, "2"),
        **prefs(
            MinHealthyPercentage=50,
            InstanceWarmup=0,
            CheckpointPercentages=[50],
            CheckpointDelay=1,
        ),
    )["InstanceRefreshId"]
    paused = world.wait_refresh(
        name,
        refresh_id,
        LOOP,
        ["InProgress"],
        until=lambda r: "checkpoint" in r.get("StatusReason", ""),
    )
    assert "checkpoint 1 of 1 (50%" in paused["StatusReason"], paused
    done = world.wait_refresh(name, refresh_id, LOOP)
    assert done["Status"] == "Successful", done
    assert (done["PercentageComplete"], done["InstancesToUpdate"]) == (50, 1)
    assert sorted(on_version(world, name).values()) == ["1", "2"], "half the group replaced"


def test_rollback_on_request_puts_the_previous_version_back(plain):
    world = World(plain)
    world.template(versions=2)
    name = world.group(version="1", desired=2)
    refresh_id = world.asg.start_instance_refresh(
        AutoScalingGroupName=name,
        DesiredConfiguration=lt(world, "2"),
        **prefs(MinHealthyPercentage=50, MaxHealthyPercentage=100, InstanceWarmup=3),
    )["InstanceRefreshId"]
    world.wait_refresh(
        name,
        refresh_id,
        LOOP,
        ["InProgress"],
        until=lambda r: "warming up" in r.get("StatusReason", ""),
    )
    assert sorted(on_version(world, name).values()) == ["1", "2"], "one replaced, warming up"
    assert world.asg.rollback_instance_refresh(AutoScalingGroupName=name)["InstanceRefreshId"] == (
        refresh_id
    )
    rolling = world.refresh(name, refresh_id)
    assert rolling["Status"] == "RollbackInProgress"
    assert rolling["RollbackDetails"]["InstancesToUpdateOnRollback"] == 2
    done = world.wait_refresh(name, refresh_id, LOOP)
    assert done["Status"] == "RollbackSuccessful", done
    assert set(on_version(world, name).values()) == {"1"}
    assert done["PercentageComplete"] == 0
    assert world.describe(name)["LaunchTemplate"]["Version"] == "1"


# ---------------------------------------------------------------- data plane


def test_surge_refresh_waits_for_healthy_targets(dp):
    world = World(dp)
    world.template(versions=2)
    tg = world.target_group(delay=30)
    name = world.group(version="1", desired=2, target_groups=[tg], grace=3)
    old = set(on_version(world, name))
    with Player(world, [tg], drain=False) as player, Watch(world, name) as watch:
        refresh_id = world.asg.start_instance_refresh(
            AutoScalingGroupName=name,
            DesiredConfiguration=lt(world, "2"),
            **prefs(MinHealthyPercentage=100, MaxHealthyPercentage=200, InstanceWarmup=0),
        )["InstanceRefreshId"]
        # the surge goes out first; the old instances stay until the new are healthy
        wait_for(lambda: len(world.in_service(name)) == 4, LOOP, "the surge launched", dp)
        terminating = wait_for(
            lambda: [i["InstanceId"] for i in world.instances(name, ["Terminating"])],
            LOOP,
            "old instances Terminating once the new are healthy",
            dp,
        )
        assert set(terminating) == old
        new = set(on_version(world, name)) - old
        healthy = {r["id"] for r in player.reported if r["state"] == "healthy"}
        assert new <= healthy, "retired only after its replacements were reported healthy"
        # draining: still Terminating until the data plane says drained, and
        # the refresh ends only once its old instances are gone
        wait_for(
            lambda: (
                "Waiting for instances to terminate"
                in (world.refresh(name, refresh_id).get("StatusReason") or "")
            ),
            LOOP,
            "the refresh waiting for its old instances to terminate",
            dp,
        )
        assert world.refresh(name, refresh_id)["Status"] == "InProgress"
        assert {i["LifecycleState"] for i in world.instances(name) if i["InstanceId"] in old} == {
            "Terminating"
        }
        player.drain = True
        done = world.wait_refresh(name, refresh_id, LOOP)
        assert done["Status"] == "Successful", done
        assert len(world.instances(name)) == 2
    assert min(s for s, _ in watch.seen) >= 2
    assert {d for _, d in watch.seen} == {2}
    assert world.describe(name)["LaunchTemplate"]["Version"] == "2"


def test_failing_new_instances_fail_the_refresh_and_roll_back(dp):
    world = World(dp)
    world.template(versions=2)
    tg = world.target_group(delay=1)
    name = world.group(version="1", desired=2, target_groups=[tg], grace=3)
    old = set(on_version(world, name))
    with Player(world, [tg], sick_images=[world.image(2)]):
        refresh_id = world.asg.start_instance_refresh(
            AutoScalingGroupName=name,
            DesiredConfiguration=lt(world, "2"),
            Preferences={
                "MinHealthyPercentage": 50,
                "MaxHealthyPercentage": 100,
                "InstanceWarmup": 0,
                "AutoRollback": True,
            },
        )["InstanceRefreshId"]
        world.wait_refresh(name, refresh_id, LOOP, ["RollbackInProgress"])
        done = world.wait_refresh(name, refresh_id, 2 * LOOP)
    assert done["Status"] == "RollbackSuccessful", done
    reason = done["RollbackDetails"]["RollbackReason"]
    assert done["StatusReason"] == reason
    assert (
        "is unhealthy (Target.FailedHealthChecks: Health checks failed with these codes: [500])"
        in reason
    )
    assert "in target group" in reason
    sick = [i for i in reason.split() if i.startswith("i-")]
    assert sick, reason
    assert world.images_of(sick[:1])[sick[0]] == world.image(2), "names the new instance"
    assert done["RollbackDetails"]["PercentageCompleteOnRollback"] == 0
    assert done["RollbackDetails"]["InstancesToUpdateOnRollback"] == 2
    now = on_version(world, name)
    assert set(now.values()) == {"1"}, now
    assert len(now) == 2
    assert len(old & set(now)) == 1, "one old instance was replaced, then rolled back"
    assert world.describe(name)["LaunchTemplate"]["Version"] == "1"


def test_a_failing_surge_batch_goes_and_every_old_instance_stays(dp):
    """Above 100 % max healthy the new instance is launched beside the old
    ones: when it fails, it is what goes (it replaced nothing yet), never an
    old instance picked by the scale-in order, so capacity never dips. As in
    a fleet after a first release: the group already went through a
    successful refresh (its version set by the refresh)."""
    world = World(dp)
    world.template(versions=3)
    tg = world.target_group(delay=1)
    name = world.group(version="1", desired=2, target_groups=[tg], grace=3)
    prefs = {
        "MinHealthyPercentage": 100,
        "MaxHealthyPercentage": 150,
        "InstanceWarmup": 0,
        "AutoRollback": True,
    }
    with Player(world, [tg], sick_images=[world.image(3)]):
        first = world.asg.start_instance_refresh(
            AutoScalingGroupName=name, DesiredConfiguration=lt(world, "2"), Preferences=prefs
        )["InstanceRefreshId"]
        assert world.wait_refresh(name, first, 2 * LOOP)["Status"] == "Successful"
        old = set(on_version(world, name))
        refresh_id = world.asg.start_instance_refresh(
            AutoScalingGroupName=name, DesiredConfiguration=lt(world, "3"), Preferences=prefs
        )["InstanceRefreshId"]
        done = world.wait_refresh(name, refresh_id, 2 * LOOP)
        states = {i["InstanceId"]: i["LifecycleState"] for i in world.describe(name)["Instances"]}
    assert done["Status"] == "RollbackSuccessful", done
    assert set(on_version(world, name)) == old, "the old instances all stayed"
    assert all(states[i] == "InService" for i in old), states


def test_an_unhealthy_new_instance_is_waited_for_within_its_grace_period(dp):
    """A booting instance fails its first checks: within the group's
    health-check grace period the refresh waits (AWS's grace period exists
    for this); once it is over, the instance unhealthy fails the refresh."""
    world = World(dp)
    world.template(versions=2)
    tg = world.target_group(delay=1)
    name = world.group(version="1", desired=1, target_groups=[tg], grace=4)
    with Player(world, [tg], sick_images=[world.image(2)]):
        refresh_id = world.asg.start_instance_refresh(
            AutoScalingGroupName=name,
            DesiredConfiguration=lt(world, "2"),
            **prefs(MinHealthyPercentage=100, MaxHealthyPercentage=200, InstanceWarmup=1),
        )["InstanceRefreshId"]
        wait_for(
            lambda: (
                "(health-check grace period)"
                in (world.refresh(name, refresh_id).get("StatusReason") or "")
            ),
            LOOP,
            "the refresh waiting on an unhealthy instance within its grace period",
            dp,
        )
        assert world.refresh(name, refresh_id)["Status"] == "InProgress"
        done = world.wait_refresh(name, refresh_id, 2 * LOOP)
    assert done["Status"] == "Failed", done
    assert "is unhealthy (Target.FailedHealthChecks" in done["StatusReason"], done
    assert "in target group" in done["StatusReason"]
    assert done["EndTime"] >= done["StartTime"]
    assert (done["EndTime"] - done["StartTime"]).total_seconds() >= 3, done
    wait_for(
        lambda: set(on_version(world, name).values()) == {"1"} and len(world.in_service(name)) == 1,
        LOOP,
        "the surge instance removed, the old one kept",
        dp,
    )
    assert world.describe(name)["LaunchTemplate"]["Version"] == "1"
