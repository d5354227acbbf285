#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""This account's own copy of an AMI (shared by another account, or of another
region), tagged at its creation."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_ami_copy
short_description: Copy an AMI into this account and region, tagged on creation; once
description:
  - Finds this account's AMI carrying every tag of O(match_tags) (state pending
    or available). When there is one, nothing changes (idempotent): its id and
    state are returned, also while a copy started earlier is still pending.
  - Otherwise copies O(source_image_id) of O(source_region) (an AMI of this
    account, or one another account shared with it: its launch permission and
    its snapshots' createVolumePermission) into this account and region. The
    new AMI and its snapshots get O(tags) in the copy request itself
    (TagSpecifications), so no untagged resource ever exists and the copy
    needs no right to tag what is not the kit's. The copy is pending until
    AWS has copied its snapshots; the module does not wait (the caller polls).
  - Refuses, before copying (also in check mode, which makes it a check of a
    copy to come), when the source AMI is not visible to this account, when
    its snapshots are not shared with this account (DescribeSnapshots leaves
    out a snapshot one may not read; AWS would refuse to read the AMI's
    storage), or when an AMI of this account already has O(name) (AWS would
    refuse the copy) without the tags of O(match_tags).
  - Why a module of our own - community.aws.ec2_ami_copy tags the copy after it
    exists (an untagged image and untagged snapshots, then CreateTags on them),
    and its lookup of an earlier copy by tags is not limited to this account's
    own images.
options:
  source_image_id: {description: The AMI to copy., type: str, required: true}
  source_region: {description: Its region., type: str, required: true}
  name:
    description: Name of the copy (unique among this account's AMIs of the region).
    type: str
    required: true
  description: {description: Description of the copy., type: str, default: ''}
  tags: {description: Tags of the copy and of its snapshots., type: dict, required: true}
  match_tags:
    description: The tags (a subset of O(tags)) that identify an earlier copy of the same AMI.
    type: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
image_id: {description: This account's AMI (the copy), type: str, returned: always}
state: {description: Its state (pending while AWS copies it)., type: str, returned: always}
copied: {description: Whether this run started the copy., type: bool, returned: always}
"""

import contextlib

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

LIVE = ["pending", "available"]


def own_images(ec2, filters):
    return ec2.describe_images(Owners=["self"], Filters=filters)["Images"]


def unreadable_source(module, image_id, region):
    """Why this account cannot copy the AMI ('' when it can): not visible, or
    a snapshot of it not shared (createVolumePermission)."""
    ec2 = module.client("ec2", region=region)
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "InvalidAMIID.NotFound":
            raise
        images = []
    if not images:
        return f"AMI {image_id} of {region} is not visible to this account (not shared with it)"
    image = images[0]
    wanted = [b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) if "Ebs" in b]
    try:
        seen = (
            {s["SnapshotId"] for s in ec2.describe_snapshots(SnapshotIds=wanted)["Snapshots"]}
            if wanted
            else set()
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "InvalidSnapshot.NotFound":
            raise
        seen = set()
    hidden = [w for w in wanted if w not in seen]
    if hidden:
        owner = image.get("OwnerId", "")
        return (
            f"AMI {image_id} ({image.get('Name', '')}) of {owner} is shared but not its "
            f"snapshot(s) {', '.join(hidden)}: the account that baked it must share them too "
            "(createVolumePermission; playbooks/images.yml does, with "
            "aws_image_bake_share_accounts naming this account); nothing was copied"
        )
    return ""


def tag_list(tags):
    return [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            source_image_id=dict(type="str", required=True),
            source_region=dict(type="str", required=True),
            name=dict(type="str", required=True),
            description=dict(type="str", default=""),
            tags=dict(type="dict", required=True),
            match_tags=dict(type="dict", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    extra = {k: v for k, v in p["match_tags"].items() if str(p["tags"].get(k)) != str(v)}
    if extra:
        module.fail_json(msg=f"match_tags must be tags of the copy too: {sorted(extra)}")
    ec2 = module.client("ec2")
    try:
        found = own_images(
            ec2,
            [{"Name": f"tag:{k}", "Values": [str(v)]} for k, v in sorted(p["match_tags"].items())]
            + [{"Name": "state", "Values": LIVE}],
        )
        if found:
            image = sorted(found, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))[-1]
            module.exit_json(
                changed=False, image_id=image["ImageId"], state=image["State"], copied=False
            )
        problem = unreadable_source(module, p["source_image_id"], p["source_region"])
        if problem:
            module.fail_json(msg=problem)
        clash = own_images(ec2, [{"Name": "name", "Values": [p["name"]]}])
        if clash:
            module.fail_json(
                msg=(
                    f"this account already has an AMI named {p['name']} ({clash[0]['ImageId']}, "
                    f"{clash[0]['State']}) without the tags {p['match_tags']}: not a copy this kit "
                    "made; tag it so, or deregister it, then promote again"
                )
            )
        if module.check_mode:
            module.exit_json(changed=True, image_id="", state="pending", copied=True)
        made = ec2.copy_image(
            SourceImageId=p["source_image_id"],
            SourceRegion=p["source_region"],
            Name=p["name"],
            Description=p["description"],
            TagSpecifications=[
                {"ResourceType": kind, "Tags": tag_list(p["tags"])}
                for kind in ("image", "snapshot")
            ],
        )
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(
            e, msg=f"copying {p['source_image_id']} of {p['source_region']} into this account"
        )
    module.exit_json(changed=True, image_id=made["ImageId"], state="pending", copied=True)


if __name__ == "__main__":
    main()
