#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""Roll a launch template to a new AMI (a copied version), or back to a version."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_launch_template_version
short_description: New AMI as a new default launch-template version; or restore a default
description:
  - With O(image_id), makes a new version of the template that is the current
    default version's data with only ImageId changed (SourceVersion = the
    default), and makes it the default. Nothing changes when the default
    version already uses that image (idempotent).
  - With O(default_version), makes that existing version the default again
    (the roll-back of a failed rollout). Nothing changes when it already is.
  - Why a module of our own: amazon.aws.ec2_launch_template compares what it
    is given with the latest version and sends the whole data, so it can
    neither copy "the default version but another AMI" from partial input nor
    switch the default version without making another version.
options:
  template_name: {description: Launch template name., type: str, required: true}
  image_id: {description: AMI of the new default version., type: str}
  default_version: {description: Existing version to make the default., type: int}
  version_description: {description: Description of a new version., type: str, default: ''}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
previous_default_version: {description: Default version before., type: int, returned: always}
default_version: {description: Default version after., type: int, returned: always}
previous_image_id: {description: AMI of the previous default., type: str, returned: always}
image_id: {description: AMI of the default version after., type: str, returned: always}
created_version: {description: Version made (0 when none)., type: int, returned: always}
"""

import contextlib

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# Keys DescribeLaunchTemplateVersions returns that CreateLaunchTemplateVersion refuses.
READ_ONLY = ("Operator",)


def version_data(ec2, template_id, number):
    v = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[str(number)])[
        "LaunchTemplateVersions"
    ]
    if not v:
        return None
    return v[0]["LaunchTemplateData"]


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            template_name=dict(type="str", required=True),
            image_id=dict(type="str"),
            default_version=dict(type="int"),
            version_description=dict(type="str", default=""),
        ),
        required_one_of=[("image_id", "default_version")],
        mutually_exclusive=[("image_id", "default_version")],
        supports_check_mode=True,
    )
    p = module.params
    ec2 = module.client("ec2")
    try:
        found = ec2.describe_launch_templates(LaunchTemplateNames=[p["template_name"]])
    except ClientError as e:
        if "NotFound" in e.response.get("Error", {}).get("Code", ""):
            module.fail_json(msg=f"launch template {p['template_name']} does not exist")
        module.fail_json_aws(e, msg=f"describing launch template {p['template_name']}")
    except BotoCoreError as e:
        module.fail_json_aws(e, msg=f"describing launch template {p['template_name']}")
    if not found.get("LaunchTemplates"):
        module.fail_json(msg=f"launch template {p['template_name']} does not exist")
    lt = found["LaunchTemplates"][0]
    tid, default = lt["LaunchTemplateId"], lt["DefaultVersionNumber"]
    try:
        data = version_data(ec2, tid, default)
        result = dict(
            changed=False,
            previous_default_version=default,
            default_version=default,
            previous_image_id=data.get("ImageId", ""),
            image_id=data.get("ImageId", ""),
            created_version=0,
        )
        if p["default_version"] is not None:
            want = p["default_version"]
            if want != default:
                target = version_data(ec2, tid, want)
                if target is None:
                    module.fail_json(
                        msg=f"launch template {p['template_name']} has no version {want}"
                    )
                if not module.check_mode:
                    ec2.modify_launch_template(LaunchTemplateId=tid, DefaultVersion=str(want))
                result.update(changed=True, default_version=want, image_id=target.get("ImageId"))
            module.exit_json(**result)
        if data.get("ImageId") == p["image_id"]:
            module.exit_json(**result)
        new = {k: v for k, v in data.items() if k not in READ_ONLY}
        new["ImageId"] = p["image_id"]
        result.update(changed=True, image_id=p["image_id"])
        if module.check_mode:
            module.exit_json(**result)
        made = ec2.create_launch_template_version(
            LaunchTemplateId=tid,
            SourceVersion=str(default),
            VersionDescription=p["version_description"],
            LaunchTemplateData=new,
        )["LaunchTemplateVersion"]["VersionNumber"]
        ec2.modify_launch_template(LaunchTemplateId=tid, DefaultVersion=str(made))
        result.update(default_version=made, created_version=made)
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"rolling launch template {p['template_name']}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
