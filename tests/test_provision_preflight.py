"""The pre-flight play: each mistake stops the run with a message naming the
variable, before any AWS call of the playbook (nothing of the environment
exists after). The EC2 inventory reads the instances when the run starts, as
it does against AWS: that read is the only request the emulator sees."""

from __future__ import annotations

import pytest

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
    requests_before = requests(moto)
    run = kit.playbook("site.yml", *BASE, *extra)
    assert run.rc != 0
    assert message in run.output, run.output[-3000:]
    assert "aws_preflight" in run.output
    # no play called AWS: the emulator saw the inventory's read only, and
    # nothing of dev exists
    assert 1 <= inventory_reads <= 2
    assert requests(moto) - requests_before == inventory_reads
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


@pytest.mark.parametrize("playbook", ["network.yml", "images.yml", "teardown.yml"])
def test_production_first_runs_need_no_ami(kit, moto, playbook):
    """The network and the first bake come before any AMI of the operator's
    (and a teardown removes the templates): their pre-flight passes without
    one (only the pre-flight runs here: --tags aws_preflight)."""
    run = kit.playbook(playbook, "--tags", "aws_preflight", inventory="inventories/production")
    assert run.rc == 0, run.output[-3000:]
    assert "missing required variable" not in run.output
    assert "Check that the required variables are set" in run.output
