#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""Start, roll back or cancel an EC2 Auto Scaling instance refresh."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_instance_refresh
short_description: Start an instance refresh to a launch-template version; roll back or cancel one
description:
  - C(state=started) starts an instance refresh of the group towards O(launch_template_name)
    version O(launch_template_version) (the refresh's desired configuration, which becomes the
    group's when the refresh succeeds), with the given preferences. When a refresh of the group
    is already in progress towards the same configuration, it is returned unchanged (a resumed
    release); towards another one, the module fails.
  - C(state=rolled_back) rolls back the group's refresh in progress (RollbackInstanceRefresh);
    C(state=cancelled) cancels it. Nothing happens when none is in progress.
  - Returns the refresh as DescribeInstanceRefreshes reports it (snake_case).
  - Why a module of our own, beside amazon.aws.autoscaling_instance_refresh (amazon.aws 11):
    that module sends no DesiredConfiguration and knows neither AutoRollback, checkpoints
    nor RollbackInstanceRefresh. Without a desired configuration AWS cannot roll a failed
    refresh back, and the group would have to run $Default, so that switching the template's
    default version would change what every later launch runs before the refresh proved it.
options:
  name: {description: Auto Scaling group name., type: str, required: true}
  state:
    description: What to do.
    type: str
    choices: [started, rolled_back, cancelled]
    default: started
  launch_template_name: {description: Launch template of the desired configuration., type: str}
  launch_template_version:
    description: Its version (a number, so that the refresh can be rolled back).
    type: str
  min_healthy_percentage:
    description: Capacity kept in service (percent of desired).
    type: int
    default: 100
  max_healthy_percentage:
    description: Capacity allowed during the refresh; above 100 launches before it terminates.
    type: int
    default: 200
  instance_warmup: {description: Seconds a new instance warms up before it counts., type: int}
  skip_matching:
    description: Leave instances that already run the desired configuration.
    type: bool
    default: true
  auto_rollback:
    description: Replace what the refresh replaced when it fails (needs a numbered version).
    type: bool
    default: true
  checkpoint_percentages:
    description: Pause at these percentages complete.
    type: list
    elements: int
  checkpoint_delay: {description: Seconds of each pause., type: int}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
instance_refresh:
  description: The refresh (DescribeInstanceRefreshes, snake_case); empty when none.
  type: dict
  returned: always
"""

import contextlib

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")


def refreshes(client, group: str) -> list[dict]:
    return client.describe_instance_refreshes(AutoScalingGroupName=group).get(
        "InstanceRefreshes", []
    )


def active(client, group: str) -> dict | None:
    return next((r for r in refreshes(client, group) if r.get("Status") in ACTIVE), None)


def described(client, group: str, refresh_id: str) -> dict:
    found = client.describe_instance_refreshes(
        AutoScalingGroupName=group, InstanceRefreshIds=[refresh_id]
    ).get("InstanceRefreshes", [])
    return found[0] if found else {"InstanceRefreshId": refresh_id}


def snake(refresh: dict | None) -> dict:
    if not refresh:
        return {}
    out = camel_dict_to_snake_dict(refresh)
    # datetimes to strings (JSON)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.items()}


def preferences(p: dict) -> dict:
    prefs = {
        "MinHealthyPercentage": p["min_healthy_percentage"],
        "MaxHealthyPercentage": p["max_healthy_percentage"],
        "SkipMatching": p["skip_matching"],
        "AutoRollback": p["auto_rollback"],
    }
    if p["instance_warmup"] is not None:
        prefs["InstanceWarmup"] = p["instance_warmup"]
    if p["checkpoint_percentages"]:
        prefs["CheckpointPercentages"] = p["checkpoint_percentages"]
        if p["checkpoint_delay"] is not None:
            prefs["CheckpointDelay"] = p["checkpoint_delay"]
    return prefs


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(
                type="str", choices=["started", "rolled_back", "cancelled"], default="started"
            ),
            launch_template_name=dict(type="str"),
            launch_template_version=dict(type="str"),
            min_healthy_percentage=dict(type="int", default=100),
            max_healthy_percentage=dict(type="int", default=200),
            instance_warmup=dict(type="int"),
            skip_matching=dict(type="bool", default=True),
            auto_rollback=dict(type="bool", default=True),
            checkpoint_percentages=dict(type="list", elements="int"),
            checkpoint_delay=dict(type="int"),
        ),
        required_if=[("state", "started", ["launch_template_name", "launch_template_version"])],
        supports_check_mode=True,
    )
    p = module.params
    group = p["name"]
    client = module.client("autoscaling")
    try:
        current = active(client, group)
        if p["state"] == "started":
            want = {
                "LaunchTemplateName": p["launch_template_name"],
                "Version": str(p["launch_template_version"]),
            }
            if current is not None:
                have = (current.get("DesiredConfiguration") or {}).get("LaunchTemplate") or {}
                if (
                    have.get("LaunchTemplateName") == want["LaunchTemplateName"]
                    and str(have.get("Version")) == want["Version"]
                    and current.get("Status") in ("Pending", "InProgress", "Baking")
                ):
                    module.exit_json(changed=False, instance_refresh=snake(current))
                module.fail_json(
                    msg=(
                        f"group {group} already has instance refresh "
                        f"{current['InstanceRefreshId']} ({current.get('Status')}) towards "
                        f"{have or 'its own configuration'}; "
                        "wait for it to end, or cancel it"
                    ),
                    instance_refresh=snake(current),
                )
            if module.check_mode:
                module.exit_json(changed=True, instance_refresh={})
            started = client.start_instance_refresh(
                AutoScalingGroupName=group,
                Strategy="Rolling",
                DesiredConfiguration={"LaunchTemplate": want},
                Preferences=preferences(p),
            )
            module.exit_json(
                changed=True,
                instance_refresh=snake(described(client, group, started["InstanceRefreshId"])),
            )
        if current is None:
            module.exit_json(changed=False, instance_refresh={})
        if module.check_mode:
            module.exit_json(changed=True, instance_refresh=snake(current))
        if p["state"] == "rolled_back":
            if current.get("Status") == "RollbackInProgress":
                module.exit_json(changed=False, instance_refresh=snake(current))
            client.rollback_instance_refresh(AutoScalingGroupName=group)
        else:
            if current.get("Status") == "Cancelling":
                module.exit_json(changed=False, instance_refresh=snake(current))
            client.cancel_instance_refresh(AutoScalingGroupName=group)
        module.exit_json(
            changed=True,
            instance_refresh=snake(described(client, group, current["InstanceRefreshId"])),
        )
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"instance refresh of {group}")


if __name__ == "__main__":
    main()
