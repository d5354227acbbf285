#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""Describe every AWS resource of one threetier environment in a single call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_aws_state
short_description: Describe the current state of one threetier environment
description:
  - Reads, never writes. One process and one set of boto3 clients describe the
    VPC and everything in it, the load balancers, IAM roles, launch templates,
    Auto Scaling groups, RDS, the secret's metadata (never its value), the
    artifact bucket, the SSM connection's transfer bucket, the SNS topic and
    the alarms of one environment.
  - Why a module of our own: each amazon.aws *_info module is its own Python
    process that imports boto3 (about 0.9 s each on the 2-core control node);
    the eighteen of them would cost more than the whole no-op budget. The
    layer roles compare this state with what they want and only call the
    amazon.aws/community.aws modules (which do the actual converging) for what
    differs.
  - Names of keys follow the amazon.aws info modules (boto3 output in
    snake_case), reduced to what the roles compare.
options:
  vpc_name: {description: Name tag of the VPC., type: str, required: true}
  target_group_names: {description: Target group names., type: list, elements: str, default: []}
  load_balancer_names: {description: ALB names., type: list, elements: str, default: []}
  iam_role_names:
    description: IAM role names (instance profiles share the name).
    type: list
    elements: str
    default: []
  launch_template_names:
    description: Launch template names.
    type: list
    elements: str
    default: []
  autoscaling_group_names: {description: ASG names., type: list, elements: str, default: []}
  db_instance_identifier: {description: RDS instance id., type: str}
  db_subnet_group_name: {description: RDS subnet group., type: str}
  db_parameter_group_name: {description: RDS parameter group., type: str}
  secret_name: {description: Secrets Manager secret name., type: str}
  bucket_name: {description: Artifact bucket., type: str}
  ssm_bucket_name:
    description:
      - The SSM connection's transfer bucket, returned in ssm_bucket with its
        lifecycle rules.
    type: str
  topic_name: {description: SNS topic name., type: str}
  alarm_prefix: {description: Prefix of the environment's CloudWatch alarm names., type: str}
  ami_name: {description: Name of an AMI to look up (own account and public)., type: str}
  tier_ami_tags:
    description:
      - Tags of the tiers' baked AMIs to look up (own account, e.g. Project and Release); the
        newest available AMI of each Tier is returned in tier_amis.
    type: dict
  nat_address_names:
    description:
      - Name tags of the NAT gateways' elastic IPs, returned in nat_addresses by allocation id
        (found with or without the VPC).
    type: list
    elements: str
    default: []
  parts:
    description:
      - What to describe (a layer that changed refreshes only its part).
    type: list
    elements: str
    choices: [network, load_balancers, compute, database, other]
    default: [network, load_balancers, compute, database, other]
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
state:
  description: The environment's resources by kind; an absent resource is an empty dict.
  returned: always
  type: dict
"""

import copy
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

try:
    import boto3
    import botocore.config
    from botocore.exceptions import ClientError
except ImportError:  # handled by AnsibleAWSModule
    pass

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
)

NOT_FOUND = {
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "NoSuchEntity",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBSubnetGroupNotFoundFault",
    "DBParameterGroupNotFound",
    "ResourceNotFoundException",
    "NoSuchBucket",
    "404",
    "NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "NoSuchTagSet",
    "NoSuchTagSetError",
    "OwnershipControlsNotFoundError",
    "NoSuchLifecycleConfiguration",
}


def missing(err):
    return err.response.get("Error", {}).get("Code") in NOT_FOUND


def snake(obj):
    return camel_dict_to_snake_dict(obj, ignore_list=["Tags", "tags"])


def redacted(rule):
    """A listener rule whose header values are replaced by their sha256: the
    value CloudFront's origin header carries is a secret (the role compares
    digests, roles/aws_load_balancers/filter_plugins/threetier_listeners.py)."""
    rule = copy.deepcopy(rule)
    for cond in rule.get("Conditions") or []:
        config = cond.get("HttpHeaderConfig")
        if config:
            config["Values"] = [
                "sha256:" + hashlib.sha256(v.encode()).hexdigest()
                for v in config.get("Values") or []
            ]
            cond.pop("Values", None)
    return rule


def tags_of(item, key="Tags"):
    return boto3_tag_list_to_ansible_dict(item.get(key) or [])


def perm(p, cidr_key, group_key):
    """Normalise one IpPermission into flat rules, as sorted comparable dicts."""
    out = []
    base = {
        "proto": str(p.get("IpProtocol")),
        "from_port": p.get("FromPort"),
        "to_port": p.get("ToPort"),
    }
    for r in p.get(cidr_key[0], []):
        out.append(dict(base, cidr=r.get(cidr_key[1])))
    for r in p.get("Ipv6Ranges", []):
        out.append(dict(base, cidr=r.get("CidrIpv6")))
    for r in p.get(group_key, []):
        out.append(dict(base, group_id=r.get("GroupId")))
    return out


def rules(perms):
    flat = []
    for p in perms:
        flat.extend(perm(p, ("IpRanges", "CidrIp"), "UserIdGroupPairs"))
    return sorted(flat, key=lambda r: json.dumps(r, sort_keys=True))


# The services each part calls.
PARTS = {
    "network": ("ec2",),
    "load_balancers": ("elbv2",),
    "compute": ("iam", "ec2", "autoscaling"),
    "database": ("rds", "secretsmanager"),
    "other": ("s3", "sns", "cloudwatch", "ec2"),
}


class State:
    def __init__(self, module):
        self.m = module
        self.p = module.params
        # One session for every client: botocore then loads its data files
        # once (a session per client, as module.client() does, costs ~0.1 s
        # each). Clients are made up front: sessions are not thread-safe,
        # clients are.
        region, endpoint, kw = get_aws_connection_info(module)
        kw.pop("profile_name", None)
        for extra in ("config", "aws_config"):
            kw.pop(extra, None)
        session = boto3.session.Session(profile_name=module.params.get("profile"))
        config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 5})
        services = sorted({s for part in self.p["parts"] for s in PARTS[part]})
        self.c = {
            name: session.client(
                name, region_name=region, endpoint_url=endpoint, config=config, **kw
            )
            for name in services
        }

    def client(self, name):
        return self.c[name]

    def call(self, service, op, **kw):
        try:
            return getattr(self.client(service), op)(**kw)
        except ClientError as e:
            if missing(e):
                return None
            self.m.fail_json_aws(e, msg=f"{service}.{op} failed")

    # --- network ---------------------------------------------------------
    def network(self, out):
        ec2 = "ec2"
        vpcs = self.call(
            ec2,
            "describe_vpcs",
            Filters=[{"Name": "tag:Name", "Values": [self.p["vpc_name"]]}],
        )["Vpcs"]
        for key in (
            "vpc",
            "subnets",
            "internet_gateway",
            "nat_gateways",
            "route_tables",
            "vpc_endpoints",
            "security_groups",
            "nat_addresses",
        ):
            out[key] = {}
        # the NAT gateways' elastic IPs by their Name tag, VPC or not: a
        # teardown stopped after a NAT went still finds its address
        if self.p["nat_address_names"]:
            for a in self.call(
                ec2,
                "describe_addresses",
                Filters=[{"Name": "tag:Name", "Values": self.p["nat_address_names"]}],
            )["Addresses"]:
                out["nat_addresses"][a["AllocationId"]] = {
                    "allocation_id": a["AllocationId"],
                    "public_ip": a.get("PublicIp"),
                    "association_id": a.get("AssociationId"),
                    "tags": tags_of(a),
                }
        if not vpcs:
            return
        vpc = vpcs[0]
        vid = vpc["VpcId"]
        attr = {}
        for a, k in (
            ("enableDnsHostnames", "EnableDnsHostnames"),
            ("enableDnsSupport", "EnableDnsSupport"),
        ):
            attr[a] = self.call(ec2, "describe_vpc_attribute", VpcId=vid, Attribute=a)[k]["Value"]
        out["vpc"] = {
            "id": vid,
            "cidr_block": vpc["CidrBlock"],
            "enable_dns_hostnames": attr["enableDnsHostnames"],
            "enable_dns_support": attr["enableDnsSupport"],
            "tags": tags_of(vpc),
        }
        vf = [{"Name": "vpc-id", "Values": [vid]}]
        for s in self.call(ec2, "describe_subnets", Filters=vf)["Subnets"]:
            t = tags_of(s)
            out["subnets"][t.get("Name", s["SubnetId"])] = {
                "id": s["SubnetId"],
                "cidr_block": s["CidrBlock"],
                "availability_zone": s["AvailabilityZone"],
                "map_public_ip_on_launch": s.get("MapPublicIpOnLaunch", False),
                "tags": t,
            }
        igws = self.call(
            ec2,
            "describe_internet_gateways",
            Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}],
        )["InternetGateways"]
        if igws:
            out["internet_gateway"] = {"id": igws[0]["InternetGatewayId"], "tags": tags_of(igws[0])}
        nats = self.call(
            ec2,
            "describe_nat_gateways",
            Filters=[*vf, {"Name": "state", "Values": ["pending", "available"]}],
        )["NatGateways"]
        for n in nats:
            out["nat_gateways"][n["SubnetId"]] = {
                "id": n["NatGatewayId"],
                "state": n["State"],
                "allocation_ids": sorted(
                    x["AllocationId"]
                    for x in n.get("NatGatewayAddresses", [])
                    if x.get("AllocationId")
                ),
                "tags": tags_of(n),
            }
        for rt in self.call(ec2, "describe_route_tables", Filters=vf)["RouteTables"]:
            t = tags_of(rt)
            if "Name" not in t:
                continue  # the VPC's main route table: the kit does not use it
            routes = []
            for r in rt.get("Routes", []):
                if r.get("GatewayId") == "local" or r.get("Origin") == "CreateRouteTable":
                    continue
                if r.get("DestinationPrefixListId"):
                    continue  # gateway endpoint routes belong to the endpoint
                routes.append(
                    {
                        "dest": r.get("DestinationCidrBlock"),
                        "gateway_id": r.get("GatewayId"),
                        "nat_gateway_id": r.get("NatGatewayId"),
                    }
                )
            out["route_tables"][t["Name"]] = {
                "id": rt["RouteTableId"],
                "routes": sorted(routes, key=lambda r: r["dest"] or ""),
                "subnet_ids": sorted(
                    a["SubnetId"] for a in rt.get("Associations", []) if a.get("SubnetId")
                ),
                "tags": t,
            }
        eps = self.call(
            ec2,
            "describe_vpc_endpoints",
            Filters=[*vf, {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]}],
        )
        for e in (eps or {}).get("VpcEndpoints", []):
            out["vpc_endpoints"][e["ServiceName"]] = {
                "id": e["VpcEndpointId"],
                "type": e.get("VpcEndpointType"),
                "route_table_ids": sorted(e.get("RouteTableIds", [])),
                "subnet_ids": sorted(e.get("SubnetIds", [])),
                "security_group_ids": sorted(g["GroupId"] for g in e.get("Groups", [])),
                "tags": tags_of(e),
            }
        for g in self.call(ec2, "describe_security_groups", Filters=vf)["SecurityGroups"]:
            out["security_groups"][g["GroupName"]] = {
                "id": g["GroupId"],
                "description": g.get("Description"),
                "ingress": rules(g.get("IpPermissions", [])),
                "egress": rules(g.get("IpPermissionsEgress", [])),
                "tags": tags_of(g),
            }

    # --- load balancers --------------------------------------------------
    def load_balancers(self, out):
        elb = "elbv2"
        out["target_groups"] = {}
        out["load_balancers"] = {}
        for name in self.p["target_group_names"]:
            r = self.call(elb, "describe_target_groups", Names=[name])
            if not r or not r["TargetGroups"]:
                continue
            tg = r["TargetGroups"][0]
            attrs = self.call(
                elb, "describe_target_group_attributes", TargetGroupArn=tg["TargetGroupArn"]
            )["Attributes"]
            item = snake(tg)
            item["attributes"] = {a["Key"]: a["Value"] for a in attrs}
            out["target_groups"][name] = item
        for name in self.p["load_balancer_names"]:
            r = self.call(elb, "describe_load_balancers", Names=[name])
            if not r or not r["LoadBalancers"]:
                continue
            lb = r["LoadBalancers"][0]
            arn = lb["LoadBalancerArn"]
            attrs = self.call(elb, "describe_load_balancer_attributes", LoadBalancerArn=arn)
            listeners = self.call(elb, "describe_listeners", LoadBalancerArn=arn)["Listeners"]
            item = snake(lb)
            item["subnet_ids"] = sorted(z["SubnetId"] for z in lb.get("AvailabilityZones", []))
            item["attributes"] = {a["Key"]: a["Value"] for a in attrs["Attributes"]}
            item["listeners"] = sorted((snake(x) for x in listeners), key=lambda x: x["port"])
            for listener in item["listeners"]:
                # the listener's own rules (its default action aside)
                found = self.call(elb, "describe_rules", ListenerArn=listener["listener_arn"]) or {}
                listener["rules"] = sorted(
                    (snake(redacted(r)) for r in found.get("Rules", []) if not r.get("IsDefault")),
                    key=lambda r: int(r["priority"]),
                )
            out["load_balancers"][name] = item
        arns = {v["target_group_arn"]: v for v in out["target_groups"].values()}
        arns.update({v["load_balancer_arn"]: v for v in out["load_balancers"].values()})
        if arns:
            descs = self.call(elb, "describe_tags", ResourceArns=list(arns))["TagDescriptions"]
            for d in descs:
                arns[d["ResourceArn"]]["tags"] = tags_of(d)

    # --- IAM, launch templates, ASGs --------------------------------------
    def compute(self, out):
        out["iam_roles"] = {}
        for name in self.p["iam_role_names"]:
            r = self.call("iam", "get_role", RoleName=name)
            if not r:
                continue
            role = r["Role"]
            inline = {}
            for pname in self.call("iam", "list_role_policies", RoleName=name)["PolicyNames"]:
                doc = self.call("iam", "get_role_policy", RoleName=name, PolicyName=pname)[
                    "PolicyDocument"
                ]
                if isinstance(doc, str):
                    doc = json.loads(unquote(doc))
                inline[pname] = doc
            attached = self.call("iam", "list_attached_role_policies", RoleName=name)
            profile = self.call("iam", "get_instance_profile", InstanceProfileName=name)
            trust = role.get("AssumeRolePolicyDocument") or {}
            if isinstance(trust, str):
                trust = json.loads(unquote(trust))
            tags = self.call("iam", "list_role_tags", RoleName=name) or {}
            out["iam_roles"][name] = {
                "arn": role["Arn"],
                "assume_role_policy": trust,
                "tags": tags_of(tags),
                "inline_policies": inline,
                "managed_policy_arns": sorted(p["PolicyArn"] for p in attached["AttachedPolicies"]),
                "instance_profile_arn": profile["InstanceProfile"]["Arn"] if profile else None,
                "instance_profile_roles": sorted(
                    x["RoleName"]
                    for x in (profile or {}).get("InstanceProfile", {}).get("Roles", [])
                ),
            }
        out["launch_templates"] = {}
        for name in self.p["launch_template_names"]:
            r = self.call("ec2", "describe_launch_templates", LaunchTemplateNames=[name])
            if not r or not r.get("LaunchTemplates"):
                continue
            lt = r["LaunchTemplates"][0]
            # one call for the latest and the default version (the same or not)
            numbers = sorted({lt["LatestVersionNumber"], lt["DefaultVersionNumber"]})
            versions = {
                x["VersionNumber"]: x["LaunchTemplateData"]
                for x in self.call(
                    "ec2",
                    "describe_launch_template_versions",
                    LaunchTemplateId=lt["LaunchTemplateId"],
                    Versions=[str(n) for n in numbers],
                )["LaunchTemplateVersions"]
            }
            default = versions[lt["DefaultVersionNumber"]]
            out["launch_templates"][name] = {
                "id": lt["LaunchTemplateId"],
                "latest_version": lt["LatestVersionNumber"],
                "default_version": lt["DefaultVersionNumber"],
                "default_image_id": default.get("ImageId", ""),
                # the default version's data: what the groups run (a release
                # makes its version the default; a roll-back an older one),
                # what provisioning compares with and copies from
                "data": snake(default),
                "tags": tags_of(lt),
            }
        out["autoscaling_groups"] = {}
        names = self.p["autoscaling_group_names"]
        if names:
            groups = self.call(
                "autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=names
            )["AutoScalingGroups"]
            for g in groups:
                item = snake(g)
                item["tags"] = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
                item["tags_propagated"] = sorted(
                    t["Key"] for t in g.get("Tags", []) if t.get("PropagateAtLaunch")
                )
                item["subnet_ids"] = sorted(
                    s for s in g.get("VPCZoneIdentifier", "").split(",") if s
                )
                pols = self.call(
                    "autoscaling",
                    "describe_policies",
                    AutoScalingGroupName=g["AutoScalingGroupName"],
                )["ScalingPolicies"]
                item["policies"] = {p["PolicyName"]: snake(p) for p in pols}
                out["autoscaling_groups"][g["AutoScalingGroupName"]] = item

    # --- database and secret ---------------------------------------------
    def database(self, out):
        out["db_instance"] = {}
        out["db_subnet_group"] = {}
        out["db_parameter_group"] = {}
        out["secret"] = {}
        if self.p["db_instance_identifier"]:
            r = self.call(
                "rds",
                "describe_db_instances",
                DBInstanceIdentifier=self.p["db_instance_identifier"],
            )
            if r and r["DBInstances"]:
                db = r["DBInstances"][0]
                if db.get("DBInstanceStatus") != "deleting":
                    item = snake(db)
                    item["tags"] = tags_of(db, "TagList")
                    out["db_instance"] = item
        if self.p["db_subnet_group_name"]:
            r = self.call(
                "rds", "describe_db_subnet_groups", DBSubnetGroupName=self.p["db_subnet_group_name"]
            )
            if r and r["DBSubnetGroups"]:
                g = r["DBSubnetGroups"][0]
                out["db_subnet_group"] = {
                    "name": g["DBSubnetGroupName"],
                    "description": g.get("DBSubnetGroupDescription"),
                    "subnet_ids": sorted(s["SubnetIdentifier"] for s in g["Subnets"]),
                }
        if self.p["db_parameter_group_name"]:
            name = self.p["db_parameter_group_name"]
            r = self.call("rds", "describe_db_parameter_groups", DBParameterGroupName=name)
            if r and r["DBParameterGroups"]:
                g = r["DBParameterGroups"][0]
                params = {}
                pages = self.client("rds").get_paginator("describe_db_parameters")
                for page in pages.paginate(DBParameterGroupName=name):
                    for p in page["Parameters"]:
                        if "ParameterValue" in p:
                            params[p["ParameterName"]] = p["ParameterValue"]
                tags = self.call(
                    "rds", "list_tags_for_resource", ResourceName=g["DBParameterGroupArn"]
                )
                out["db_parameter_group"] = {
                    "name": name,
                    "tags": tags_of(tags or {}, "TagList"),
                    "family": g.get("DBParameterGroupFamily"),
                    "description": g.get("Description"),
                    "params": params,
                }
        if self.p["secret_name"]:
            r = self.call("secretsmanager", "describe_secret", SecretId=self.p["secret_name"])
            if r and not r.get("DeletedDate"):
                out["secret"] = {
                    "arn": r["ARN"],
                    "name": r["Name"],
                    "kms_key_id": r.get("KmsKeyId"),
                    "tags": tags_of(r),
                }

    # --- buckets ----------------------------------------------------------
    def bucket(self, name, lifecycle=False):
        """One bucket as roles/aws_artifacts/tasks/bucket.yml compares it ({}:
        none); with `lifecycle`, its lifecycle rules too."""
        if not name or self.call("s3", "head_bucket", Bucket=name) is None:
            return {}
        s3 = "s3"
        ver = self.call(s3, "get_bucket_versioning", Bucket=name) or {}
        enc = self.call(s3, "get_bucket_encryption", Bucket=name)
        pab = self.call(s3, "get_public_access_block", Bucket=name)
        own = self.call(s3, "get_bucket_ownership_controls", Bucket=name)
        tags = self.call(s3, "get_bucket_tagging", Bucket=name)
        rules_ = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        sse = rules_[0]["ApplyServerSideEncryptionByDefault"] if rules_ else {}
        ownership = (own or {}).get("OwnershipControls", {}).get("Rules", [])
        out = {
            "name": name,
            "versioning": ver.get("Status", "Disabled"),
            "encryption": sse.get("SSEAlgorithm"),
            "encryption_key_id": sse.get("KMSMasterKeyID"),
            "public_access_block": snake((pab or {}).get("PublicAccessBlockConfiguration", {})),
            "object_ownership": ownership[0].get("ObjectOwnership") if ownership else None,
            "tags": tags_of(tags or {}, "TagSet"),
        }
        if lifecycle:
            lc = self.call(s3, "get_bucket_lifecycle_configuration", Bucket=name) or {}
            out["lifecycle_rules"] = [
                {
                    "id": r.get("ID"),
                    "status": r.get("Status"),
                    # the whole bucket: an empty prefix, in the filter or (older) the rule
                    "prefix": (r.get("Filter") or {}).get("Prefix", r.get("Prefix", "")),
                    "expiration_days": (r.get("Expiration") or {}).get("Days"),
                    "abort_incomplete_multipart_upload_days": (
                        r.get("AbortIncompleteMultipartUpload") or {}
                    ).get("DaysAfterInitiation"),
                }
                for r in lc.get("Rules", [])
            ]
        return out

    # --- buckets and monitoring -------------------------------------------
    def other(self, out):
        # the two buckets beside the rest of the part (a dozen S3 calls)
        with ThreadPoolExecutor(max_workers=2) as pool:
            buckets = {
                "bucket": pool.submit(self.bucket, self.p["bucket_name"]),
                "ssm_bucket": pool.submit(self.bucket, self.p["ssm_bucket_name"], True),
            }
            self.monitoring_and_images(out)
            out.update({key: f.result() for key, f in buckets.items()})

    def monitoring_and_images(self, out):
        out["sns_topic"] = {}
        if self.p["topic_name"]:
            pages = self.client("sns").get_paginator("list_topics")
            for page in pages.paginate():
                for t in page["Topics"]:
                    if t["TopicArn"].rsplit(":", 1)[-1] == self.p["topic_name"]:
                        subs = self.call(
                            "sns", "list_subscriptions_by_topic", TopicArn=t["TopicArn"]
                        )["Subscriptions"]
                        out["sns_topic"] = {
                            "arn": t["TopicArn"],
                            "subscriptions": sorted(
                                f"{s['Protocol']}:{s['Endpoint']}" for s in subs
                            ),
                        }
        out["alarms"] = {}
        if self.p["alarm_prefix"]:
            pages = self.client("cloudwatch").get_paginator("describe_alarms")
            for page in pages.paginate(AlarmNamePrefix=self.p["alarm_prefix"]):
                for a in page["MetricAlarms"]:
                    item = snake(a)
                    item["dimensions"] = {d["Name"]: d["Value"] for d in a.get("Dimensions", [])}
                    out["alarms"][a["AlarmName"]] = item
        out["ami"] = {}
        if self.p["ami_name"]:
            imgs = self.call(
                "ec2",
                "describe_images",
                Filters=[{"Name": "name", "Values": [self.p["ami_name"]]}],
            )["Images"]
            if imgs:
                img = sorted(imgs, key=lambda i: i.get("CreationDate", ""))[-1]
                out["ami"] = {"id": img["ImageId"], "name": img.get("Name")}
        out["tier_amis"] = {}
        if self.p["tier_ami_tags"]:
            filters = [
                {"Name": f"tag:{k}", "Values": [str(v)]} for k, v in self.p["tier_ami_tags"].items()
            ]
            imgs = self.call(
                "ec2",
                "describe_images",
                Owners=["self"],
                Filters=[*filters, {"Name": "state", "Values": ["available"]}],
            )["Images"]
            for img in sorted(imgs, key=lambda i: i.get("CreationDate", "")):
                tier = tags_of(img).get("Tier")
                if tier:
                    out["tier_amis"][tier] = img["ImageId"]


def main():
    argument_spec = dict(
        vpc_name=dict(type="str", required=True),
        target_group_names=dict(type="list", elements="str", default=[]),
        load_balancer_names=dict(type="list", elements="str", default=[]),
        iam_role_names=dict(type="list", elements="str", default=[]),
        launch_template_names=dict(type="list", elements="str", default=[]),
        autoscaling_group_names=dict(type="list", elements="str", default=[]),
        db_instance_identifier=dict(type="str"),
        db_subnet_group_name=dict(type="str"),
        db_parameter_group_name=dict(type="str"),
        secret_name=dict(type="str"),
        bucket_name=dict(type="str"),
        ssm_bucket_name=dict(type="str"),
        topic_name=dict(type="str"),
        alarm_prefix=dict(type="str"),
        ami_name=dict(type="str"),
        tier_ami_tags=dict(type="dict"),
        nat_address_names=dict(type="list", elements="str", default=[]),
        parts=dict(type="list", elements="str", choices=list(PARTS), default=list(PARTS)),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    st = State(module)
    parts = [getattr(st, name) for name in module.params["parts"]]
    results = [{} for _ in parts]
    # The five parts touch different services: run them side by side.
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        for f in [pool.submit(part, out) for part, out in zip(parts, results, strict=True)]:
            f.result()
    state = {}
    for r in results:
        state.update(r)
    module.exit_json(changed=False, state=state)


if __name__ == "__main__":
    main()
