"""The real staging and dev inventories against the emulator (their own
group_vars; only the emulator, the buckets' names and what a test turns on
given as extra vars): staging's profile (2/2/4 per tier, Multi-AZ database,
no deletion protection), found by the staging dynamic inventory, whose SSM
transfer bucket and session-manager-plugin the pre-flight checks; HTTPS (an
ACM certificate) once a certificate is given; the bastion (on in staging's
site.yml run; off removes it); a second run with nothing to change. Dev's
profile (1/1/2, single-AZ), its second run, and its teardown without a
confirmation (production's needs one: test_provision.py)."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import ANY_AMI, EMULATOR, assert_https_with_redirect, assert_refused, certificate
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REGION = "eu-west-1"
ENV = "staging"
P = f"threetier-{ENV}"
INVENTORY = "inventories/staging"
BUCKET = ("-e", "aws_artifacts_bucket_name=threetier-staging-test-artifacts")
# the emulator and the buckets' names: what an operator sets in group_vars
EXTRA = (*EMULATOR, *BUCKET, "-e", "ansible_aws_ssm_bucket_name=threetier-staging-test-ssm")


def staging_playbook(kit, playbook: str, *more: str):
    return kit.playbook(playbook, *EXTRA, *more, inventory=INVENTORY)


# The bastion on (roles/aws_bastion): SSH from the operator's address only.
OPERATOR = "203.0.113.7/32"
BASTION_KEY = f"{P}-bastion-test"
BASTION = (
    "-e",
    "aws_bastion_enabled=true",
    "-e",
    f"aws_bastion_operator_cidr={OPERATOR}",
    "-e",
    f"aws_bastion_key_name={BASTION_KEY}",
)
# site.yml limited to the layers the bastion touches (a cheap re-run)
BASTION_LAYERS = ("--tags", "aws_preflight,aws_state,aws_network,aws_security_groups,aws_bastion")


@pytest.fixture(scope="module")
def staging(kit, moto):
    moto.client("ec2", REGION).import_key_pair(
        KeyName=BASTION_KEY,
        PublicKeyMaterial=Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH),
    )
    run = staging_playbook(kit, "site.yml", *BASTION)
    assert run.rc == 0, run.output[-6000:]
    return run


def assert_profile(moto, prefix: str, sizes: tuple[int, int, int], multi_az: bool) -> None:
    """An environment's profile numbers: each tier's group sizes and its
    instances, the database's Multi-AZ, no deletion protection (production's
    profile only) on the database and the balancers."""
    asg = moto.client("autoscaling", REGION)
    for tier in ("web", "app"):
        (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{prefix}-{tier}"])[
            "AutoScalingGroups"
        ]
        assert (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == sizes
        assert len(g["Instances"]) == sizes[1]
    db = moto.client("rds", REGION).describe_db_instances(DBInstanceIdentifier=f"{prefix}-db")[
        "DBInstances"
    ][0]
    assert db["MultiAZ"] is multi_az
    assert db["DeletionProtection"] is False
    elb = moto.client("elbv2", REGION)
    names = [f"{prefix}-ext", f"{prefix}-int"]
    for lb in elb.describe_load_balancers(Names=names)["LoadBalancers"]:
        attrs = elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])
        assert {"Key": "deletion_protection.enabled", "Value": "false"} in attrs["Attributes"]


def test_staging_profile(staging, moto):
    assert_profile(moto, P, (2, 2, 4), multi_az=True)


def test_second_run_changes_nothing(staging, kit, moto):
    """The whole site.yml again, the bastion on: nothing to change (before
    the certificate test below gives the balancer HTTPS)."""
    before = [b["InstanceId"] for b in _bastions(moto)]
    again = staging_playbook(kit, "site.yml", *BASTION)
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]
    assert [b["InstanceId"] for b in _bastions(moto)] == before


def test_staging_inventory_lists_the_asg_instances(staging, kit, moto):
    groups, graph = kit.inventory_groups("inventories/staging/aws_ec2.yml")
    asg = moto.client("autoscaling", REGION)
    for tier in ("web", "app"):
        (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-{tier}"])[
            "AutoScalingGroups"
        ]
        assert groups[f"tier_{tier}"] == {i["InstanceId"] for i in g["Instances"]}, graph
    assert "env_staging" in groups
    assert "env_production" not in graph


def test_ssm_transfer_bucket_is_checked_once_there_are_instances(staging, kit, moto):
    """SSM's transfer bucket (group_vars/all/ssm.yml, read by the instances'
    connection and the control host alike): its shipped placeholder stops
    any playbook's pre-flight (a release's too) before it reaches them."""
    run = kit.playbook("preflight.yml", *BUCKET, *ANY_AMI, inventory="inventories/staging")
    assert_refused(
        run,
        'ansible_aws_ssm_bucket_name: "threetier-staging-ssm-transfer-CHANGE-ME" is not a valid'
        " S3 bucket name",
    )


def test_certificate_gives_https_and_a_redirect(staging, kit, moto):
    acm = moto.client("acm", REGION)
    cert = acm.request_certificate(DomainName="taskboard.example.org")["CertificateArn"]
    run = staging_playbook(kit, "load_balancers.yml", *certificate(cert))
    assert run.rc == 0, run.output[-4000:]
    elb = moto.client("elbv2", REGION)
    (lb,) = elb.describe_load_balancers(Names=[f"{P}-ext"])["LoadBalancers"]
    tg = elb.describe_target_groups(Names=[f"{P}-web"])["TargetGroups"][0]
    assert_https_with_redirect(elb, lb["LoadBalancerArn"], cert, tg["TargetGroupArn"])
    again = staging_playbook(kit, "load_balancers.yml", *certificate(cert))
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]


def test_ssm_hosts_need_the_session_manager_plugin(staging, kit, moto, tmp_path):
    """The staging inventory's instances connect with community.aws.aws_ssm:
    a controller without AWS's session-manager-plugin is told so by name,
    with where AWS documents installing it, before anything changes; with
    the plugin where the connection looks for it the check passes."""
    own = (
        *BUCKET,
        *ANY_AMI,
        "-e",
        "ansible_aws_ssm_bucket_name=threetier-staging-ssm-123456789012",
    )
    installed = os.path.exists("/usr/local/bin/session-manager-plugin") or shutil.which(
        "session-manager-plugin", path=kit.env["PATH"]
    )
    if not installed:  # this controller's PATH (and /usr/local/bin) lacks it
        run = kit.playbook("preflight.yml", *own, inventory="inventories/staging")
        assert_refused(run, "session-manager-plugin: the hosts i-")
        assert "connect with the SSM connection (community.aws.aws_ssm)" in run.output
        assert "it is not on this controller (/usr/local/bin/session-manager-plugin or PATH)" in (
            run.output
        )
        assert "session-manager-working-with-install-plugin.html" in run.output
    missing = kit.playbook(
        "preflight.yml",
        *own,
        "-e",
        f"ansible_aws_ssm_plugin={tmp_path}/session-manager-plugin",
        inventory="inventories/staging",
    )
    assert_refused(missing, f"names {tmp_path}/session-manager-plugin, which does not exist")
    plugin = tmp_path / "session-manager-plugin"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    there = kit.playbook(
        "preflight.yml",
        *own,
        "-e",
        f"ansible_aws_ssm_plugin={plugin}",
        inventory="inventories/staging",
    )
    assert there.rc == 0, there.output[-3000:]
    assert "Check the SSM connection's session-manager-plugin" in there.output


def _groups(moto) -> dict:
    ec2 = moto.client("ec2", REGION)
    return {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "tag:Environment", "Values": [ENV]}]
        )["SecurityGroups"]
    }


def _bastions(moto) -> list[dict]:
    ec2 = moto.client("ec2", REGION)
    return [
        i
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:Name", "Values": [f"{P}-bastion"]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]


def _ssh_rules(group: dict) -> list[dict]:
    return [p for p in group["IpPermissions"] if p.get("FromPort") == 22 or p.get("ToPort") == 22]


def test_bastion_on_ssh_from_the_operator_only(staging, moto):
    """On: one bastion in the public subnet with a public address, its group
    letting 22 in from the operator's address only, and the web and app
    groups letting 22 in from the bastion's group only; the run prints it."""
    ec2 = moto.client("ec2", REGION)
    (bastion,) = _bastions(moto)
    (public,) = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{P}-public-a"]}])[
        "Subnets"
    ]
    assert bastion["SubnetId"] == public["SubnetId"]
    assert bastion.get("PublicIpAddress")
    assert bastion["KeyName"] == BASTION_KEY
    assert bastion["MetadataOptions"]["HttpTokens"] == "required"
    groups = _groups(moto)
    own = groups[f"{P}-bastion"]
    assert [g["GroupId"] for g in bastion["SecurityGroups"]] == [own["GroupId"]]
    (rule,) = own["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [OPERATOR]
    assert rule.get("UserIdGroupPairs", []) == []
    assert rule.get("Ipv6Ranges", []) == []
    for tier in ("web", "app"):
        (ssh,) = _ssh_rules(groups[f"{P}-{tier}"])
        assert [p["GroupId"] for p in ssh["UserIdGroupPairs"]] == [own["GroupId"]], tier
        assert ssh.get("IpRanges", []) == [], tier
    for name in (f"{P}-alb-ext", f"{P}-alb-int", f"{P}-db"):
        assert _ssh_rules(groups[name]) == [], name
    assert "bastion: admin@" in staging.output
    assert f"(SSH from {OPERATOR} only)" in staging.output


def test_bastion_refuses_ssh_from_anywhere(staging, kit, moto):
    before = _groups(moto)[f"{P}-bastion"]["IpPermissions"]
    run = staging_playbook(
        kit, "site.yml", *BASTION, "-e", "aws_bastion_operator_cidr=0.0.0.0/0", *BASTION_LAYERS
    )
    assert_refused(run, "aws_bastion: on (aws_bastion_enabled), it needs aws_bastion_operator_cidr")
    assert "never 0.0.0.0/0" in run.output
    assert _groups(moto)[f"{P}-bastion"]["IpPermissions"] == before


def test_bastion_removed_by_teardown_and_off(staging, kit, moto):
    """teardown.yml's removal of the bastion (its instance; its group,
    still named by the web and app groups there, goes with them), then
    site.yml with the bastion off: the groups lose their SSH rules and the
    group left from before goes; a second run changes nothing."""
    teardown = staging_playbook(
        kit, "teardown.yml", "--tags", "aws_preflight,aws_state,aws_bastion"
    )
    assert teardown.rc == 0, teardown.output[-4000:]
    assert _bastions(moto) == []
    off = staging_playbook(kit, "site.yml", *BASTION_LAYERS)
    assert off.rc == 0, off.output[-4000:]
    groups = _groups(moto)
    assert f"{P}-bastion" not in groups
    for tier in ("web", "app"):
        assert _ssh_rules(groups[f"{P}-{tier}"]) == [], tier
    again = staging_playbook(kit, "site.yml", *BASTION_LAYERS)
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]


