"""`make diagram` against a provisioned emulator: the production environment
site.yml made on the session's moto (conftest's `production`, recorder on;
test_provision checks the same run), then scripts/diagram.py draws it. The
DOT must name the subnets, both balancers, both Auto Scaling groups with
their instances, the database and the security-group edges with
their ports (app -> db on 5432); SVG and PNG must come out.

The same run checks the operator's IAM policy against what the playbooks
really call: every API call moto recorded during site.yml must be granted by
iam/operator-policy*.json, resources, tags and region considered
(tests/iam_policies.py; tests/test_iam_policy.py checks the policy against
the modules' sources, tests/test_iam_calls.py the session's other runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PRODUCTION, PRODUCTION_REGION, ROOT, production_playbook
from iam_policies import judge, recorded_requests
from recorder import RUNS

REGION = PRODUCTION_REGION
PREFIX = PRODUCTION


@pytest.fixture(scope="module")
def recorded_site(kit, moto, production):
    """The production environment as site.yml made it (provisioned again when
    a test that ran before took it down), and what moto recorded of the
    first run."""
    vpcs = moto.client("ec2", REGION).describe_vpcs(
        Filters=[{"Name": "tag:Name", "Values": [f"{PREFIX}-vpc"]}]
    )["Vpcs"]
    if not vpcs:
        again = production_playbook(kit, "site.yml")
        assert again.rc == 0, again.output[-4000:]
    return moto, production.recording


@pytest.fixture(scope="module")
def drawn(recorded_site, tmp_path_factory):
    moto, _ = recorded_site
    out = tmp_path_factory.mktemp("diagram")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's documented dummy
        "AWS_DEFAULT_REGION": REGION,
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "diagram.py"),
            "--prefix",
            PREFIX,
            "--out-dir",
            str(out),
            "--no-fleet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, (out / "architecture.dot").read_text(encoding="utf-8"), moto


def test_dot_names_every_part(drawn):
    _, dot, _ = drawn
    for subnet in ("public-a", "public-b", "app-a", "app-b", "db-a", "db-b"):
        assert f"subnet {subnet}" in dot
    assert f"AZ {REGION}a" in dot
    assert f"AZ {REGION}b" in dot
    assert f"ALB {PREFIX}-ext" in dot
    assert "internet-facing" in dot
    assert f"ALB {PREFIX}-int" in dot
    assert "internal" in dot
    assert f"ASG {PREFIX}-web" in dot
    assert f"ASG {PREFIX}-app" in dot
    assert f"RDS {PREFIX}-db" in dot
    assert "postgres" in dot


def test_dot_matches_the_emulator(drawn):
    """Every instance the groups have is drawn, inside a subnet cluster."""
    _, dot, moto = drawn
    groups = moto.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{PREFIX}-web", f"{PREFIX}-app"]
    )["AutoScalingGroups"]
    ids = [i["InstanceId"] for g in groups for i in g["Instances"]]
    assert len(ids) >= 4
    for iid in ids:
        assert re.search(rf"\bi_{iid.replace('-', '_')} \[label=\"{iid}\\n", dot), iid


def test_security_group_edges_with_ports(drawn):
    _, dot, _ = drawn

    def edge(a: str, b: str) -> str:
        m = re.search(rf"^  {a} -> {b} \[style=bold, label=\"([^\"]+)\"", dot, flags=re.M)
        assert m, f"no security-group edge {a} -> {b}"
        return m.group(1)

    p = PREFIX.replace("-", "_")
    assert "tcp/5432" in edge(f"asg_{p}_app", f"db_{p}_db")
    assert "tcp/443" in edge("internet", f"lb_{p}_ext")
    assert "tcp/5000" in edge(f"asg_{p}_web", f"lb_{p}_int")
    # nothing but the app tier reaches the database
    into_db = re.findall(rf"^  (\w+) -> db_{p}_db \[style=bold", dot, flags=re.M)
    assert into_db == [f"asg_{p}_app"]


def test_svg_and_png_are_rendered(drawn):
    out, _, _ = drawn
    svg = (out / "architecture.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    # graphviz writes "-" as &#45; in SVG text
    assert f"RDS {PREFIX}-db".replace("-", "&#45;") in svg
    assert svg.count('class="node"') >= 10
    png = (out / "architecture.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


# ---------------------------------------------------------------- IAM, as run


def test_every_call_of_a_real_run_is_granted(recorded_site, production):
    """Every call of the production site.yml run (eu-west-1, the policy's
    region) is granted by the operator's policy, judged with its resources'
    tags, the tags it creates them with and its region (tests/iam_policies.py;
    tests/test_iam_calls.py judges every other kit run of the session)."""
    _, recording = recorded_site
    (run,) = [r for r in RUNS if r.recording is production.recording]
    assert run.region == REGION
    called = {r.action for r in recorded_requests(recording)}
    assert len(called) > 40, f"recorded too few calls to be right: {sorted(called)}"
    problems, _ = judge([run])
    assert not problems, "site.yml called what the operator's policy does not grant:\n" + "\n".join(
        sorted(set(problems))
    )
