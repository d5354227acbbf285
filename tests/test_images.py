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

import base64
import json
import re
import subprocess
import time
from datetime import UTC, datetime

import pytest
from aws_stack import (
    EXTRA,
    PLACEHOLDER,
    REGION,
    P,
    assumed_session,
    bake_args,
    ensure_stack,
    image_repos,
    make_ami,
    tier_images,
)
from conftest import ROOT, Kit
from iam_policies import recorded_requests
from motoserver import moto_server

RELEASE = "9.9.1"
HEAD_BEFORE = subprocess.run(
    ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
).stdout.strip()
REPOS = image_repos("imgtest")
ARGS = (*EXTRA, *bake_args(RELEASE, REPOS))


@pytest.fixture(scope="module")
def local_images():
    yield from tier_images(REPOS, RELEASE)


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
    assert live_builders(ec2) == []


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
    # the builders are reached over SSM (aws_image_bake_connection): the
    # pre-flight wants AWS's session-manager-plugin; /bin/true stands in for
    # it (no run here opens a session: moto has none)
    "-e",
    "ansible_aws_ssm_plugin=/bin/true",
)
# The packages the AMIs get (inventories/<env>/group_vars/all/*_agent.yml).
CLOUDWATCH_AGENT = {
    "cloudwatch_agent_package_url": "https://example.org/amazon-cloudwatch-agent.deb",
    "cloudwatch_agent_package_checksum": "sha256:" + "a" * 64,
}
SSM_AGENT = {
    "ssm_agent_package_url": "https://s3.us-west-2.amazonaws.com/amazon-ssm-us-west-2/latest/debian_amd64/amazon-ssm-agent.deb",
    "ssm_agent_package_checksum": "sha256:" + "b" * 64,
}


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
                **SSM_AGENT,
            }
        ),
        "-e",
        "images_keep=0",
    )
    assert good.rc != 0
    assert "images: on AWS the images get the CloudWatch agent" not in good.output
    assert "keep at least 1 AMI per tier" in good.output, good.output[-3000:]
    assert builders_and_temporaries(moto) == before


def test_aws_bake_refused_without_the_ssm_agent_package(kit, moto, stack):
    """Session Manager reaches the instances only through the SSM agent,
    which Debian's AMI lacks: without its package (URL and sha256) the bake
    stops before anything changes, naming the file to set them in."""
    before = builders_and_temporaries(moto)
    run = kit.playbook("images.yml", *AWS_PATH, "-e", json.dumps(CLOUDWATCH_AGENT))
    assert run.rc != 0
    assert "images: on AWS the images get the SSM agent" in run.output, run.output[-3000:]
    assert "inventories/local/group_vars/all/ssm_agent.yml;" in run.output
    assert "ssm_agent_package_checksum (sha256:<64 hex>" in run.output
    assert "url=nothing" in run.output
    assert "checksum=nothing" in run.output
    assert "Build the release artifact" not in run.output
    assert builders_and_temporaries(moto) == before
    bad = kit.playbook(
        "images.yml",
        *AWS_PATH,
        "-e",
        json.dumps(
            {
                **CLOUDWATCH_AGENT,
                "ssm_agent_package_url": "http://example.org/amazon-ssm-agent.deb",
                "ssm_agent_package_checksum": "sha256:abc",
            }
        ),
    )
    assert bad.rc != 0
    assert "got url=http://example.org/amazon-ssm-agent.deb, checksum=sha256:abc" in bad.output, (
        bad.output[-3000:]
    )
    assert builders_and_temporaries(moto) == before


def test_aws_bake_refused_without_the_database_ca_bundle(kit, moto, stack):
    """taskboard verifies RDS's certificate (verify-full) against the CA
    bundle the app AMI carries: without it (an https URL and its sha256, or
    a file) the bake stops before anything changes, naming the file to set
    it in. The local inventory's own (its CA's file) passes the other tests."""
    before = builders_and_temporaries(moto)
    url = "https://truststore.pki.rds.amazonaws.com/us-west-2/us-west-2-bundle.pem"
    run = kit.playbook(
        "images.yml",
        *AWS_PATH,
        "-e",
        json.dumps(
            {
                **CLOUDWATCH_AGENT,
                **SSM_AGENT,
                "flask_app_db_ca_bundle_src": "",
                "flask_app_db_ca_bundle_url": url,
            }
        ),
    )
    assert run.rc != 0
    assert "images: on AWS taskboard verifies the database's certificate" in run.output, run.output[
        -3000:
    ]
    assert "inventories/local/group_vars/all/database_tls.yml;" in run.output
    assert f"url={url}, checksum=nothing, src=nothing" in run.output
    assert "Build the release artifact" not in run.output
    assert builders_and_temporaries(moto) == before


