"""The kit's IAM policies for the tests, and an evaluator of recorded calls.

- the operator's policy: every iam/operator-policy*.json together (split so
  that each fits AWS's 6,144-character quota of a managed policy);
- the instance roles' inline policies and their permissions boundary, as
  roles/aws_instance_profiles renders them (its defaults and vars, templated
  by Ansible with the values of one environment);
- `Evaluator`: whether the operator's policy grants one API call recorded by
  moto (tests/conftest.py records every run of a kit playbook), with the
  resources the call names (EC2 ids, IAM names), their tags before and after
  the run, the tags the request carries and the region it went to.

The evaluator knows the condition operators and keys the policy uses; a key
it cannot resolve counts as absent, as IAM treats a key the request lacks, so
a policy that leans on an unknown key fails closed here too."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
POLICY_FILES = sorted((ROOT / "iam").glob("operator-policy*.json"))
ROLE = ROOT / "roles" / "aws_instance_profiles"
ACCOUNT = "123456789012"  # moto's
# credential scope service -> IAM prefix, where they differ
SCOPE_PREFIX = {"monitoring": "cloudwatch"}


def operator_statements() -> list[dict]:
    out = []
    for path in POLICY_FILES:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["Version"] == "2012-10-17", path.name
        out += doc["Statement"]
    return out


def operator_document() -> dict:
    return {"Version": "2012-10-17", "Statement": operator_statements()}


def as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def render_instance_policies(
    environment: str = "production",
    region: str = "eu-west-1",
    secret_arn: str = "",
) -> dict[str, dict]:
    """roles/aws_instance_profiles' policies as its vars render them:
    {"boundary": ..., "<tier>/<policy name>": ...} (the inline policies)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    def trusted(x):
        if isinstance(x, dict):
            return {k: trusted(v) for k, v in x.items()}
        if isinstance(x, list):
            return [trusted(v) for v in x]
        return trust_as_template(x) if isinstance(x, str) else x

    variables: dict = {}
    for name in ("defaults/main.yml", "vars/main.yml"):
        variables.update(trusted(yaml.safe_load((ROLE / name).read_text(encoding="utf-8"))))
    prefix = f"threetier-{environment}"
    secret_arn = secret_arn or (
        f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:threetier/{environment}/db-master-AbCdEf"
    )
    variables.update(
        threetier_name="threetier",
        threetier_environment=environment,
        aws_region=region,
        aws_emulator=False,
        aws_artifacts_bucket_name=f"{prefix}-artifacts",
        aws_state_current={"secret": {"arn": secret_arn}, "iam_roles": {}},
        # what tasks/main.yml reads with amazon.aws.aws_caller_info
        __aws_instance_profiles_caller={
            "account": ACCOUNT,
            "arn": f"arn:aws:iam::{ACCOUNT}:user/operator",
        },
        aws_state_names={
            "prefix": prefix,
            "iam_roles": {"web": f"{prefix}-web", "app": f"{prefix}-app"},
        },
    )
    templar = Templar(loader=DataLoader(), variables=variables)

    def render(expr: str):
        # through JSON: plain dicts and lists, not Ansible's tagged types
        return json.loads(json.dumps(templar.template(trust_as_template("{{ " + expr + " }}"))))

    out = {"boundary": render("__aws_instance_profiles_boundary_policy")}
    for p in render("__aws_instance_profiles_policies"):
        out[f"{p['tier']}/{p['name']}"] = p["document"]
    out["__boundary_arn"] = render("__aws_instance_profiles_boundary_arn")
    out["__managed"] = render("aws_instance_profiles_managed_policies")
    return out


# --- recorded requests -------------------------------------------------------