DEV = "threetier-dev"
DEV_EXTRA = (
    *EMULATOR,
    "-e",
    "aws_artifacts_bucket_name=threetier-dev-test-artifacts",
    "-e",
    "ansible_aws_ssm_bucket_name=threetier-dev-test-ssm",
)


def dev_playbook(kit, playbook: str, *more: str):
    return kit.playbook(playbook, *DEV_EXTRA, *more, inventory="inventories/dev")


def test_dev_inventory_provisions_again_unchanged_and_tears_down(kit, moto):
    """The dev inventory as shipped (its profile: one instance per tier,
    single-AZ database), a second run with nothing to change, and teardown
    without a confirmation (production's needs one), complete: a second
    teardown changes nothing."""
    run = dev_playbook(kit, "site.yml")
    assert run.rc == 0, run.output[-6000:]
    assert_profile(moto, DEV, (1, 1, 2), multi_az=False)
    again = dev_playbook(kit, "site.yml")
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]
    down = dev_playbook(kit, "teardown.yml")
    assert down.rc == 0, down.output[-4000:]
    assert "aws_teardown_confirm" not in down.output
    ec2 = moto.client("ec2", REGION)
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{DEV}-vpc"]}])["Vpcs"]
    groups = moto.client("autoscaling", REGION).describe_auto_scaling_groups()["AutoScalingGroups"]
    assert not [g for g in groups if g["AutoScalingGroupName"].startswith(DEV)]
    buckets = [b["Name"] for b in moto.client("s3", REGION).list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith(DEV)]
    gone = dev_playbook(kit, "teardown.yml")
    assert gone.rc == 0, gone.output[-4000:]
    assert gone.recap()["changed"] == 0, gone.output[-4000:]
    # a site's name whose zone is gone already (the operator's): nothing to
    # remove there, and no failure
    named = dev_playbook(
        kit, "teardown.yml", "-e", "threetier_site_zone=gone.example",
        "-e", "threetier_site_name=www.gone.example",
    )  # fmt: skip
    assert named.rc == 0, named.output[-4000:]
    assert named.recap()["changed"] == 0, named.output[-4000:]
