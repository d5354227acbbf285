"""roles/lb_target's ALB adapter (the rolling release's balancer step on
AWS) against a real moto server: out deregisters the target and waits for
draining, in registers it and waits until healthy; bad input is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"


@pytest.fixture(scope="module")
def target(moto):
    ec2, elb = moto.client("ec2", REGION), moto.client("elbv2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    tg = elb.create_target_group(
        Name="tt-lb-target-app", Protocol="HTTP", Port=5000, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance, "Port": 5000}])
    return {"arn": tg, "id": instance, "elb": elb}


def registered(target) -> list[str]:
    health = target["elb"].describe_target_health(TargetGroupArn=target["arn"])
    return [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]]


def play(moto, action: str, target_id: str, arn: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.url,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": os.environ.get("ANSIBLE_CALLBACKS_ENABLED")
        or "ansible.posix.timer",
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "tests/playbooks/lb_target_alb.yml",
         "-e", f"tt_action={action}", "-e", f"tt_target_id={target_id}",
         "-e", f"tt_target_group_arn={arn}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_out_deregisters_and_in_registers(moto, target):
    assert registered(target) == [target["id"]]
    out = play(moto, "out", target["id"], target["arn"])
    assert out.returncode == 0, out.stdout[-3000:]
    assert registered(target) == []
    back = play(moto, "in", target["id"], target["arn"])
    assert back.returncode == 0, back.stdout[-3000:]
    assert registered(target) == [target["id"]]
    again = play(moto, "in", target["id"], target["arn"])
    assert again.returncode == 0
    assert "changed=0" in again.stdout


def test_missing_target_group_is_refused_before_any_call(moto, target):
    bad = play(moto, "out", target["id"], "")
    assert bad.returncode != 0
    assert "lb_target_target_group_arn" in bad.stdout
    assert registered(target) == [target["id"]]
