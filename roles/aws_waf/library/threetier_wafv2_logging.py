#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""A WAFv2 web ACL's logging configuration, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_wafv2_logging
short_description: Where a WAFv2 web ACL logs, and what it leaves out, written only when it differs
description:
  - community.aws has web ACL and association modules but none for logging.
    This one reads the web ACL's logging configuration
    (GetLoggingConfiguration), compares its destinations and redacted
    headers with the wanted ones, and calls PutLoggingConfiguration only
    when they differ.
  - state=absent deletes the configuration when there is one.
  - Check mode is supported.
options:
  web_acl_arn: {description: The web ACL's ARN., type: str, required: true}
  destination_arn:
    description:
      - Where the logs go; required when state=present. A CloudWatch Logs log
        group's ARN (its name starts with aws-waf-logs-), without the trailing :*.
    type: str
  redacted_headers:
    description: Request headers whose values never reach the logs (lower case).
    type: list
    elements: str
    default: []
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
- name: The web ACL logs to its log group, without credentials
  threetier_wafv2_logging:
    web_acl_arn: "{{ acl.arn }}"
    destination_arn: arn:aws:logs:eu-west-1:123456789012:log-group:aws-waf-logs-threetier-production
    redacted_headers: [authorization, cookie]
"""

RETURN = r"""
logging_configuration:
  description: The configuration now in place (empty when absent).
  returned: always
  type: dict
"""

import contextlib

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

NOT_FOUND = "WAFNonexistentItemException"


def current(module, client, arn):
    """The web ACL's logging configuration, or {} when it has none."""
    try:
        return client.get_logging_configuration(ResourceArn=arn)["LoggingConfiguration"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == NOT_FOUND:
            return {}
        module.fail_json_aws(e, msg=f"cannot read the logging configuration of {arn}")
    except BotoCoreError as e:
        module.fail_json_aws(e, msg=f"cannot read the logging configuration of {arn}")
    return {}


def wanted(arn, destination, headers):
    config = {"ResourceArn": arn, "LogDestinationConfigs": [destination]}
    if headers:
        config["RedactedFields"] = [{"SingleHeader": {"Name": h}} for h in headers]
    return config


def same(have, want):
    """Destinations and redacted fields decide; the rest is AWS's own."""
    keys = ("LogDestinationConfigs", "RedactedFields")
    return all((have.get(k) or []) == (want.get(k) or []) for k in keys)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            web_acl_arn=dict(type="str", required=True),
            destination_arn=dict(type="str"),
            redacted_headers=dict(type="list", elements="str", default=[], no_log=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["destination_arn"])],
        supports_check_mode=True,
    )
    arn, state = module.params["web_acl_arn"], module.params["state"]
    client = module.client("wafv2")
    have = current(module, client, arn)

    if state == "absent":
        if not have:
            module.exit_json(changed=False, logging_configuration={})
        if not module.check_mode:
            try:
                client.delete_logging_configuration(ResourceArn=arn)
            except (BotoCoreError, ClientError) as e:
                module.fail_json_aws(e, msg=f"cannot delete the logging configuration of {arn}")
        module.exit_json(changed=True, logging_configuration={})

    destination = module.params["destination_arn"]
    if destination.endswith(":*"):
        module.fail_json(msg=f"destination_arn: the log group's ARN without ':*' ({destination})")
    headers = [h.lower() for h in module.params["redacted_headers"]]
    want = wanted(arn, destination, headers)
    if have and same(have, want):
        module.exit_json(changed=False, logging_configuration=have)
    if not module.check_mode:
        try:
            put = client.put_logging_configuration(LoggingConfiguration=want)
            have = put["LoggingConfiguration"]
        except (BotoCoreError, ClientError) as e:
            module.fail_json_aws(e, msg=f"cannot write the logging configuration of {arn}")
    module.exit_json(changed=True, logging_configuration=have if not module.check_mode else want)


if __name__ == "__main__":
    main()
