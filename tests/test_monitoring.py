"""The monitoring layer's dashboard against a real moto server: built from the
real load balancers (ARN suffixes), Auto Scaling group and database names,
unchanged on a second run, repaired when edited by hand, removed by the
layer's teardown. Also the app tier's metrics rule of the security groups.

Only the layers the dashboard reads are provisioned (network, security
groups, load balancers), in a region of its own so the other kit tests'
environments are not touched."""

from __future__ import annotations

import json

import pytest

REGION = "ap-southeast-2"
ENV = "local"
P = f"threetier-{ENV}"
# a bucket name of its own: bucket names are global, and teardown removes it
EXTRA = (
    "-e",
    f"aws_region={REGION}",
    "-e",
    "aws_artifacts_bucket_name=threetier-monitoring-test-artifacts",
)
LAYERS = ("network.yml", "security_groups.yml", "load_balancers.yml")


@pytest.fixture(scope="module")
def aws(moto):
    return lambda service: moto.client(service, REGION)


@pytest.fixture(scope="module")
def layers(kit):
    for playbook in LAYERS:
        run = kit.playbook(playbook, *EXTRA)
        assert run.rc == 0, run.output[-6000:]


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


def test_edited_dashboard_is_put_back(kit, aws, first_run):
    want = dashboard(aws)
    aws("cloudwatch").put_dashboard(
        DashboardName=P, DashboardBody=json.dumps({"widgets": want["widgets"][:1]})
    )
    run = kit.playbook("monitoring.yml", *EXTRA)
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 1
    assert dashboard(aws) == want


def test_metrics_port_open_to_the_app_tier_only(aws, layers):
    groups = {
        g["GroupName"]: g
        for g in aws("ec2").describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"{P}-*"]}]
        )["SecurityGroups"]
    }
    app = groups[f"{P}-app"]
    rules = {
        (p["FromPort"], pair["GroupId"])
        for p in app["IpPermissions"]
        for pair in p.get("UserIdGroupPairs", [])
    }
    assert rules == {(5000, groups[f"{P}-alb-int"]["GroupId"]), (9100, app["GroupId"])}
    assert all(not p.get("IpRanges") for p in app["IpPermissions"])
    for name, group in groups.items():
        if name != f"{P}-app":
            assert all(p.get("FromPort") != 9100 for p in group["IpPermissions"]), name


def test_teardown_removes_the_dashboard(kit, aws, first_run):
    run = kit.playbook("teardown.yml", *EXTRA)
    assert run.rc == 0, run.output[-4000:]
    cloudwatch = aws("cloudwatch")
    with pytest.raises(cloudwatch.exceptions.ResourceNotFound):
        cloudwatch.get_dashboard(DashboardName=P)
    assert not aws("elbv2").describe_load_balancers()["LoadBalancers"]
