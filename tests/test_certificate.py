"""roles/aws_certificate's ACM module alone against the session's moto
(tests/playbooks/acm_certificate.yml): what the production run of
test_provision.py does not reach (a wait that times out, new names, removal
twice). The zone is made here, as the operator's would be."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def test_certificate_module_alone(kit, moto):
    moto.client("route53", REGION).create_hosted_zone(
        Name="cert-module.example", CallerReference="cert-module"
    )
    run = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         "tests/playbooks/acm_certificate.yml", "-e", f"tt_region={REGION}"],
        cwd=ROOT, env=kit.env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert "All assertions passed" in run.stdout


# site.yml on the local inventory as a throwaway environment: the role's
# refusals come before any change (it runs right after the read-only
# description of what exists)
REFUSED = {
    "a name outside the zone": (
        ["-e", "aws_certificate_domain_name=www.elsewhere.example",
         "-e", "aws_certificate_zone_name=cert-module.example"],
        "aws_certificate: not in the zone cert-module.example: www.elsewhere.example"
        " (each name's validation record goes into that zone)",
    ),
    "not a DNS name": (
        ["-e", "aws_certificate_domain_name=www..cert-module.example",
         "-e", "aws_certificate_zone_name=cert-module.example"],
        "aws_certificate: not DNS names: www..cert-module.example",
    ),
    "a zone the account does not have": (
        ["-e", "aws_certificate_domain_name=www.nozone.example",
         "-e", "aws_certificate_zone_name=nozone.example"],
        "aws_certificate_zone_name: no public hosted zone nozone.example in this account",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_certificate_input_refused_before_any_change(kit, moto, case):
    extra, message = REFUSED[case]
    run = kit.playbook(
        "site.yml",
        "-e", "threetier_environment=dev", "-e", "threetier_profile=dev",
        "-e", "aws_certificate_enabled=true", *extra,
    )  # fmt: skip
    assert run.rc != 0
    assert message in run.output, run.output[-3000:]
    vpcs = moto.client("ec2", REGION).describe_vpcs(
        Filters=[{"Name": "tag:Environment", "Values": ["dev"]}]
    )["Vpcs"]
    assert vpcs == []
    assert not [
        s
        for s in moto.client("acm", REGION).list_certificates()["CertificateSummaryList"]
        if s["DomainName"] in ("www.elsewhere.example", "www.nozone.example")
    ]