def test_aws_bake_over_ssm_needs_the_session_manager_plugin(kit, moto, stack):
    """The builders are reached over SSM by default: a controller without
    AWS's session-manager-plugin is told so before anything changes."""
    before = builders_and_temporaries(moto)
    run = kit.playbook(
        "images.yml",
        *AWS_PATH,
        "-e",
        "ansible_aws_ssm_plugin=/nonexistent/session-manager-plugin",
        "-e",
        json.dumps({**CLOUDWATCH_AGENT, **SSM_AGENT}),
    )
    assert run.rc != 0
    assert "session-manager-plugin: the image builders connect with the SSM connection" in (
        run.output
    ), run.output[-3000:]
    assert "/nonexistent/session-manager-plugin, which does not exist" in run.output
    assert "session-manager-working-with-install-plugin.html" in run.output
    assert builders_and_temporaries(moto) == before


BUILDER_RELEASE = "9.9.97"


def _builder_run(kit, moto, *extra):
    ec2 = moto.client("ec2", REGION)
    base = ec2.describe_images(Filters=[{"Name": "name", "Values": [PLACEHOLDER]}])["Images"][0]
    return kit.playbook(
        "../tests/playbooks/image_builder.yml",
        *EXTRA,
        "-e",
        "aws_emulator=false",
        "-e",
        f"threetier_release={BUILDER_RELEASE}",
        "-e",
        "ansible_aws_ssm_plugin=/bin/true",
        "-e",
        "ansible_aws_ssm_bucket_name=threetier-dev-ssm-123456789012",
        "-e",
        json.dumps(
            {
                **SSM_AGENT,
                "aws_image_bake_base_ami_id": base["ImageId"],
                "aws_image_bake_base_ami_owner": base["OwnerId"],
            }
        ),
        *extra,
    )


def test_aws_builders_private_reached_over_ssm(kit, moto, stack):
    """images.yml's AWS builders (builder.yml, against moto): in a private
    subnet, no public IP, a temporary group with no inbound rule at all (no
    SSH from anywhere), the instance profile the operator names instead of
    the builders' own (here the web tier's, aws_image_bake_builder_instance_profile), user data
    that checks the SSM agent's sha256 before installing it, and each builder
    added to the inventory with the SSM connection and the transfer bucket.
    The temporaries go afterwards (cleanup.yml, as image.yml runs it)."""
    ec2 = moto.client("ec2", REGION)
    web_profile = ("-e", f"aws_image_bake_builder_instance_profile={P}-web")
    try:
        run = _builder_run(kit, moto, *web_profile)
        assert run.rc == 0, run.output[-5000:]
        found = ec2.describe_instances(
            Filters=[
                {"Name": "tag:Purpose", "Values": ["image-builder"]},
                {"Name": "tag:Project", "Values": ["threetier"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        builders = {
            {t["Key"]: t["Value"] for t in i["Tags"]}["Tier"]: i
            for r in found
            for i in r["Instances"]
        }
        assert set(builders) == {"web", "app"}, builders
        (private,) = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{P}-app-a"]}])[
            "Subnets"
        ]
        (group,) = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"{P}-image-builder"]}]
        )["SecurityGroups"]
        assert group["IpPermissions"] == [], "no inbound rule: no SSH from the operator or anyone"
        for tier, b in builders.items():
            assert b["SubnetId"] == private["SubnetId"], tier
            assert not b.get("PublicIpAddress"), (tier, b.get("PublicIpAddress"))
            assert b["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{P}-web"), b
            assert [g["GroupId"] for g in b["SecurityGroups"]] == [group["GroupId"]]
            assert not b.get("KeyName"), "no key pair over SSM"
            assert b["MetadataOptions"]["HttpTokens"] == "required"
            data = ec2.describe_instance_attribute(InstanceId=b["InstanceId"], Attribute="userData")
            script = base64.b64decode(data["UserData"]["Value"]).decode()
            assert SSM_AGENT["ssm_agent_package_url"] in script
            check = script.index("sha256sum --check")
            assert "b" * 64 in script
            assert check < script.index('dpkg -i "$deb"'), "checked before it is installed"
            assert "systemctl enable --now amazon-ssm-agent.service" in script
            name = f"{P}-image-builder-{tier}"
            said = {
                f"reached: {name} community.aws.aws_ssm {b['InstanceId']}",
                f"bucket: {name} threetier-dev-ssm-123456789012",
                f"groups: {name} aws_ec2,image_builder,image_builder_{tier}",
            }
            seen = {x.strip("'\"") for x in re.findall(r"- (.+)", run.output)}
            assert said <= seen, run.output[-3000:]
    finally:
        gone = _builder_run(kit, moto, "-e", "image_builder_cleanup=true")
        assert gone.rc == 0, gone.output[-3000:]
    assert live_builders(ec2) == []
    assert not ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{P}-image-builder"]}]
    )["SecurityGroups"]


