"""The monitoring layer's dashboard against a real moto server: built from the
real load balancers (ARN suffixes), Auto Scaling group and database names,
unchanged on a second run; its module alone (written only when the body
differs, removed, an empty body refused).

Only what the dashboard reads is there (the load balancers and target
groups), in a region of its own so the other kit tests' environments are not
touched. teardown.yml's removal of the dashboard runs in test_provision."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGION = "ap-southeast-2"
ENV = "local"
P = f"threetier-{ENV}"
EXTRA = ("-e", f"aws_region={REGION}")
LAYERS = ("network.yml", "security_groups.yml", "load_balancers.yml")


@pytest.fixture(scope="module")
def aws(moto):
    return lambda service: moto.client(service, REGION)


@pytest.fixture(scope="module")
def layers(aws):
    """The load balancers and target groups the dashboard names, made with
    boto3 under the kit's names (the provisioning playbooks cost minutes on a
    busy 2-core machine; tests/test_provision.py covers them)."""
    ec2, elb = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=z)["Subnet"][
            "SubnetId"
        ]
        for i, z in enumerate(zones)
    ]
    for lb, tg, scheme, port in (
        (f"{P}-ext", f"{P}-web", "internet-facing", 80),
        (f"{P}-int", f"{P}-app", "internal", 5000),
    ):
        elb.create_load_balancer(Name=lb, Subnets=subnets, Scheme=scheme, Type="application")
        elb.create_target_group(Name=tg, Protocol="HTTP", Port=port, VpcId=vpc)


@pytest.fixture(scope="module")
def first_run(kit, layers):
    run = kit.playbook("monitoring.yml", *EXTRA)
    assert run.rc == 0, run.output[-6000:]
    return run


def dashboard(aws) -> dict:
    return json.loads(aws("cloudwatch").get_dashboard(DashboardName=P)["DashboardBody"])


def metrics_of(body: dict) -> list[list]:
    """Every metric line of every widget, options ({...}) left out."""
    return [
        [x for x in line if not isinstance(x, dict)]
        for widget in body["widgets"]
        for line in widget["properties"]["metrics"]
    ]


def test_dashboard_names_the_real_resources(aws, first_run):
    assert first_run.recap()["changed"] >= 1
    body = dashboard(aws)
    lines = metrics_of(body)
    lbs = {
        x["LoadBalancerName"]: x["LoadBalancerArn"].split(":loadbalancer/")[1]
        for x in aws("elbv2").describe_load_balancers(Names=[f"{P}-ext", f"{P}-int"])[
            "LoadBalancers"
        ]
    }
    tgs = {
        x["TargetGroupName"]: x["TargetGroupArn"].rsplit(":", 1)[1]
        for x in aws("elbv2").describe_target_groups(Names=[f"{P}-web", f"{P}-app"])["TargetGroups"]
    }
    for lb, tg in ((f"{P}-ext", f"{P}-web"), (f"{P}-int", f"{P}-app")):
        assert lbs[lb].startswith(f"app/{lb}/")
        for metric in ("RequestCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime"):
            assert ["AWS/ApplicationELB", metric, "LoadBalancer", lbs[lb]] in lines, metric
        for metric in ("HealthyHostCount", "UnHealthyHostCount"):
            want = ["AWS/ApplicationELB", metric, "TargetGroup", tgs[tg], "LoadBalancer", lbs[lb]]
            assert want in lines
    for tier in ("web", "app"):
        group = ["AutoScalingGroupName", f"{P}-{tier}"]
        assert ["AWS/EC2", "CPUUtilization", *group] in lines
        assert ["AWS/AutoScaling", "GroupInServiceInstances", *group] in lines
        assert ["CWAgent", "mem_used_percent", *group] in lines
        assert ["CWAgent", "disk_used_percent", *group] in lines
    db = ["DBInstanceIdentifier", f"{P}-db"]
    for metric in ("CPUUtilization", "DatabaseConnections", "FreeStorageSpace", "ReadLatency"):
        assert ["AWS/RDS", metric, *db] in lines, metric
    # every line names a dimension with a value, every widget its region
    assert all(len(line) >= 4 and all(line) for line in lines)
    assert {w["properties"]["region"] for w in body["widgets"]} == {REGION}


def test_second_run_changes_nothing(kit, aws, first_run):
    before = dashboard(aws)
    run = kit.playbook("monitoring.yml", *EXTRA)
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-4000:]
    assert dashboard(aws) == before


def test_dashboard_module_alone(kit):
    """Written only when the body differs, an empty body refused, removal."""
    run = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         "tests/playbooks/cloudwatch_dashboard.yml", "-e", f"tt_region={REGION}"],
        cwd=ROOT, env=kit.env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert "All assertions passed" in run.stdout
