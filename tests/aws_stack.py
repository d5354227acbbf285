"""The slice of the control plane the image and immutable-release tests need
(network, security groups, load balancers, instance profiles, launch
templates, Auto Scaling groups) in one environment of the test's moto.
Provisioned once per moto session by the kit's own playbook (site.yml
limited to those layers by tags); the database layer is replaced by its
secret alone (made with boto3), which is all the launch templates read.
Also what a bake test needs beside it: the local images a bake would make,
and AMI records made with boto3."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from conftest import ROOT, ansible_env

REGION = "us-west-2"
ENV = "dev"  # with the local inventory's production profile: 2/2/4 per tier
P = f"threetier-{ENV}"
EXTRA = ("-e", f"threetier_environment={ENV}", "-e", f"aws_region={REGION}")
TAGS = ",".join(
    [
        "aws_preflight",
        "aws_state",
        "aws_network",
        "aws_security_groups",
        "aws_load_balancers",
        "aws_instance_profiles",
        "aws_launch_templates",
        "aws_autoscaling",
    ]
)
PLACEHOLDER = "amzn-ami-hvm-2017.09.1.20171103-x86_64-gp2"
BASE_IMAGE = "localhost/threetier-base:bookworm"


def credential_env(creds: dict) -> dict[str, str]:
    """An assumed role's credentials (sts AssumeRole) as environment variables."""
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


def assumed_session(creds: dict, region: str) -> boto3.Session:
    """A boto3 session with an assumed role's credentials (another account)."""
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def ensure_stack(kit, moto) -> None:
    asg = moto.client("autoscaling", REGION)
    names = [f"{P}-web", f"{P}-app"]
    if len(asg.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]) == 2:
        return
    sm = moto.client("secretsmanager", REGION)
    if not sm.list_secrets(Filters=[{"Key": "name", "Values": [f"threetier/{ENV}/db-master"]}])[
        "SecretList"
    ]:
        sm.create_secret(Name=f"threetier/{ENV}/db-master", SecretString='{"password": "t"}')
    run = kit.playbook("site.yml", *EXTRA, "--tags", TAGS)
    assert run.rc == 0, run.output[-5000:]


def image_repos(name: str) -> dict[str, str]:
    """tier -> the repository of the local image a bake makes, under a test's
    own name (local_fleet_image_repos)."""
    return {k: f"localhost/tt-{name}-{k}" for k in ("web", "app", "lb", "db")}


def ca_dir(repos: dict[str, str]) -> Path:
    """The local CA of a test's bakes (local_fleet_ca_dir), under the test's
    own name: never the checkout's .local/ca, which make up may be making at
    the same moment."""
    return ROOT / ".local" / "test" / f"{repos['app'].rsplit('/', 1)[-1]}-ca"


def bake_args(release: str, repos: dict[str, str]) -> tuple[str, ...]:
    """images.yml's arguments for a bake of `release` from those repositories."""
    return (
        "-e",
        f"threetier_release={release}",
        "-e",
        json.dumps({"local_fleet_image_repos": repos, "local_fleet_ca_dir": str(ca_dir(repos))}),
    )


def labelled_image(ref: str, labels: dict[str, str]) -> None:
    """The base image as `ref`, with these labels: a commit of a container
    that never ran (no layer of its own)."""
    holder = f"tt-label-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["podman", "create", "--name", holder, BASE_IMAGE], capture_output=True, check=True
    )
    try:
        subprocess.run(
            ["podman", "commit", "--quiet", *(f"--change=LABEL {k}={v}" for k, v in labels.items()),
             holder, ref],
            capture_output=True, check=True,
        )  # fmt: skip
    finally:
        subprocess.run(["podman", "rm", "--force", holder], capture_output=True, check=False)


def tier_images(repos: dict[str, str], release: str) -> Iterator[dict[str, str]]:
    """A module fixture's body: the tier images a bake of `release` would make,
    as the base image under `repos` (local_bake.yml finds them present, so the
    test spends its time on the AMI records): tags, and the app image labelled
    with the checksum of the local CA it would trust (made here by the kit's
    local_ca role, as the bake makes it). Skips the module without the base
    image. Yields tier -> image of web and app; removes them after."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode != 0:
        pytest.skip(f"{BASE_IMAGE} missing (scripts/build-base-image.sh)")
    ca = ca_dir(repos)
    made_ca = subprocess.run(
        ["ansible", "localhost", "-m", "ansible.builtin.include_role", "-a", "name=local_ca",
         "-e", f"local_ca_dir={ca}"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made_ca.returncode == 0, made_ca.stdout[-3000:] + made_ca.stderr[-3000:]
    checksum = hashlib.sha256((ca / "ca.crt").read_bytes()).hexdigest()
    tags = {"web": release, "app": release, "lb": "bookworm", "db": "bookworm"}
    made = [f"{repos[k]}:{t}" for k, t in tags.items() if k != "app"]
    for ref in made:
        subprocess.run(["podman", "tag", BASE_IMAGE, ref], check=True)
    app = f"{repos['app']}:{release}"
    labelled_image(app, {"threetier.db-ca-sha256": checksum})
    yield {k: f"{repos[k]}:{tags[k]}" for k in ("web", "app")}
    subprocess.run(["podman", "untag", BASE_IMAGE, *made], check=False)
    subprocess.run(["podman", "rmi", "--force", app], capture_output=True, check=False)


def placeholder_ami(moto, region: str = REGION) -> str:
    ec2 = moto.client("ec2", region)
    return ec2.describe_images(Filters=[{"Name": "name", "Values": [PLACEHOLDER]}])["Images"][0][
        "ImageId"
    ]


def make_ami(moto, name: str, region: str = REGION) -> str:
    """An AMI record (moto images cannot hold anything): imaged from a
    stopped placeholder instance, as the bake does under the emulator."""
    ec2 = moto.client("ec2", region)
    iid = ec2.run_instances(ImageId=placeholder_ami(moto, region), MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=iid, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[iid])
    return ami


def launch_template(moto, tier: str) -> dict:
    ec2 = moto.client("ec2", REGION)
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"{P}-{tier}"])["LaunchTemplates"][0]
    versions = {
        v["VersionNumber"]: v
        for v in ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
            "LaunchTemplateVersions"
        ]
    }
    return {
        "default": lt["DefaultVersionNumber"],
        "latest": lt["LatestVersionNumber"],
        "versions": versions,
    }


def group(moto, tier: str) -> dict:
    asg = moto.client("autoscaling", REGION)
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-{tier}"])[
        "AutoScalingGroups"
    ][0]


def images_of(moto, instance_ids) -> dict[str, str]:
    if not instance_ids:
        return {}
    ec2 = moto.client("ec2", REGION)
    out = {}
    for r in ec2.describe_instances(InstanceIds=list(instance_ids))["Reservations"]:
        for i in r["Instances"]:
            out[i["InstanceId"]] = i["ImageId"]
    return out


class CapacityWatch:
    """Polls the group in a thread while a rollout runs: every observation's
    InService count and desired capacity (bounded: stops at stop() or after
    `limit` seconds)."""

    def __init__(self, moto, tier: str, interval: float = 0.2, limit: float = 300):
        self.client = moto.client("autoscaling", REGION)
        self.name = f"{P}-{tier}"
        self.interval, self.limit = interval, limit
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            g = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])[
                "AutoScalingGroups"
            ][0]
            in_service = sum(1 for i in g["Instances"] if i["LifecycleState"] == "InService")
            self.seen.append((in_service, g["DesiredCapacity"]))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