def test_aws_builders_over_ssh_need_the_bastion(kit, moto, stack):
    """The SSH fallback goes through the bastion: without one, the bake
    stops before any builder or temporary is made."""
    before = builders_and_temporaries(moto)
    run = _builder_run(kit, moto, "-e", "aws_image_bake_connection=ssh")
    assert run.rc != 0
    assert f"over SSH the builders are reached through the bastion {P}-bastion" in run.output, (
        run.output[-3000:]
    )
    assert builders_and_temporaries(moto) == before


# --- the first bake of a new account: network.yml, then images.yml ---------

FIRST_BAKE_BUCKET = f"{P}-ssm-transfer"  # the local inventory's aws_ssm_transfer_bucket_name
ACCOUNT = "123456789012"  # moto's: the operator's
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/threetier-instance-boundary"
FIRST_BAKE = (
    *AWS_PATH,
    "-e",
    "threetier_release=9.9.96",
    "-e",
    f"ansible_aws_ssm_bucket_name={FIRST_BAKE_BUCKET}",
    "-e",
    json.dumps({"images_tiers": ["web"], **CLOUDWATCH_AGENT, **SSM_AGENT}),
    # the builders' configuration needs an SSM session, which moto has not:
    # the plays on them are left out (no hosts match), so image.yml stops at
    # "not configured" and removes the temporaries
    "--limit",
    "aws_control",
)
# what provisions: none of it may be called again once it exists
PROVISIONING = re.compile(
    r"^(iam:(Create|Put|Attach|Add|Tag|Update|Untag|Detach|Delete)"
    r"|s3:(CreateBucket|Put))"
)
DEBIAN = "136693071363"  # the base AMI's owner (aws_image_bake_base_ami_owner)


