#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""A CloudFront distribution, found by its comment, converged to a given configuration."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_cloudfront_distribution
short_description: A CloudFront distribution from its whole configuration, changed where it differs
description:
  - community.aws.cloudfront_distribution cannot name an origin access
    control on an S3 origin, and compares its own rebuilt configuration with
    AWS's, so a distribution with cache policies reports a change on every
    run. This module takes the distribution's configuration in the API's
    own shape (what UpdateDistribution takes, without CallerReference) and
    compares only what it was given with what AWS returns (lists of plain
    values as sets, lists of objects item by item), so fields AWS fills in
    itself never count as a difference.
  - Found by its C(comment), which must be unique in the account (the kit's
    names are). Created, or updated (the whole configuration is sent, as
    CloudFront replaces it) when something given differs; tags converged.
  - state=absent disables the distribution, waits until CloudFront has
    deployed that (bounded), then deletes it: CloudFront refuses to delete
    an enabled distribution.
  - The configuration is never returned (it may hold an origin's secret header).
  - Check mode is supported.
options:
  comment:
    description: The distribution's comment; how it is found again.
    type: str
    required: true
  config:
    description:
      - The DistributionConfig (API shape, CamelCase keys); its C(Comment) is set from I(comment).
      - Required when state=present.
    type: dict
  tags: {description: The distribution's tags (others are removed)., type: dict, default: {}}
  wait: {description: Wait until CloudFront reports it Deployed., type: bool, default: true}
  wait_timeout: {description: Seconds to wait for that., type: int, default: 1800}
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
- name: The site's distribution
  threetier_cloudfront_distribution:
    comment: threetier-production-site
    config: "{{ lookup('ansible.builtin.template', 'distribution.json.j2') | from_json }}"
    tags: {Project: threetier, Environment: production}
  no_log: true  # the ALB origin's secret header is in the configuration
"""

RETURN = r"""
id: {description: The distribution's id; empty when absent., returned: always, type: str}
arn: {description: Its ARN; empty when absent., returned: always, type: str}
domain_name:
  description: Its name (d123.cloudfront.net); empty when absent.
  returned: always
  type: str
status: {description: Deployed or InProgress; empty when absent., returned: always, type: str}
"""

import contextlib
import time

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# a behaviour with a cache policy takes none of the legacy cache settings
LEGACY_CACHE_KEYS = ("ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL")


def covers(have, want):
    """Whether ``have`` holds everything ``want`` gives (AWS's own extras aside)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(covers(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return False
        if all(not isinstance(v, (dict, list)) for v in want):
            return sorted(map(str, have)) == sorted(map(str, want))
        return all(covers(h, w) for h, w in zip(have, want, strict=True))
    if want in (None, "") and have in (None, ""):
        return True
    return have == want


def without_legacy_cache(config):
    """Behaviours with a cache policy lose the legacy keys the emulator (or an
    older distribution) may carry: CloudFront refuses both together. For a
    configuration read back (disabling it before deletion)."""
    behaviours = [config.get("DefaultCacheBehavior") or {}]
    behaviours += (config.get("CacheBehaviors") or {}).get("Items") or []
    for b in behaviours:
        if b.get("CachePolicyId"):
            for key in LEGACY_CACHE_KEYS:
                b.pop(key, None)
    return config


def find(client, comment):
    kwargs = {}
    while True:
        page = client.list_distributions(**kwargs)["DistributionList"]
        for item in page.get("Items") or []:
            if item.get("Comment") == comment:
                return item
        if not page.get("IsTruncated"):
            return None
        kwargs["Marker"] = page["NextMarker"]


def wait_deployed(module, client, dist_id, timeout):
    """Until CloudFront reports the distribution Deployed: polled after 1 s,
    then ever less often, at most every 15 s (a deployment takes minutes)."""
    deadline = time.monotonic() + timeout
    delay = 1
    while True:
        status = client.get_distribution(Id=dist_id)["Distribution"]["Status"]
        if status == "Deployed":
            return status
        if time.monotonic() > deadline:
            module.fail_json(msg=f"distribution {dist_id} still {status} after {timeout} s")
        time.sleep(delay)
        delay = min(15, delay * 2)


def converge_tags(module, client, arn, want):
    have = {
        t["Key"]: t["Value"]
        for t in client.list_tags_for_resource(Resource=arn)["Tags"].get("Items") or []
    }
    want = {k: str(v) for k, v in want.items()}
    gone = [k for k in have if k not in want]
    new = {k: v for k, v in want.items() if have.get(k) != v}
    if module.check_mode:
        return bool(gone or new)
    if gone:
        client.untag_resource(Resource=arn, TagKeys={"Items": gone})
    if new:
        client.tag_resource(
            Resource=arn, Tags={"Items": [{"Key": k, "Value": v} for k, v in new.items()]}
        )
    return bool(gone or new)


def absent(module, client, comment, timeout):
    found = find(client, comment)
    if found is None:
        module.exit_json(changed=False, id="", arn="", domain_name="", status="")
    if module.check_mode:
        module.exit_json(changed=True, id="", arn="", domain_name="", status="")
    dist_id = found["Id"]
    got = client.get_distribution_config(Id=dist_id)
    config, etag = got["DistributionConfig"], got["ETag"]
    if config.get("Enabled"):
        config["Enabled"] = False
        etag = client.update_distribution(
            Id=dist_id, IfMatch=etag, DistributionConfig=without_legacy_cache(config)
        )["ETag"]
    wait_deployed(module, client, dist_id, timeout)
    etag = client.get_distribution_config(Id=dist_id)["ETag"]
    client.delete_distribution(Id=dist_id, IfMatch=etag)
    module.exit_json(changed=True, id="", arn="", domain_name="", status="")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            comment=dict(type="str", required=True),
            config=dict(type="dict", no_log=False),
            tags=dict(type="dict", default={}),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=1800),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["config"])],
        supports_check_mode=True,
    )
    p = module.params
    client = module.client("cloudfront")
    try:
        if p["state"] == "absent":
            absent(module, client, p["comment"], p["wait_timeout"])
        want = dict(p["config"], Comment=p["comment"])
        found = find(client, p["comment"])
        changed = False
        if found is None:
            if module.check_mode:
                module.exit_json(changed=True, id="", arn="", domain_name="", status="")
            made = client.create_distribution(
                DistributionConfig=dict(
                    want, CallerReference=p["comment"] + "-" + str(int(time.time()))
                )
            )["Distribution"]
            dist_id, changed = made["Id"], True
        else:
            dist_id = found["Id"]
            got = client.get_distribution_config(Id=dist_id)
            if not covers(got["DistributionConfig"], want):
                changed = True
                if not module.check_mode:
                    config = dict(
                        want, CallerReference=got["DistributionConfig"]["CallerReference"]
                    )
                    # (built from the wanted configuration: no legacy keys)
                    client.update_distribution(
                        Id=dist_id, IfMatch=got["ETag"], DistributionConfig=config
                    )
        dist = client.get_distribution(Id=dist_id)["Distribution"]
        changed |= converge_tags(module, client, dist["ARN"], p["tags"])
        status = dist["Status"]
        if p["wait"] and not module.check_mode:
            status = wait_deployed(module, client, dist_id, p["wait_timeout"])
        module.exit_json(
            changed=changed,
            id=dist_id,
            arn=dist["ARN"],
            domain_name=dist["DomainName"],
            status=status,
        )
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"distribution {p['comment']}")


if __name__ == "__main__":
    main()
