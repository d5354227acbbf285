"""The operator's IAM policy (iam/operator-policy.json) grants exactly the
actions of the AWS modules and plugins the kit uses (iam/module-actions.yml),
and every AWS module used anywhere in roles/, playbooks/ and inventories/ is
mapped there. A new module without a mapping, a mapping nobody uses, an
action the policy lacks or one it grants beyond the mapping all fail.

What a real run calls is checked too: tests/test_diagram.py records the API
calls of a whole site.yml run against moto and compares them with the policy
(it provisions once for both)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import botocore.session
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "iam" / "module-actions.yml"
POLICY = ROOT / "iam" / "operator-policy.json"
FQCN = re.compile(r"^(amazon\.aws|community\.aws)\.[a-z0-9_]+$")
LOOKUP = re.compile(r"(?:lookup|query)\(\s*['\"]((?:amazon|community)\.aws\.[a-z0-9_]+)['\"]")
# IAM prefix -> botocore service name, where they differ
BOTO_SERVICE = {"elasticloadbalancing": "elbv2", "monitoring": "cloudwatch"}
IAM_PREFIX = {"elbv2": "elasticloadbalancing"}
# checked by AWS during other calls, no API operation of their own
AUTHORIZATION_ONLY = {"iam:PassRole"}
# S3's IAM actions are not its REST operations' names
S3_OPERATION_ACTION = {
    "head_bucket": "s3:ListBucket",
    "get_bucket_encryption": "s3:GetEncryptionConfiguration",
    "get_public_access_block": "s3:GetBucketPublicAccessBlock",
}


def load_mapping() -> dict:
    return yaml.safe_load(MAPPING.read_text(encoding="utf-8"))


def policy_statements() -> list[dict]:
    doc = json.loads(POLICY.read_text(encoding="utf-8"))
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


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


def test_policy_is_least_privilege_shaped():
    sids = [st["Sid"] for st in policy_statements()]
    assert len(sids) == len(set(sids)), "duplicate Sids"
    for st in policy_statements():
        assert st["Effect"] == "Allow"
        acts = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        for a in acts:
            assert "*" not in a, f"{st['Sid']}: wildcard action {a}"
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        if "*" in resources:
            # only reads, and EC2 (VPC resources get their ids at creation:
            # see iam/README.md) may run on every resource
            for a in acts:
                prefix, op = a.split(":")
                assert prefix == "ec2" or op.startswith(("Describe", "List", "Get")), (
                    f"{st['Sid']}: {a} on Resource '*'"
                )
        else:
            for r in resources:
                assert r.startswith("arn:aws:"), f"{st['Sid']}: {r}"
    # the mutating IAM actions are scoped to the kit's own roles
    iam_st = [st for st in policy_statements() if any(a.startswith("iam:") for a in st["Action"])]
    for st in iam_st:
        for r in [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]:
            assert (
                ":role/threetier-" in r
                or ":instance-profile/threetier-" in r
                or ("aws-service-role" in r and "Condition" in st)
            ), f"{st['Sid']}: {r}"