S3_QUERY_ACTION = {
    ("GET", "versioning"): "s3:GetBucketVersioning",
    ("PUT", "versioning"): "s3:PutBucketVersioning",
    ("GET", "encryption"): "s3:GetEncryptionConfiguration",
    ("PUT", "encryption"): "s3:PutEncryptionConfiguration",
    ("DELETE", "encryption"): "s3:PutEncryptionConfiguration",
    ("GET", "publicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("PUT", "publicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("DELETE", "publicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("GET", "tagging"): "s3:GetBucketTagging",
    ("PUT", "tagging"): "s3:PutBucketTagging",
    ("DELETE", "tagging"): "s3:PutBucketTagging",
    ("GET", "policy"): "s3:GetBucketPolicy",
    ("PUT", "policy"): "s3:PutBucketPolicy",
    ("DELETE", "policy"): "s3:DeleteBucketPolicy",
    ("GET", "ownershipControls"): "s3:GetBucketOwnershipControls",
    ("PUT", "ownershipControls"): "s3:PutBucketOwnershipControls",
    ("DELETE", "ownershipControls"): "s3:PutBucketOwnershipControls",
    ("GET", "acl"): "s3:GetBucketAcl",
    ("PUT", "acl"): "s3:PutBucketAcl",
    ("GET", "versions"): "s3:ListBucketVersions",
    ("GET", "accelerate"): "s3:GetAccelerateConfiguration",
    ("GET", "requestPayment"): "s3:GetBucketRequestPayment",
    ("GET", "logging"): "s3:GetBucketLogging",
    ("GET", "object-lock"): "s3:GetBucketObjectLockConfiguration",
    ("GET", "location"): "s3:GetBucketLocation",
    ("GET", "lifecycle"): "s3:GetLifecycleConfiguration",
    ("PUT", "lifecycle"): "s3:PutLifecycleConfiguration",
    ("DELETE", "lifecycle"): "s3:PutLifecycleConfiguration",
}
S3_PLAIN_ACTION = {
    ("PUT", False): "s3:CreateBucket",
    ("HEAD", False): "s3:ListBucket",
    ("GET", False): "s3:ListBucket",
    ("DELETE", False): "s3:DeleteBucket",
    ("GET", True): "s3:GetObject",
    ("HEAD", True): "s3:GetObject",
    ("PUT", True): "s3:PutObject",
    ("DELETE", True): "s3:DeleteObject",
}


@dataclass
class Request:
    action: str
    region: str
    params: dict[str, str]  # query-protocol parameters (EC2, IAM, ...), first values


def parse_request(entry: dict) -> Request | None:
    """One line of moto's recording -> its IAM action, region and parameters
    (None: not an AWS API call)."""
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", headers.get("authorization", ""))
    if not scope:
        return None
    region, service = scope.group(1), scope.group(2)
    prefix = SCOPE_PREFIX.get(service, service)
    url = urllib.parse.urlsplit(entry["url"])
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    if service == "s3":
        parts = [p for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        for key in query:
            if (entry["method"], key) in S3_QUERY_ACTION:
                return Request(S3_QUERY_ACTION[(entry["method"], key)], region, {})
        if "delete" in query:
            return Request("s3:DeleteObject", region, {})
        action = S3_PLAIN_ACTION.get((entry["method"], len(parts) > 1), f"s3:?{entry['method']}")
        return Request(action, region, {})
    if service == "route53":
        return route53_request(entry["method"], url.path, body, region)
    if service == "cloudfront":
        return cloudfront_request(entry["method"], url.path, url.query, region)
    if "x-amz-target" in headers:
        action = f"{prefix}:{headers['x-amz-target'].rsplit('.', 1)[-1]}"
        return Request(action, region, json_params(action, body))
    if "/operation/" in url.path:
        return Request(f"{prefix}:{url.path.rsplit('/', 1)[-1]}", region, {})
    params = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
    if "Action" not in params:
        params.update(
            {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        )
    return Request(f"{prefix}:{params.get('Action', '?')}", region, params)


# the JSON-protocol parameters the policy's conditions and resources read
JSON_PARAMS = {
    "acm:RequestCertificate": ("ValidationMethod",),
    "acm:DeleteCertificate": ("CertificateArn",),
    "acm:DescribeCertificate": ("CertificateArn",),
    "acm:ListTagsForCertificate": ("CertificateArn",),
    "acm:AddTagsToCertificate": ("CertificateArn",),
}


def json_params(action: str, body: str) -> dict[str, str]:
    """A JSON-protocol call's parameters as query-style keys: the ones
    JSON_PARAMS names, and its Tags as Tag.N.Key / Tag.N.Value."""
    if action not in JSON_PARAMS:
        return {}
    try:
        doc = json.loads(body or "{}")
    except ValueError:
        return {}
    params = {k: str(doc[k]) for k in JSON_PARAMS[action] if k in doc}
    for n, tag in enumerate(doc.get("Tags") or [], 1):
        params[f"Tag.{n}.Key"] = tag.get("Key", "")
        params[f"Tag.{n}.Value"] = tag.get("Value", "")
    return params


def route53_request(method: str, path: str, body: str, region: str) -> Request:
    """Route 53's REST calls the kit makes -> their IAM actions; a change of
    record sets with the record types and names its condition keys read."""
    parts = [p for p in path.split("/") if p][1:]  # without the API version
    if parts == ["hostedzonesbyname"]:
        return Request("route53:ListHostedZonesByName", region, {})
    if parts == ["hostedzone"]:
        return Request(
            f"route53:{'CreateHostedZone' if method == 'POST' else 'ListHostedZones'}", region, {}
        )
    if len(parts) == 2 and parts[0] == "hostedzone":
        return Request("route53:GetHostedZone", region, {})
    if parts == ["healthcheck"]:
        action = "CreateHealthCheck" if method == "POST" else "ListHealthChecks"
        return Request(f"route53:{action}", region, {})
    if len(parts) == 2 and parts[0] == "healthcheck":
        action = {
            "GET": "GetHealthCheck",
            "POST": "UpdateHealthCheck",
            "DELETE": "DeleteHealthCheck",
        }
        return Request(f"route53:{action.get(method, '?')}", region, {})
    if len(parts) == 2 and parts[0] == "tags":
        return Request("route53:ListTagsForResources", region, {})
    if len(parts) == 3 and parts[0] == "tags":
        action = "ChangeTagsForResource" if method == "POST" else "ListTagsForResource"
        return Request(f"route53:{action}", region, {})
    if len(parts) == 3 and parts[2] == "rrset" and method == "GET":
        return Request("route53:ListResourceRecordSets", region, {})
    if len(parts) == 3 and parts[2] == "rrset" and method == "POST":
        types = re.findall(r"<Type>([^<]+)</Type>", body)
        names = re.findall(r"<ResourceRecordSet>\s*<Name>([^<]+)</Name>", body)
        params = {f"RecordType.{n}": t for n, t in enumerate(types, 1)}
        params.update({f"RecordName.{n}": x.lower().rstrip(".") for n, x in enumerate(names, 1)})
        return Request("route53:ChangeResourceRecordSets", region, params)
    return Request(f"route53:?{method} {path}", region, {})


# CloudFront's REST calls the kit makes (paths without the API version)
CLOUDFRONT_ACTION = {
    ("GET", "distribution"): "ListDistributions",
    ("POST", "distribution"): "CreateDistribution",
    ("GET", "distribution/*"): "GetDistribution",
    ("DELETE", "distribution/*"): "DeleteDistribution",
    ("GET", "distribution/*/config"): "GetDistributionConfig",
    ("PUT", "distribution/*/config"): "UpdateDistribution",
    ("GET", "distribution/*/invalidation"): "ListInvalidations",
    ("POST", "distribution/*/invalidation"): "CreateInvalidation",
    ("GET", "distribution/*/invalidation/*"): "GetInvalidation",
    ("GET", "origin-access-control"): "ListOriginAccessControls",
    ("POST", "origin-access-control"): "CreateOriginAccessControl",
    ("GET", "origin-access-control/*"): "GetOriginAccessControl",
    ("DELETE", "origin-access-control/*"): "DeleteOriginAccessControl",
    ("GET", "origin-access-control/*/config"): "GetOriginAccessControlConfig",
    ("PUT", "origin-access-control/*/config"): "UpdateOriginAccessControl",
    ("GET", "tagging"): "ListTagsForResource",
}


def cloudfront_request(method: str, path: str, query: str, region: str) -> Request:
    """CloudFront's REST calls -> their IAM actions (a distribution made with
    tags is CreateDistribution; tagging is TagResource / UntagResource)."""
    parts = [p for p in path.split("/") if p][1:]  # without the API version
    shape = "/".join(p if i % 2 == 0 else "*" for i, p in enumerate(parts))
    operation = urllib.parse.parse_qs(query).get("Operation", [""])[0]
    if shape == "tagging" and method == "POST":
        return Request(f"cloudfront:{operation}Resource", region, {})
    return Request(
        f"cloudfront:{CLOUDFRONT_ACTION.get((method, shape), '?' + method + ' ' + path)}",
        region,
        {},
    )


def recorded_requests(recording: str) -> list[Request]:
    out = []
    for line in recording.splitlines():
        if line.strip():
            req = parse_request(json.loads(line))
            if req and req.action != "sts:GetCallerIdentity":  # IAM cannot deny it
                out.append(req)
    return out


# --- what the calls act on ---------------------------------------------------

EC2_ID_TYPES = {
    "vpc": "vpc",
    "subnet": "subnet",
    "sg": "security-group",
    "rtb": "route-table",
    "igw": "internet-gateway",
    "nat": "natgateway",
    "vpce": "vpc-endpoint",
    "lt": "launch-template",
    "i": "instance",
    "ami": "image",
    "snap": "snapshot",
    "vol": "volume",
    "eipalloc": "elastic-ip",
    "eni": "network-interface",
}
# the resources an EC2 create call makes (tag-on-create applies to them)
EC2_CREATES = {
    "ec2:AllocateAddress": ["elastic-ip"],
    "ec2:CopyImage": ["image", "snapshot"],
    "ec2:CreateImage": ["image", "snapshot"],
    "ec2:CreateInternetGateway": ["internet-gateway"],
    "ec2:CreateKeyPair": ["key-pair"],
    "ec2:CreateLaunchTemplate": ["launch-template"],
    "ec2:CreateNatGateway": ["natgateway"],
    "ec2:CreateRouteTable": ["route-table"],
    "ec2:CreateSecurityGroup": ["security-group"],
    "ec2:CreateSubnet": ["subnet"],
    "ec2:CreateVpc": ["vpc"],
    "ec2:CreateVpcEndpoint": ["vpc-endpoint"],
    "ec2:RunInstances": ["instance", "volume", "network-interface"],
}
# parameters that name a resource the call is authorised on (any other id in
# a request, e.g. a route's target, is not: AWS authorises the route table)
ID_PARAM = re.compile(
    r"^(?:NetworkInterface\.\d+\.)?(?:Add|Remove)?"
    r"(VpcId|SubnetId|GroupId|SecurityGroupId|RouteTableId|InternetGatewayId|NatGatewayId"
    r"|VpcEndpointId|LaunchTemplateId|InstanceId|ImageId|SnapshotId|AllocationId|ResourceId"
    r"|AssociationId)(?:\.\d+)?$"
)
ONLY_PARAMS = {
    "ec2:CreateRoute": {"RouteTableId"},
    "ec2:ReplaceRoute": {"RouteTableId"},
    "ec2:DeleteRoute": {"RouteTableId"},
}


@dataclass
class Resource:
    arn: str
    kind: str  # EC2 resource type, "iam-role", ...
    new: bool = False
    tags: dict[str, str] | None = None  # None: unknown (new, or not seen)
    owner: str | None = None  # an image's owner


@dataclass
class Snapshot:
    """What the emulator held in the run's region just before and after a run."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # EC2 id -> tags
    associations: dict[str, list[str]] = field(default_factory=dict)  # rtbassoc -> ids
    launch_templates: dict[str, str] = field(default_factory=dict)  # name -> id
    image_owners: dict[str, str] = field(default_factory=dict)  # ami -> owner id / alias
    existing: set[str] = field(default_factory=set)  # every EC2 id, tagged or not
    role_boundaries: dict[str, str] = field(default_factory=dict)  # role -> boundary ARN ("")
    certificate_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # ACM ARN -> tags


def request_tags(params: dict[str, str]) -> dict[str, str]:
    """aws:RequestTag: the tags of every TagSpecification (EC2) or Tags (IAM)."""
    tags = {}
    for key, value in params.items():
        m = re.match(r"^(TagSpecification\.\d+\.Tag|Tags\.member|Tag)\.(\d+)\.Key$", key)
        if m:
            tags[value] = params.get(f"{m.group(1)}.{m.group(2)}.Value", "")
    return tags


@dataclass
class Denial:
    action: str  # the action not granted (ec2:CreateTags for a tag on create)
    kind: str  # the resource's type ("*": no resource)
    text: str


class Evaluator:
    """Grants of the operator's policy for recorded calls of one run."""

    def __init__(
        self,
        statements: list[dict],
        before: Snapshot,
        after: Snapshot,
        requests: list[Request],
        region_as: dict[str, str] | None = None,
    ):
        self.statements = statements
        self.before, self.after = before, after
        self.region_as = region_as or {}
        # the kinds the run made, and whether every create tagged them
        created: dict[str, list[bool]] = {}
        for r in requests:
            for kind in EC2_CREATES.get(r.action, []):
                created.setdefault(kind, []).append(
                    request_tags(r.params).get("Project") == "threetier"
                )
        self.created_tagged = {k: all(v) for k, v in created.items()}

    # -- resources --
    def _ec2_tags(self, rid: str, kind: str) -> dict[str, str] | None:
        """A resource's tags when the call was made, as near as the
        snapshots tell: as the run found it; made by the run: as the run's
        creates of that kind tagged it (a resource tagged only after its
        creation counts as untagged, as it is on AWS until then); made by
        AWS itself meanwhile (an Auto Scaling group's instance): as it ended."""
        if rid in self.before.existing:
            return self.before.tags.get(rid, {})
        if kind in self.created_tagged:
            return {"Project": "threetier"} if self.created_tagged[kind] else {}
        return self.after.tags.get(rid)

    def _ec2(self, kind: str, rid: str, region: str) -> Resource:
        account = "" if kind in ("image", "snapshot") else ACCOUNT  # AWS's ARNs
        owner = self.after.image_owners.get(rid) or self.before.image_owners.get(rid)
        return Resource(
            f"arn:aws:ec2:{region}:{account}:{kind}/{rid}",
            kind,
            tags=self._ec2_tags(rid, kind),
            owner=owner,
        )

    def resources(self, req: Request) -> list[Resource]:
        service, op = req.action.split(":")
        region = req.region
        out: list[Resource] = []
        if service == "ec2":
            if op.startswith("Describe"):
                return [Resource("*", "*")]
            for kind in EC2_CREATES.get(req.action, []):
                name = req.params.get("KeyName", "") if kind == "key-pair" else "new"
                out.append(Resource(f"arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{name}", kind, True))
            only = ONLY_PARAMS.get(req.action)
            for key, value in req.params.items():
                if key.startswith(("LaunchTemplateData.", "Filter.", "TagSpecification.")):
                    continue
                m = ID_PARAM.match(key)
                if not m or (only and m.group(1) not in only):
                    continue
                if value.startswith("rtbassoc-"):
                    for rid in self.before.associations.get(value, []):
                        kind = EC2_ID_TYPES[rid.split("-")[0]]
                        out.append(self._ec2(kind, rid, region))
                    continue
                kind = EC2_ID_TYPES.get(value.split("-")[0])
                if kind:
                    out.append(self._ec2(kind, value, region))
            if "LaunchTemplateName" in req.params and "LaunchTemplateId" not in req.params:
                name = req.params["LaunchTemplateName"]
                lt = self.after.launch_templates.get(name) or self.before.launch_templates.get(name)
                if lt:
                    out.append(self._ec2("launch-template", lt, region))
            if "KeyName" in req.params and req.action not in EC2_CREATES:
                name = req.params["KeyName"]
                out.append(Resource(f"arn:aws:ec2:{region}:{ACCOUNT}:key-pair/{name}", "key-pair"))
            return out or [Resource("*", "*")]
        if service == "iam":
            p = req.params
            if "RoleName" in p:
                out.append(Resource(f"arn:aws:iam::{ACCOUNT}:role/{p['RoleName']}", "role"))
            if "InstanceProfileName" in p:
                out.append(
                    Resource(
                        f"arn:aws:iam::{ACCOUNT}:instance-profile/{p['InstanceProfileName']}",
                        "instance-profile",
                    )
                )
            if op == "CreatePolicy":
                out.append(Resource(f"arn:aws:iam::{ACCOUNT}:policy/{p['PolicyName']}", "policy"))
            elif "PolicyArn" in p and op not in ("AttachRolePolicy", "DetachRolePolicy"):
                out.append(Resource(p["PolicyArn"], "policy"))
            return out or [Resource("*", "*")]
        if service == "acm" and "CertificateArn" in req.params:
            arn = req.params["CertificateArn"]
            tags = self.before.certificate_tags.get(arn)
            if tags is None:
                tags = self.after.certificate_tags.get(arn)
            return [Resource(arn, "certificate", tags=tags)]
        # other services: the action alone (their ARNs are checked by name
        # patterns in the policy; test_iam_policy checks those)
        return [Resource("*", "*")]

    # -- conditions --
    def context(self, req: Request, res: Resource, create_action: str | None) -> dict:
        region = self.region_as.get(req.region, req.region)
        ctx: dict[str, list[str]] = {"aws:RequestedRegion": [region]}
        tags = request_tags(req.params)
        for k, v in tags.items():
            ctx[f"aws:RequestTag/{k}"] = [v]
        if tags:
            ctx["aws:TagKeys"] = list(tags)
        if res.tags is not None and not res.new:
            for k, v in res.tags.items():
                ctx[f"aws:ResourceTag/{k}"] = [v]
        if res.owner:
            ctx["ec2:Owner"] = [res.owner]
        if create_action:
            ctx["ec2:CreateAction"] = [create_action]
        p = req.params
        if req.action in ("iam:CreateRole", "iam:PutRolePermissionsBoundary"):
            if p.get("PermissionsBoundary"):
                ctx["iam:PermissionsBoundary"] = [p["PermissionsBoundary"]]
        elif req.action.startswith("iam:") and "RoleName" in p:
            name = p["RoleName"]
            have = self.after.role_boundaries.get(name) or self.before.role_boundaries.get(name)
            if have:
                ctx["iam:PermissionsBoundary"] = [have]
        if "PolicyArn" in p and req.action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy"):
            ctx["iam:PolicyARN"] = [p["PolicyArn"]]
        if req.action == "acm:RequestCertificate" and "ValidationMethod" in p:
            ctx["acm:ValidationMethod"] = [p["ValidationMethod"]]
        if req.action == "route53:ChangeResourceRecordSets":
            ctx["route53:ChangeResourceRecordSetsRecordTypes"] = [
                v for k, v in p.items() if k.startswith("RecordType.")
            ]
            ctx["route53:ChangeResourceRecordSetsNormalizedRecordNames"] = [
                v for k, v in p.items() if k.startswith("RecordName.")
            ]
        return ctx

    @staticmethod
    def _value(v: str) -> str:
        return v.replace("${aws:PrincipalAccount}", ACCOUNT)

    def _condition(self, cond: dict, ctx: dict) -> bool:
        for op, pairs in cond.items():
            for key, want in pairs.items():
                want = [self._value(w) for w in as_list(want)]
                have = ctx.get(key)
                if op in ("StringEquals", "ArnEquals"):
                    if not have or not any(h in want for h in have):
                        return False
                elif op in ("StringLike", "ArnLike"):
                    if not have or not any(fnmatch.fnmatchcase(h, w) for h in have for w in want):
                        return False
                elif op == "ForAllValues:StringNotEquals":
                    if have and any(h in want for h in have):
                        return False
                elif op == "ForAllValues:StringEquals":
                    if have and not all(h in want for h in have):
                        return False
                elif op == "ForAllValues:StringLike":
                    if have and not all(any(fnmatch.fnmatchcase(h, w) for w in want) for h in have):
                        return False
                elif op == "Null":
                    if (have is None) != (want == ["true"]):
                        return False
                else:
                    raise AssertionError(f"the evaluator does not know {op}")
        return True

    def _grants(self, action: str, req: Request, res: Resource, create_action=None) -> bool:
        for st in self.statements:
            if st["Effect"] != "Allow" or action not in as_list(st["Action"]):
                continue
            patterns = [self._value(r) for r in as_list(st["Resource"])]
            if res.arn != "*" and not any(fnmatch.fnmatchcase(res.arn, p) for p in patterns):
                continue
            if self._condition(st.get("Condition", {}), self.context(req, res, create_action)):
                return True
        return False

    def evaluate(self, req: Request) -> list[Denial]:
        """What of the call the policy does not grant (nothing: granted)."""
        denied = []
        for res in self.resources(req):
            if not self._grants(req.action, req, res):
                text = f"{req.action} on {res.arn} ({self.describe(req, res)})"
                denied.append(Denial(req.action, res.kind, text))
            # tag on create: AWS authorises ec2:CreateTags on each new resource
            tagged_types = {
                v
                for k, v in req.params.items()
                if re.match(r"^TagSpecification\.\d+\.ResourceType$", k)
            }
            if (
                res.new
                and res.kind in tagged_types
                and not self._grants("ec2:CreateTags", req, res, req.action.split(":")[1])
            ):
                text = f"ec2:CreateTags on create of {res.arn} ({req.action})"
                denied.append(Denial("ec2:CreateTags", res.kind, text))
        return denied

    def describe(self, req: Request, res: Resource) -> str:
        if res.new:
            return f"new, request tags {request_tags(req.params)}"
        return f"tags {res.tags}" + (f", owner {res.owner}" if res.owner else "")


# --- judging recorded runs ---------------------------------------------------

# Where the kit takes another path under the emulator (aws_emulator), the
# calls that path makes instead of AWS's are excused, each naming the role
# file whose emulator branch makes them.
# (action, resource type) -> (role file with the emulator branch, why)
EMULATOR_ONLY = {
    ("ec2:CreateNatGateway", "natgateway"): (
        "roles/aws_network/tasks/vpc.yml",
        "moto tags NAT gateways under another resource type, so the NAT is made untagged and "
        "tagged by the next task; on AWS it is tagged at creation",
    ),
    ("ec2:CreateTags", "natgateway"): (
        "roles/aws_network/tasks/vpc.yml",
        "the NAT gateway tagged after its creation (above)",
    ),
    ("ec2:CreateLaunchTemplate", "launch-template"): (
        "roles/aws_launch_templates/tasks/main.yml",
        "moto copies a template's tags into its version data: templates stay untagged there",
    ),
    ("ec2:CreateLaunchTemplateVersion", "launch-template"): (
        "roles/aws_launch_templates/tasks/main.yml",
        "the untagged templates of the emulator (above)",
    ),
    ("ec2:ModifyLaunchTemplate", "launch-template"): (
        "roles/aws_launch_templates/tasks/main.yml",
        "the untagged templates of the emulator (above)",
    ),
    ("ec2:DeleteLaunchTemplate", "launch-template"): (
        "roles/aws_launch_templates/tasks/main.yml",
        "the untagged templates of the emulator (above)",
    ),
    ("ec2:CreateImage", "image"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "moto's CreateImage takes no snapshot tags: the AMI record is tagged after; on AWS "
        "(image.yml) the AMI and its snapshots are tagged at creation",
    ),
    ("ec2:CreateImage", "snapshot"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record's snapshot (above)",
    ),
    ("ec2:CreateTags", "image"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record tagged after its creation (above)",
    ),
    ("ec2:CreateTags", "snapshot"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record's snapshot, untagged by moto's CreateImage, tagged after",
    ),
    ("ec2:ModifyImageAttribute", "image"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record, tagged only after its creation (above), shared in the same run",
    ),
    ("ec2:ModifySnapshotAttribute", "snapshot"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record's snapshot, tagged only after its creation (above), shared in the same run",
    ),
    ("ec2:ResetSnapshotAttribute", "snapshot"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record's snapshot, tagged only after its creation (above), shared in the same run",
    ),
    ("ec2:DeleteSnapshot", "snapshot"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "moto's CreateImage tags no snapshot: the prune deletes the untagged snapshots of AMIs "
        "the tests image themselves (tests/aws_stack.py make_ami)",
    ),
    ("ec2:RunInstances", "subnet"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the placeholder instance names no subnet: ec2_instance picks the emulator's default one",
    ),
    ("ec2:RunInstances", "image"): (
        "roles/aws_image_bake/tasks/record_one.yml",
        "the AMI record's placeholder instance runs moto's placeholder AMI, not Debian's",
    ),
}
LOCAL_EC2_REGIONS = yaml.safe_load(
    (ROOT / "inventories" / "local" / "aws_ec2.yml").read_text(encoding="utf-8")
)["regions"]
POLICY_REGIONS = sorted(
    {
        r
        for st in operator_statements()
        for r in st.get("Condition", {}).get("StringEquals", {}).get("aws:RequestedRegion", [])
    }
)


def judge(runs, used: set | None = None) -> tuple[list[str], int]:
    """The denials of recorded runs (tests/recorder.py) not excused, and how
    many calls were judged; the excuses used are added to `used`."""
    statements = operator_statements()
    problems, judged = [], 0
    for run in runs:
        requests = recorded_requests(run.recording)
        # a run outside the policy's regions (the dev stack of
        # tests/aws_stack.py is in us-west-2) is judged as if it were in one
        region_as = {run.region: POLICY_REGIONS[0]} if run.region not in POLICY_REGIONS else {}
        # the local inventory's EC2 inventory reads its own region whatever the
        # run's (an AWS inventory reads its environment's): as if the run's
        if run.inventory == "inventories/local":
            for req in requests:
                if req.action == "ec2:DescribeInstances" and req.region in LOCAL_EC2_REGIONS:
                    req.region = run.region
        evaluator = Evaluator(statements, run.before, run.after, requests, region_as)
        for req in requests:
            judged += 1
            for denial in evaluator.evaluate(req):
                key = (denial.action, denial.kind)
                if run.emulator and key in EMULATOR_ONLY:
                    if used is not None:
                        used.add(key)
                    continue
                problems.append(f"{run.playbook} {' '.join(run.args)}: {denial.text}")
    return problems, judged
