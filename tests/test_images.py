"""Bake records against a real moto server (playbooks/images.yml under the
emulator switch): one AMI per tier and release with its provenance tags, a
second bake reuses it, pruning keeps the newest N per tier and never an AMI a
launch-template version in use points at (deregistered with its snapshots).

The podman bake itself is local_bake.yml, imported unchanged by images.yml
and exercised by the local fleet's tests (make up); here the tier images it
would produce are tags of the base image under this test's own repository
names, so local_bake.yml finds them present and the test spends its time on
what is new: the AMI records, their reuse and the pruning."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime

import pytest
from aws_stack import EXTRA, REGION, P, ensure_stack, make_ami
from conftest import ROOT

RELEASE = "9.9.1"
HEAD_BEFORE = subprocess.run(
    ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
).stdout.strip()
BASE = "localhost/threetier-base:bookworm"
REPOS = {k: f"localhost/tt-imgtest-{k}" for k in ("web", "app", "lb", "db")}
TAGS = {"web": RELEASE, "app": RELEASE, "lb": "bookworm", "db": "bookworm"}
ARGS = (
    *EXTRA,
    "-e",
    f"threetier_release={RELEASE}",
    "-e",
    json.dumps({"local_fleet_image_repos": REPOS}),
)


@pytest.fixture(scope="module")
def local_images():
    if subprocess.run(["podman", "image", "exists", BASE], check=False).returncode != 0:
        pytest.skip(f"{BASE} missing (scripts/build-base-image.sh)")
    made = [f"{REPOS[k]}:{t}" for k, t in TAGS.items()]
    for ref in made:
        subprocess.run(["podman", "tag", BASE, ref], check=True)
    yield {k: f"{REPOS[k]}:{TAGS[k]}" for k in ("web", "app")}
    subprocess.run(["podman", "untag", BASE, *made], check=False)


@pytest.fixture(scope="module")
def stack(kit, moto):
    ensure_stack(kit, moto)


def amis(moto, tier):
    ec2 = moto.client("ec2", REGION)
    out = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "tag:Project", "Values": ["threetier"]},
            {"Name": "tag:Tier", "Values": [tier]},
        ],
    )["Images"]
    return {i["ImageId"]: i for i in out}


def tags(image):
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def first_bake(kit, moto, stack, local_images):
    run = kit.playbook("images.yml", *ARGS)
    assert run.rc == 0, run.output[-5000:]
    print(f"bake record, web+app, release {RELEASE}: {run.seconds:.1f} s")
    return run


def test_bake_records_one_ami_per_tier_with_tags(moto, first_bake, local_images):
    ec2 = moto.client("ec2", REGION)
    for tier in ("web", "app"):
        mine = [i for i in amis(moto, tier).values() if tags(i).get("Release") == RELEASE]
        assert len(mine) == 1, mine
        t = tags(mine[0])
        assert t["Tier"] == tier
        assert re.fullmatch(r"ami-[0-9a-f]+", t["BaseAmi"])
        # the commit checked out when the bake ran (others may commit meanwhile)
        commit = t["GitCommit"]
        assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
        assert git("merge-base", "--is-ancestor", HEAD_BEFORE, commit).returncode == 0
        assert git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0
        built = datetime.strptime(t["BuildTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - built).total_seconds()) < 900
        local_id = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Id}}", local_images[tier]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert t["LocalImage"] == f"{local_images[tier]}@{local_id}"
        assert mine[0]["State"] == "available"
    # the placeholder instances the records were imaged from are gone
    left = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Purpose", "Values": ["image-builder"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )["Reservations"]
    assert left == []


def test_second_bake_reuses_the_amis(kit, moto, first_bake):
    before = {t: set(amis(moto, t)) for t in ("web", "app")}
    run = kit.playbook("images.yml", *ARGS)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap()["changed"] == 0, run.output[-3000:]
    assert "reusing" in run.output
    assert {t: set(amis(moto, t)) for t in ("web", "app")} == before


def test_prune_keeps_newest_and_never_one_in_use(kit, moto, first_bake):
    ec2 = moto.client("ec2", REGION)
    # four more web AMIs (records like the bake's), oldest first
    extra = []
    for n in range(4):
        ami = make_ami(moto, f"threetier-web-t{n:03d}")
        ec2.create_tags(
            Resources=[ami],
            Tags=[
                {"Key": "Project", "Value": "threetier"},
                {"Key": "Tier", "Value": "web"},
                {"Key": "Release", "Value": f"9.9.{10 + n}"},
            ],
        )
        extra.append(ami)
        time.sleep(1.1)  # distinct creation times
    in_use = extra[0]
    # the web template's default version points at the oldest extra AMI
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"{P}-web"])["LaunchTemplates"][0]
    previous_default = lt["DefaultVersionNumber"]
    data = ec2.describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"], Versions=[str(previous_default)]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    made = ec2.create_launch_template_version(
        LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData={**data, "ImageId": in_use}
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateId=lt["LaunchTemplateId"], DefaultVersion=str(made))
    # a newer version exists too: the default is still in use
    ec2.create_launch_template_version(
        LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData={**data, "ImageId": extra[3]}
    )
    try:
        everything = amis(moto, "web")
        ordered = sorted(everything.values(), key=lambda i: (i["CreationDate"], i["Name"]))
        newest2 = {i["ImageId"] for i in ordered[-2:]}
        snapshots = {
            i["ImageId"]: [b["Ebs"]["SnapshotId"] for b in i["BlockDeviceMappings"] if "Ebs" in b]
            for i in ordered
        }
        run = kit.playbook("images.yml", *ARGS, "-e", "images_keep=2")
        assert run.rc == 0, run.output[-4000:]
        kept = set(amis(moto, "web"))
        assert kept == newest2 | {in_use}, (kept, newest2, in_use)
        gone = set(everything) - kept
        assert gone, "something was pruned"
        gone_snaps = [s for g in gone for s in snapshots[g]]
        left = [
            s["SnapshotId"]
            for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
            if s["SnapshotId"] in gone_snaps
        ]
        assert left == [], "snapshots deregistered with their AMIs"
        # app: one AMI, keep 2: untouched
        assert len(amis(moto, "app")) == 1
    finally:
        ec2.modify_launch_template(
            LaunchTemplateId=lt["LaunchTemplateId"], DefaultVersion=str(previous_default)
        )


def test_bad_keep_refused_before_any_change(kit, moto, first_bake):
    before = {t: set(amis(moto, t)) for t in ("web", "app")}
    run = kit.playbook("images.yml", *ARGS, "-e", "threetier_release=9.9.99", "-e", "images_keep=0")
    assert run.rc != 0
    assert "keep at least 1 AMI per tier" in run.output
    assert "Record the new images" not in run.output
    assert {t: set(amis(moto, t)) for t in ("web", "app")} == before


# The AWS path's first check, run against the test's moto (every call of the
# run goes there: the kit's environment points the AWS SDK at it). No AMI id
# is given: the first bake runs before any AMI of the operator's exists.
AWS_PATH = (
    *EXTRA,
    "-e",
    "aws_emulator=false",
    "-e",
    "threetier_release=9.9.98",
    "-e",
    "aws_image_bake_operator_cidr=203.0.113.7/32",
)


def builders_and_temporaries(moto) -> dict:
    ec2 = moto.client("ec2", REGION)
    return {
        "instances": [
            i["InstanceId"]
            for r in ec2.describe_instances(
                Filters=[{"Name": "tag:Purpose", "Values": ["image-builder"]}]
            )["Reservations"]
            for i in r["Instances"]
        ],
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
        "amis": {t: set(amis(moto, t)) for t in ("web", "app")},
    }


def test_aws_bake_refused_without_the_agent_package(kit, moto, stack):
    before = builders_and_temporaries(moto)
    run = kit.playbook("images.yml", *AWS_PATH)
    assert run.rc != 0
    assert "images: on AWS the images get the CloudWatch agent" in run.output, run.output[-3000:]
    assert "cloudwatch_agent_package_checksum (sha256:<64 hex>" in run.output
    assert "checksum=nothing" in run.output
    assert "Build the release artifact" not in run.output
    assert not (ROOT / "dist" / "taskboard-9.9.98-py3-none-any.whl").exists()
    assert builders_and_temporaries(moto) == before


def test_aws_bake_refuses_a_bad_checksum_and_accepts_a_good_one(kit, moto, stack):
    url = "https://example.org/amazon-cloudwatch-agent.deb"
    before = builders_and_temporaries(moto)
    bad = kit.playbook(
        "images.yml",
        *AWS_PATH,
        "-e",
        json.dumps(
            {"cloudwatch_agent_package_url": url, "cloudwatch_agent_package_checksum": "abc"}
        ),
    )
    assert bad.rc != 0
    assert "got url=https://example.org/amazon-cloudwatch-agent.deb, checksum=abc" in bad.output
    # a good package passes this check: the run stops at the next one (images_keep=0)
    good = kit.playbook(
        "images.yml",
        *AWS_PATH,
        "-e",
        json.dumps(
            {
                "cloudwatch_agent_package_url": url,
                "cloudwatch_agent_package_checksum": "sha256:" + "a" * 64,
            }
        ),
        "-e",
        "images_keep=0",
    )
    assert good.rc != 0
    assert "images: on AWS the images get the CloudWatch agent" not in good.output
    assert "keep at least 1 AMI per tier" in good.output, good.output[-3000:]
    assert builders_and_temporaries(moto) == before
