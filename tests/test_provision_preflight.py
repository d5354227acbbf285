"""The pre-flight play: each mistake stops the run with a message naming the
variable, before any AWS call of the playbook (nothing of the environment
exists after). The EC2 inventory reads the instances when the run starts, as
it does against AWS: that read is the only request the emulator sees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import ANY_AMI, PRODUCTION_CERTIFICATE, assert_refused, certificate
from iam_policies import recorded_requests

ROOT = Path(__file__).resolve().parent.parent

ENV = "dev"
BASE = ("-e", f"threetier_environment={ENV}", "-e", "threetier_profile=dev")

CASES = {
    "overlapping subnets": (
        ["-e", "aws_network_app_b_cidr=10.0.3.128/25"],
        "aws_network_app_a_cidr: 10.0.3.0/24 overlaps aws_network_app_b_cidr: 10.0.3.128/25",
    ),
    "subnet outside the VPC": (
        ["-e", "aws_network_db_b_cidr=10.1.6.0/24"],
        "aws_network_db_b_cidr: 10.1.6.0/24 is outside the VPC's 10.0.0.0/16"
        " (aws_network_vpc_cidr)",
    ),
    "min above desired": (
        ["-e", "aws_autoscaling_web_min_size=3", "-e", "aws_autoscaling_web_desired_capacity=2"],
        "aws_autoscaling_web_min_size (3) must not exceed aws_autoscaling_web_desired_capacity (2)",
    ),
    "desired above max": (
        ["-e", "aws_autoscaling_app_desired_capacity=5"],
        "aws_autoscaling_app_desired_capacity (5) must not exceed aws_autoscaling_app_max_size (2)",
    ),
    "unknown environment": (
        ["-e", "threetier_environment=prod"],
        'threetier_environment: unknown environment "prod"',
    ),
    "unknown profile": (
        ["-e", "threetier_profile=huge"],
        'threetier_profile: unknown profile "huge"',
    ),
    "missing bucket": (
        ["-e", "aws_artifacts_bucket_name="],
        "missing required variable(s): aws_artifacts_bucket_name",
    ),
    # S3's naming rules (every rule: test_bucket_name_rules below)
    "bucket placeholder": (
        ["-e", "aws_artifacts_bucket_name=threetier-dev-artifacts-CHANGE-ME"],
        'aws_artifacts_bucket_name: "threetier-dev-artifacts-CHANGE-ME" is not a valid S3 bucket'
        " name (only lowercase letters, digits, hyphens and dots, not A C E G H M N; it must end"
        " with a lowercase letter or a digit). It still holds the shipped placeholder CHANGE-ME",
    ),
    # the instance roles' name of the bucket, and SSM's transfer bucket (read
    # from every host of the inventory: here the control host's -e)
    "other buckets": (
        [
            "-e",
            "aws_instance_profiles_artifact_bucket=threetier-dev..artifacts",
            "-e",
            "ansible_aws_ssm_bucket_name=threetier-dev-ssm-s3alias",
        ],
        'aws_instance_profiles_artifact_bucket: "threetier-dev..artifacts" is not a valid S3 bucket'
        ' name (no two adjacent dots); ansible_aws_ssm_bucket_name: "threetier-dev-ssm-s3alias" is'
        " not a valid S3 bucket name (the suffix -s3alias is reserved)",
    ),
    # the SSM connection's transfer bucket, which site.yml creates: its name
    # (aws_ssm_transfer_bucket_name, the local inventory's) and its expiry
    "SSM transfer bucket": (
        ["-e", "aws_ssm_transfer_bucket_name=threetier-dev-ssm_transfer"],
        'aws_ssm_transfer_bucket_name: "threetier-dev-ssm_transfer" is not a valid S3 bucket name'
        " (only lowercase letters, digits, hyphens and dots, not _)",
    ),
    "SSM transfer bucket expiry": (
        ["-e", "aws_ssm_transfer_bucket_expiration_days=0"],
        "aws_ssm_transfer_bucket_expiration_days: must be a positive integer",
    ),
    "production without a certificate": (
        ["-e", "threetier_environment=production", "-e", "threetier_profile=production"],
        "the production environment serves HTTPS only: let the kit request the site's certificate"
        " (aws_certificate_enabled: true, with threetier_site_name and threetier_site_zone)",
    ),
    "certificate of another region": (
        [
            "-e",
            "aws_load_balancers_certificate_arn=arn:aws:acm:eu-west-1:123456789012:certificate/"
            "0b6d0b8e-5f43-4a3c-9d6e-3f1e2a7c9b10",
        ],
        "aws_load_balancers_certificate_arn: "
        '"arn:aws:acm:eu-west-1:123456789012:certificate/0b6d0b8e-5f43-4a3c-9d6e-3f1e2a7c9b10"'
        " is not the ARN of an ACM certificate in us-east-1",
    ),
    "production without deletion protection": (
        [
            "-e",
            "threetier_environment=production",
            "-e",
            "threetier_profile=production",
            *certificate(PRODUCTION_CERTIFICATE),
            "-e",
            "aws_load_balancers_deletion_protection=false",
            # (the local inventory skips it, which production refuses first)
            "-e",
            "aws_database_skip_final_snapshot=false",
        ],
        "aws_load_balancers_deletion_protection must be true in the production environment",
    ),
}


def requests(moto) -> int:
    return moto.log.read_text(errors="replace").count('"POST ')


@pytest.fixture(scope="module")
def inventory_reads(kit, moto) -> int:
    """The requests the EC2 inventory makes by itself (DescribeInstances)."""
    before = requests(moto)
    kit.inventory_graph("inventories/local")
    return requests(moto) - before


@pytest.mark.parametrize("case", list(CASES))
def test_preflight_mistake_stops_before_any_aws_call(kit, moto, case, inventory_reads):
    extra, message = CASES[case]
    run = kit.playbook("site.yml", *BASE, *extra)
    assert run.rc != 0
    assert message in run.output, run.output[-3000:]
    assert "aws_preflight" in run.output
    # no play called AWS: the emulator saw the inventory's read only (what
    # moto recorded during the run: conftest's Kit records every playbook),
    # and nothing of dev exists
    assert 1 <= inventory_reads <= 2
    recorded = [x for x in run.recording.splitlines() if x.strip()]
    assert len(recorded) == inventory_reads, recorded
    vpcs = moto.client("ec2").describe_vpcs(Filters=[{"Name": "tag:Environment", "Values": [ENV]}])[
        "Vpcs"
    ]
    assert vpcs == []


def test_production_inventory_needs_an_ami(kit, moto):
    """Against AWS (no emulator switch) each tier's AMI is required where
    launch templates are made; the pre-flight play says so before any call
    (none could succeed here anyway), naming only the tier that lacks one."""
    run = kit.playbook("site.yml", inventory="inventories/production")
    assert run.rc != 0
    assert (
        "missing required variable(s): aws_launch_templates_web_ami_id, "
        "aws_launch_templates_app_ami_id (aws_launch_templates_ami_id sets both tiers" in run.output
    ), run.output[-3000:]
    run = kit.playbook(
        "site.yml",
        "-e",
        "aws_launch_templates_web_ami_id=ami-0123456789abcdef0",
        inventory="inventories/production",
    )
    assert run.rc != 0
    assert "missing required variable(s): aws_launch_templates_app_ami_id (" in run.output, (
        run.output[-3000:]
    )


def test_production_as_shipped_is_refused_until_its_placeholders_are_set(kit, moto):
    """The production inventory as shipped: the artifact bucket's placeholder
    name, then the SSM transfer bucket's (group_vars/all/ssm.yml: site.yml
    creates that bucket, so the control host checks its name, whether the
    inventory lists instances or not), then the missing site name and zone
    (the certificate's), each refused by name before any change (the AMI
    given, as after the first bake)."""
    run = kit.playbook("site.yml", *ANY_AMI, inventory="inventories/production")
    assert_refused(
        run,
        'aws_artifacts_bucket_name: "threetier-production-artifacts-CHANGE-ME" is not a valid'
        " S3 bucket name",
    )
    bucket = ("-e", "aws_artifacts_bucket_name=threetier-production-artifacts-123456789012")
    run = kit.playbook("site.yml", *ANY_AMI, *bucket, inventory="inventories/production")
    assert_refused(
        run,
        'ansible_aws_ssm_bucket_name: "threetier-production-ssm-transfer-CHANGE-ME" is not a'
        " valid S3 bucket name",
    )
    assert 'aws_artifacts_bucket_name: "' not in run.output
    # refused before any call: moto saw the EC2 inventory's reads only
    assert {r.action for r in recorded_requests(run.recording)} <= {"ec2:DescribeInstances"}
    run = kit.playbook("site.yml", *ANY_AMI, *OWN_BUCKETS, inventory="inventories/production")
    assert_refused(
        run,
        "aws_certificate: the site's name and its public Route 53 zone are required to request"
        " a certificate (threetier_site_name and threetier_site_zone",
    )


# the shipped placeholders replaced (group_vars/all/ssm.yml's SSM transfer
# bucket too: every host reads it, the control host's site.yml and the
# session's production instances, if any)
OWN_BUCKETS = (
    "-e",
    "aws_artifacts_bucket_name=threetier-production-artifacts-123456789012",
    "-e",
    "ansible_aws_ssm_bucket_name=threetier-production-ssm-123456789012",
)


@pytest.mark.parametrize("playbook", ["network.yml", "images.yml", "teardown.yml"])
def test_production_first_runs_need_no_ami(kit, moto, playbook):
    """The network and the first bake come before any AMI of the operator's
    (and a teardown removes the templates and the load balancers): their
    pre-flight passes without an AMI or a certificate (only the pre-flight
    runs here: --tags aws_preflight)."""
    # the SSM connection's session-manager-plugin (the bake's builders, and
    # the session's production instances if any): /bin/true stands in, no
    # session is opened (test_provision_staging.py proves the refusal)
    plugin = ("-e", "ansible_aws_ssm_plugin=/bin/true")
    run = kit.playbook(
        playbook,
        "--tags",
        "aws_preflight",
        *OWN_BUCKETS,
        *plugin,
        inventory="inventories/production",
    )
    assert run.rc == 0, run.output[-3000:]
    assert "missing required variable" not in run.output
    assert "Check that the required variables are set" in run.output
    assert "Check the S3 bucket names" in run.output


def _filter_module(name: str):
    path = ROOT / "roles" / "aws_preflight" / "filter_plugins" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("threetier-prod-artifacts", None),
        ("a.b-c.123", None),
        ("ab", "3 to 63 characters (it has 2)"),
        ("a" * 64, "3 to 63 characters (it has 64)"),
        ("threetier_artifacts", "only lowercase letters, digits, hyphens and dots, not _"),
        ("Threetier", "it must start with a lowercase letter or a digit"),
        ("-threetier", "it must start with a lowercase letter or a digit"),
        ("threetier.", "it must end with a lowercase letter or a digit"),
        ("threetier..artifacts", "no two adjacent dots"),
        ("192.168.5.4", "it must not look like an IP address"),
        ("xn--threetier", "the prefix xn-- is reserved"),
        ("sthree-threetier", "the prefix sthree- is reserved"),
        ("amzn-s3-demo-threetier", "the prefix amzn-s3-demo- is reserved"),
        ("threetier-s3alias", "the suffix -s3alias is reserved"),
        ("threetier--ol-s3", "the suffix --ol-s3 is reserved"),
        ("threetier.mrap", "the suffix .mrap is reserved"),
        ("threetier--x-s3", "the suffix --x-s3 is reserved"),
        ("threetier--table-s3", "the suffix --table-s3 is reserved"),
    ],
)
def test_bucket_name_rules(name, broken):
    """S3's naming rules for general purpose buckets, one by one."""
    s3 = _filter_module("threetier_s3")
    problems = s3.bucket_problems({"aws_artifacts_bucket_name": name})
    if broken is None:
        assert problems == []
    else:
        (problem,) = problems
        assert problem.startswith(f'aws_artifacts_bucket_name: "{name}" is not a valid S3 bucket')
        assert broken in problem
    # a name given by two variables (one defaults to the other) is said once
    assert len(s3.bucket_problems([("a", name), ("b", name)])) == len(problems)
