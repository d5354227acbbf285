"""A second environment beside the first: staging with the dev profile (one
instance per tier, single-AZ database, no deletion protection), found by the
staging dynamic inventory, whose SSM transfer bucket the pre-flight checks;
HTTPS (an ACM certificate) once a certificate is given."""

from __future__ import annotations

import pytest

REGION = "eu-west-1"
ENV = "staging"
P = f"threetier-{ENV}"
EXTRA = (
    "-e",
    f"threetier_environment={ENV}",
    "-e",
    "threetier_profile=dev",
    "-e",
    f"aws_region={REGION}",
    "-e",
    "aws_artifacts_bucket_name=threetier-staging-test-artifacts",
)


@pytest.fixture(scope="module")
def staging(kit):
    run = kit.playbook("site.yml", *EXTRA)
    assert run.rc == 0, run.output[-6000:]
    return run


def test_dev_profile_sizes(staging, moto):
    asg = moto.client("autoscaling", REGION)
    for tier in ("web", "app"):
        (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-{tier}"])[
            "AutoScalingGroups"
        ]
        assert (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (1, 1, 2)
        assert len(g["Instances"]) == 1
    db = moto.client("rds", REGION).describe_db_instances(DBInstanceIdentifier=f"{P}-db")[
        "DBInstances"
    ][0]
    assert db["MultiAZ"] is False
    assert db["DeletionProtection"] is False
    # no deletion protection on the balancers either (production's profile only)
    elb = moto.client("elbv2", REGION)
    for lb in elb.describe_load_balancers(Names=[f"{P}-ext", f"{P}-int"])["LoadBalancers"]:
        attrs = elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])
        assert {"Key": "deletion_protection.enabled", "Value": "false"} in attrs["Attributes"]


def test_staging_inventory_lists_the_asg_instances(staging, kit, moto):
    groups, graph = kit.inventory_groups("inventories/staging/aws_ec2.yml")
    asg = moto.client("autoscaling", REGION)
    for tier in ("web", "app"):
        (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-{tier}"])[
            "AutoScalingGroups"
        ]
        (instance,) = [i["InstanceId"] for i in g["Instances"]]
        assert groups[f"tier_{tier}"] == {instance}, graph
    assert "env_staging" in groups
    assert "env_production" not in graph


def test_ssm_transfer_bucket_is_checked_once_there_are_instances(staging, kit, moto):
    """SSM's transfer bucket (group_vars/aws_ec2/connection.yml) is read from
    the instances the staging inventory lists: its shipped placeholder stops
    any playbook's pre-flight (a release's too) before it reaches them."""
    own = (
        "-e",
        "aws_artifacts_bucket_name=threetier-staging-test-artifacts",
        "-e",
        "aws_launch_templates_ami_id=ami-0123456789abcdef0",
    )
    run = kit.playbook("preflight.yml", *own, inventory="inventories/staging")
    assert run.rc != 0
    assert (
        'ansible_aws_ssm_bucket_name: "threetier-staging-ssm-transfer-CHANGE-ME" is not a valid'
        " S3 bucket name" in run.output
    ), run.output[-3000:]


def test_certificate_gives_https_and_a_redirect(staging, kit, moto):
    acm = moto.client("acm", REGION)
    cert = acm.request_certificate(DomainName="taskboard.example.org")["CertificateArn"]
    run = kit.playbook(
        "load_balancers.yml", *EXTRA, "-e", f"aws_load_balancers_certificate_arn={cert}"
    )
    assert run.rc == 0, run.output[-4000:]
    elb = moto.client("elbv2", REGION)
    (lb,) = elb.describe_load_balancers(Names=[f"{P}-ext"])["LoadBalancers"]
    listeners = {
        x["Port"]: x
        for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    assert set(listeners) == {80, 443}
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [cert]
    tg = elb.describe_target_groups(Names=[f"{P}-web"])["TargetGroups"][0]
    assert https["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]
    again = kit.playbook(
        "load_balancers.yml", *EXTRA, "-e", f"aws_load_balancers_certificate_arn={cert}"
    )
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]


def test_non_production_teardown_needs_no_confirmation(kit, moto):
    """The confirmation guards production only. (The staging resources stay:
    the session's moto server goes with them; production's full teardown is
    tested in test_provision.py, this keeps the module's time down.)"""
    run = kit.playbook(
        "teardown.yml", "-e", "threetier_environment=dev", "-e", "threetier_profile=dev"
    )
    assert run.rc == 0, run.output[-4000:]
    assert "aws_teardown_confirm" not in run.output
    # (other modules of the session may have left dev resources, e.g. the
    # global IAM roles: the first run removes them; a second changes nothing)
    again = kit.playbook(
        "teardown.yml", "-e", "threetier_environment=dev", "-e", "threetier_profile=dev"
    )
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]