def debian_ami(moto) -> str:
    """A base AMI as AWS has it: owned by Debian's account, which lets the
    operator's account launch it (the operator policy launches builders from
    that owner's AMIs only: Ec2LaunchFromBaseImage)."""
    creds = moto.client("sts", REGION).assume_role(
        RoleArn=f"arn:aws:iam::{DEBIAN}:role/debian-images", RoleSessionName="debian"
    )["Credentials"]
    session = assumed_session(creds, REGION)
    ec2 = session.client("ec2", endpoint_url=moto.url)
    placeholder = ec2.describe_images(Filters=[{"Name": "name", "Values": [PLACEHOLDER]}])[
        "Images"
    ][0]["ImageId"]
    iid = ec2.run_instances(ImageId=placeholder, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    ami = ec2.create_image(InstanceId=iid, Name="debian-12-amd64-20260101-0000")["ImageId"]
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": ACCOUNT}]})
    return ami


@pytest.fixture(scope="module")
def new_account(tmp_path_factory):
    """A moto of its own (a new account) where only network.yml ran: no
    database, no secret, no instance profile, no boundary, no bucket; and
    Debian's base AMI, shared with it as AWS has it."""
    workdir = tmp_path_factory.mktemp("moto-new-account")
    with moto_server(workdir / "moto.log", cwd=workdir) as server:
        kit = Kit(server)
        run = kit.playbook("network.yml", *EXTRA)
        assert run.rc == 0, run.output[-5000:]
        yield kit, server, ("-e", f"aws_image_bake_base_ami_id={debian_ami(server)}")


def live_builders(ec2) -> list[dict]:
    """The image builders not terminated (a bake leaves none)."""
    return ec2.describe_instances(
        Filters=[
            {"Name": "tag:Purpose", "Values": ["image-builder"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )["Reservations"]


def _builder_launches(moto) -> list[dict]:
    ec2 = moto.client("ec2", REGION)
    return [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "tag:Purpose", "Values": ["image-builder"]}]
        )["Reservations"]
        for i in r["Instances"]
    ]


def test_first_bake_refuses_a_named_profile_that_does_not_exist(new_account):
    """A profile the operator names instead of the builders' own must exist:
    the web tier's does not before site.yml, and nothing is made."""
    kit, moto, base = new_account
    run = kit.playbook(
        "images.yml",
        *FIRST_BAKE,
        *base,
        "-e",
        f"aws_image_bake_builder_instance_profile={P}-web",
    )
    assert run.rc != 0
    assert f"over SSM the builders run with the instance profile {P}-web" in run.output, run.output[
        -3000:
    ]
    assert "which does not exist: leave aws_image_bake_builder_instance_profile unset" in run.output
    iam = moto.client("iam")
    assert iam.list_roles()["Roles"] == []
    assert iam.list_policies(Scope="Local")["Policies"] == []
    assert moto.client("s3").list_buckets()["Buckets"] == []
    assert _builder_launches(moto) == []


def test_first_bake_after_network_only(new_account):
    """network.yml then images.yml is enough on AWS over SSM: the bake makes
    the SSM transfer bucket and the builders' own instance profile (SSM core
    alone, within the kit's boundary, no inline policy; no database needed)
    and launches the builder with it; a second bake makes neither again;
    teardown.yml removes both."""
    kit, moto, base = new_account
    iam, s3 = moto.client("iam"), moto.client("s3", REGION)
    assert moto.client("secretsmanager", REGION).list_secrets()["SecretList"] == []
    run = kit.playbook("images.yml", *FIRST_BAKE, *base)
    # stops where the configuration over SSM would start (see FIRST_BAKE)
    assert run.rc != 0
    assert "builder(s) failed while being configured" in run.output, run.output[-5000:]
    # the launch as the run made it (moto drops a terminated instance's profile)
    (launch,) = [
        r.params for r in recorded_requests(run.recording) if r.action == "ec2:RunInstances"
    ]
    profile_arn = iam.get_instance_profile(InstanceProfileName=f"{P}-builder")["InstanceProfile"][
        "Arn"
    ]
    assert launch.get("IamInstanceProfile.Arn") == profile_arn, launch
    (builder,) = _builder_launches(moto)
    assert builder["State"]["Name"] == "terminated", "the temporaries are gone"
    role = iam.get_role(RoleName=f"{P}-builder")["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY_ARN
    assert (
        iam.get_policy(PolicyArn=BOUNDARY_ARN)["Policy"]["PolicyName"]
        == "threetier-instance-boundary"
    )
    # SSM core only: nothing inline; the managed AmazonSSMManagedInstanceCore
    # is AWS's alone (moto has none: the emulator attaches nothing,
    # roles/aws_instance_profiles), and the boundary caps it anyway
    assert iam.list_role_policies(RoleName=f"{P}-builder")["PolicyNames"] == []
    assert iam.list_attached_role_policies(RoleName=f"{P}-builder")["AttachedPolicies"] == []
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=f"{P}-builder")["Tags"]}
    assert tags["Purpose"] == "image-builder", tags
    assert tags["Project"] == "threetier", tags
    (profile,) = iam.list_instance_profiles_for_role(RoleName=f"{P}-builder")["InstanceProfiles"]
    assert profile["InstanceProfileName"] == f"{P}-builder"
    # only the builders' profile: the tiers' are site.yml's
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == [f"{P}-builder"]
    # the transfer bucket, as site.yml makes it (it then finds it as it is)
    assert FIRST_BAKE_BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    bucket_tags = {
        t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=FIRST_BAKE_BUCKET)["TagSet"]
    }
    assert bucket_tags["Project"] == "threetier"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=FIRST_BAKE_BUCKET)["Rules"]
    assert [r["Expiration"]["Days"] for r in rules] == [1]

    again = kit.playbook("images.yml", *FIRST_BAKE, *base)
    assert "builder(s) failed while being configured" in again.output, again.output[-5000:]
    made = sorted(
        {r.action for r in recorded_requests(again.recording) if PROVISIONING.match(r.action)}
    )
    assert made == [], f"the second bake provisioned again: {made}"

    gone = kit.playbook("teardown.yml", *EXTRA)
    assert gone.rc == 0, gone.output[-5000:]
    assert iam.list_roles()["Roles"] == []
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    assert FIRST_BAKE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
