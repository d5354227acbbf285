#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""Create, update or delete one CloudWatch dashboard, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_cloudwatch_dashboard
short_description: One CloudWatch dashboard, written only when its body differs
description:
  - The amazon.aws collection of this kit has no dashboard module. This one
    reads the dashboard (GetDashboard), compares its body with the wanted one
    as JSON (key order and formatting do not count), and calls PutDashboard
    only when they differ. An invalid body fails the task; CloudWatch's
    validation warnings are shown as warnings.
  - state=absent deletes the dashboard when it exists.
  - Check mode and diff mode are supported.
options:
  name: {description: Dashboard name., type: str, required: true}
  body:
    description: The dashboard body (widgets...), as a dict; required when state=present.
    type: dict
  state:
    description: present or absent.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The environment's dashboard
  threetier_cloudwatch_dashboard:
    name: threetier-production
    body:
      widgets:
        - type: metric
          properties:
            title: Requests
            region: eu-west-1
            metrics: [[AWS/ApplicationELB, RequestCount, LoadBalancer, app/x/123]]
"""

RETURN = r"""
dashboard_arn:
  description: ARN of the dashboard (empty when absent).
  returned: always
  type: str
body:
  description: The body now in place (empty when absent).
  returned: always
  type: dict
"""

import contextlib
import json

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

NOT_FOUND = ("ResourceNotFound", "ResourceNotFoundException")


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def current(module, client, name):
    """(arn, body) of the dashboard, or (None, None) when there is none."""
    try:
        found = client.get_dashboard(DashboardName=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in NOT_FOUND:
            return None, None
        module.fail_json_aws(e, msg=f"cannot read dashboard {name}")
    except BotoCoreError as e:
        module.fail_json_aws(e, msg=f"cannot read dashboard {name}")
    try:
        body = json.loads(found.get("DashboardBody") or "{}")
    except ValueError:
        body = {"unparsable": found.get("DashboardBody")}
    return found.get("DashboardArn", ""), body


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            body=dict(type="dict"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["body"])],
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    client = module.client("cloudwatch")
    arn, have = current(module, client, name)

    if state == "absent":
        if have is None:
            module.exit_json(changed=False, dashboard_arn="", body={})
        if not module.check_mode:
            try:
                client.delete_dashboards(DashboardNames=[name])
            except (BotoCoreError, ClientError) as e:
                module.fail_json_aws(e, msg=f"cannot delete dashboard {name}")
        module.exit_json(
            changed=True, dashboard_arn="", body={}, diff={"before": have, "after": {}}
        )

    want = module.params["body"]
    if not isinstance(want.get("widgets"), list) or not want["widgets"]:
        module.fail_json(msg=f"dashboard {name}: the body needs a non-empty list of widgets")
    if have is not None and canonical(have) == canonical(want):
        module.exit_json(changed=False, dashboard_arn=arn, body=have)
    if not module.check_mode:
        try:
            result = client.put_dashboard(DashboardName=name, DashboardBody=canonical(want))
        except (BotoCoreError, ClientError) as e:
            module.fail_json_aws(e, msg=f"cannot write dashboard {name}")
        # errors raise (InvalidParameterInput); what comes back are warnings:
        # saved, but some widget may not render
        for message in result.get("DashboardValidationMessages") or []:
            where = message.get("DataPath", "")
            module.warn(f"dashboard {name}: {where}: {message.get('Message')}")
        arn, _ = current(module, client, name)
    module.exit_json(
        changed=True, dashboard_arn=arn or "", body=want, diff={"before": have or {}, "after": want}
    )


if __name__ == "__main__":
    main()
