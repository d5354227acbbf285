#!/usr/bin/python
# ruff: noqa: E402, C408, SIM105  (Ansible module layout)
# Copyright: threetier contributors
"""Set attributes of an ELBv2 target group or load balancer, only those that differ."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_elbv2_attributes
short_description: Set attributes of an ELBv2 target group or load balancer
description:
  - community.aws.elb_target_group 11.x has no option for slow start
    (C(slow_start.duration_seconds)). amazon.aws.elb_application_lb reads
    attributes such as C(idle_timeout.timeout_seconds) back without checking
    they exist, and moto 5.2.5 only lists them once they were set, so the
    module fails on its second run there. The kit sets these attributes with
    this module instead, one code path for AWS and the emulator.
  - Changes only the attributes that differ from the wanted values.
options:
  arn: {description: ARN of the target group or load balancer., type: str, required: true}
  attributes: {description: Attribute key -> value (strings)., type: dict, required: true}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
attributes:
  description: The target group's attributes after the change.
  returned: always
  type: dict
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # handled by AnsibleAWSModule
    pass

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            arn=dict(type="str", required=True),
            attributes=dict(type="dict", required=True),
        ),
        supports_check_mode=True,
    )
    elb = module.client("elbv2")
    arn = module.params["arn"]
    is_lb = ":loadbalancer/" in arn
    describe = (
        elb.describe_load_balancer_attributes if is_lb else elb.describe_target_group_attributes
    )
    modify = elb.modify_load_balancer_attributes if is_lb else elb.modify_target_group_attributes
    key = {"LoadBalancerArn": arn} if is_lb else {"TargetGroupArn": arn}
    want = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in module.params["attributes"].items()
    }
    try:
        have = {a["Key"]: a["Value"] for a in describe(**key)["Attributes"]}
        diff = {k: v for k, v in want.items() if have.get(k) != v}
        if diff and not module.check_mode:
            modify(**key, Attributes=[{"Key": k, "Value": v} for k, v in diff.items()])
            have.update(diff)
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"could not set the attributes of {arn}")
    module.exit_json(changed=bool(diff), attributes=have)


if __name__ == "__main__":
    main()
