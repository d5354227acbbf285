#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""A CloudFront origin access control, found by its name."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_cloudfront_oac
short_description: A CloudFront origin access control (OAC) for an S3 origin, by name
description:
  - community.aws has a module for origin access identities (the legacy way)
    but none for origin access controls, which AWS recommends instead: the
    distribution signs its requests to the bucket (SigV4) and the bucket's
    policy allows only that distribution.
  - Found by its name (names are unique per account); created, updated where
    its description or signing differs, or deleted (state=absent; a control
    a distribution still uses cannot be deleted, so remove the distribution
    first).
  - Check mode is supported.
options:
  name: {description: The control's name (unique in the account)., type: str, required: true}
  description: {description: What it is for., type: str, default: ""}
  signing_behavior:
    description: When CloudFront signs its requests to the origin.
    type: str
    choices: [always, never, no-override]
    default: always
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
- name: The page bucket's origin access control
  threetier_cloudfront_oac:
    name: threetier-production-page
    description: "threetier-production: CloudFront reads the page from the artifact bucket"
"""

RETURN = r"""
id:
  description: The control's id (what an origin's OriginAccessControlId names); empty when absent.
  returned: always
  type: str
"""

import contextlib

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def find(client, name):
    """The control's summary by name, or None."""
    kwargs = {}
    while True:
        page = client.list_origin_access_controls(**kwargs)["OriginAccessControlList"]
        for item in page.get("Items") or []:
            if item["Name"] == name:
                return item
        if not page.get("IsTruncated"):
            return None
        kwargs["Marker"] = page["NextMarker"]


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            description=dict(type="str", default=""),
            signing_behavior=dict(
                type="str", choices=["always", "never", "no-override"], default="always"
            ),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    client = module.client("cloudfront")
    want = {
        "Name": p["name"],
        "Description": p["description"],
        "SigningProtocol": "sigv4",
        "SigningBehavior": p["signing_behavior"],
        "OriginAccessControlOriginType": "s3",
    }
    try:
        have = find(client, p["name"])
        if p["state"] == "absent":
            if have is None:
                module.exit_json(changed=False, id="")
            if not module.check_mode:
                etag = client.get_origin_access_control(Id=have["Id"])["ETag"]
                client.delete_origin_access_control(Id=have["Id"], IfMatch=etag)
            module.exit_json(changed=True, id="")
        if have is None:
            if module.check_mode:
                module.exit_json(changed=True, id="")
            made = client.create_origin_access_control(OriginAccessControlConfig=want)
            module.exit_json(changed=True, id=made["OriginAccessControl"]["Id"])
        if all(have.get(k) == v for k, v in want.items()):
            module.exit_json(changed=False, id=have["Id"])
        if not module.check_mode:
            etag = client.get_origin_access_control(Id=have["Id"])["ETag"]
            client.update_origin_access_control(
                Id=have["Id"], IfMatch=etag, OriginAccessControlConfig=want
            )
        module.exit_json(changed=True, id=have["Id"])
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"origin access control {p['name']}")


if __name__ == "__main__":
    main()
