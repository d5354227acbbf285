"""One bake promoted across accounts, against a real moto server acting as two
accounts: dev's (moto's default account, the test's usual credentials), which
bakes, and staging's, another account whose credentials come from an STS
AssumeRole of a role in it (how moto serves several accounts; the emulator's
scripts/localaws/emulator_ami_sharing.py makes AMIs shared and copied between
them behave as AWS documents).

- the bake (playbooks/images.yml, aws_image_bake_share_accounts) shares each
  AMI (launch permission) and its snapshots (createVolumePermission) with the
  staging account, exactly once: a second bake changes nothing;
- in the staging account the shared AMIs carry none of the bake's tags and are
  not its own: release_immutable.yml's lookup does not find them;
- playbooks/ami_promote.yml refuses, before copying anything, a release that
  was not shared, an AMI given by id that is not the tier's, and an AMI whose
  snapshots are not shared, naming what it looked for;
- it copies the AMIs into the staging account, tagged (Project, Tier,
  Release; the snapshots too) in the copy request itself; a wait that runs out
  fails naming the pending copy, and the next run waits for that copy instead
  of copying again; a second promotion changes nothing;
- release_immutable.yml's lookup in the staging account then finds the copies
  (a check-mode run, which gets past the lookup and stops at the launch
  template: the staging account has no fleet here).

Its own region (us-east-2), so that the bake's pruning never meets the AMIs of
test_images and test_immutable (us-west-2). The local images the bake would
make are tags of the base image under this test's own names, as in
test_images."""

from __future__ import annotations

import json

import pytest
from aws_stack import (
    assumed_session,
    bake_args,
    credential_env,
    image_repos,
    make_ami,
    tier_images,
)
from conftest import Kit, assert_refused

REGION = "us-east-2"
RELEASE = "9.9.5"
DEV = "123456789012"  # moto's default account: the test's usual credentials
STAGING = "210987654321"
REPOS = image_repos("promotetest")
DEV_ARGS = (
    "-e",
    "threetier_environment=dev",
    "-e",
    f"aws_region={REGION}",
    *bake_args(RELEASE, REPOS),
    "-e",
    f"aws_image_bake_share_accounts={STAGING}",
)
STAGING_ENV = ("-e", "threetier_environment=staging", "-e", f"aws_region={REGION}")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def local_images():
    yield from tier_images(REPOS, RELEASE)


@pytest.fixture(scope="module")
def staging(moto):
    """The staging account's credentials: an assumed role in that account."""
    creds = moto.client("sts", REGION).assume_role(
        RoleArn=f"arn:aws:iam::{STAGING}:role/threetier-staging-operator",
        RoleSessionName="threetier-staging",
    )["Credentials"]
    keys = credential_env(creds)
    session = assumed_session(creds, REGION)
    ec2 = session.client("ec2", endpoint_url=moto.url)
    who = session.client("sts", endpoint_url=moto.url).get_caller_identity()["Account"]
    assert who == STAGING
    kit = Kit(moto)
    kit.env.update(keys)
    # the local inventory's play environment names moto's dummy keys: the
    # staging account's instead
    emulator_env = {"AWS_ENDPOINT_URL": moto.url, "AWS_URL": moto.url, **keys}
    args = (*STAGING_ENV, "-e", json.dumps({"aws_emulator_environment": emulator_env}))
    return kit, ec2, args


def dev_ec2(moto):
    return moto.client("ec2", REGION)


def release_amis(ec2, owner="self") -> dict[str, dict]:
    """tier -> the AMI of RELEASE an account owns (by its tags)."""
    out = {}
    for image in ec2.describe_images(
        Owners=[owner],
        Filters=[
            {"Name": "tag:Project", "Values": ["threetier"]},
            {"Name": "tag:Release", "Values": [RELEASE]},
        ],
    )["Images"]:
        out[tags(image)["Tier"]] = image
    return out


def tags(resource) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def snapshot_ids(image) -> list[str]:
    return [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if "Ebs" in b]


def staging_images(ec2) -> list[dict]:
    return ec2.describe_images(Owners=["self"])["Images"]


def assert_refused_copying_nothing(staging, run, *messages):
    """The run failed, saying each of `messages`, and the staging account
    owns no AMI: nothing was copied (every copy is checked first)."""
    assert_refused(run, *messages)
    assert staging_images(staging[1]) == [], "nothing is copied: every copy is checked first"


@pytest.fixture(scope="module")
def baked(kit, moto, local_images):
    run = kit.playbook("images.yml", *DEV_ARGS)
    assert run.rc == 0, run.output[-5000:]
    TIMINGS["bake, web + app recorded and shared"] = run.seconds
    amis = release_amis(dev_ec2(moto))
    assert set(amis) == {"web", "app"}, amis
    return amis


def promote(staging, *extra):
    kit, _, args = staging
    return kit.playbook(
        "ami_promote.yml",
        *args,
        "-e",
        f"release_version={RELEASE}",
        "-e",
        "aws_ami_promote_poll_interval=1",
        *extra,
    )


def release_lookup(staging, tier):
    """release_immutable.yml in the staging account, in check mode: it finds
    the tier's AMI by its tags (or says it has none), then stops at the
    launch template (no fleet in that account here) without changing a thing."""
    kit, _, args = staging
    return kit.playbook(
        "release_immutable.yml",
        *args,
        "-e",
        f"release_tier={tier}",
        "-e",
        f"release_version={RELEASE}",
        "--check",
    )


# --- the emulator's accounts (boto3 only) ------------------------------------


def test_emulator_shares_amis_between_accounts_as_aws_does(moto, staging):
    """A shared AMI is visible to the account it is shared with, untagged and
    not its own; copying it needs its snapshot shared too."""
    a, (_, b, _) = dev_ec2(moto), staging
    ami = make_ami(moto, "tt-emulator-share-check", REGION)
    a.create_tags(Resources=[ami], Tags=[{"Key": "Project", "Value": "tt-emulator-check"}])
    snap = snapshot_ids(a.describe_images(ImageIds=[ami])["Images"][0])[0]
    try:
        assert b.describe_images(Owners=[DEV])["Images"] == []
        with pytest.raises(b.exceptions.ClientError, match=r"InvalidAMIID\.NotFound"):
            b.describe_images(ImageIds=[ami])
        a.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": STAGING}]})
        (seen,) = b.describe_images(ImageIds=[ami])["Images"]
        assert seen["OwnerId"] == DEV
        assert not seen.get("Tags"), "another account's tags are not shown"
        assert [i["ImageId"] for i in b.describe_images(Owners=[DEV])["Images"]] == [ami]
        assert b.describe_images(Owners=["self"])["Images"] == []
        assert (
            b.describe_images(Filters=[{"Name": "tag:Project", "Values": ["tt-emulator-check"]}])[
                "Images"
            ]
            == []
        )
        # its snapshot is not shared: left out by id, and the copy refused
        assert b.describe_snapshots(SnapshotIds=[snap])["Snapshots"] == []
        with pytest.raises(b.exceptions.ClientError, match="storage of this ami"):
            b.copy_image(SourceImageId=ami, SourceRegion=REGION, Name="tt-emulator-copy")
        assert b.describe_images(Owners=["self"])["Images"] == []
    finally:
        a.deregister_image(ImageId=ami)
        a.delete_snapshot(SnapshotId=snap)


# --- the bake shares ---------------------------------------------------------


def test_bake_shares_each_ami_and_its_snapshots(moto, staging, baked):
    a, (_, b, _) = dev_ec2(moto), staging
    for tier, image in baked.items():
        perms = a.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
        assert perms["LaunchPermissions"] == [{"UserId": STAGING}], tier
        for snap in snapshot_ids(image):
            got = a.describe_snapshot_attribute(
                SnapshotId=snap, Attribute="createVolumePermission"
            )["CreateVolumePermissions"]
            assert got == [{"UserId": STAGING}], (tier, snap)
            # tagged as the AMI, as the bake's snapshots are on AWS
            (s,) = a.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
            assert tags(s)["Project"] == "threetier"
            assert tags(s)["Tier"] == tier
    # in the staging account: shared, not its own, no tags
    shared = {i["ImageId"]: i for i in b.describe_images(Owners=[DEV])["Images"]}
    assert {i["ImageId"] for i in baked.values()} <= set(shared)
    assert all(not shared[i["ImageId"]].get("Tags") for i in baked.values())
    assert release_amis(b) == {}


def test_second_bake_changes_nothing(kit, moto, baked):
    run = kit.playbook("images.yml", *DEV_ARGS)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap()["changed"] == 0, run.output[-3000:]
    TIMINGS["bake again (reused, shares unchanged)"] = run.seconds
    assert release_amis(dev_ec2(moto)).keys() == baked.keys()


def test_without_promotion_the_release_finds_no_ami(staging, baked):
    assert_refused_copying_nothing(
        staging,
        release_lookup(staging, "web"),
        f"this account has no AMI tagged Tier=web Release={RELEASE}",
        "playbooks/ami_promote.yml",
    )


# --- the promotion -----------------------------------------------------------


def test_promotion_without_a_shared_ami_is_refused_naming_what_it_looked_for(staging, baked):
    """web by the baking account and the bake's name (no such release
    shared), app by an AMI id that is web's: nothing is copied."""
    web_ami = baked["web"]["ImageId"]
    run = promote(
        staging,
        "-e",
        "release_version=9.9.99",
        "-e",
        json.dumps(
            {
                "aws_ami_promote_source_account": DEV,
                "aws_ami_promote_source_ami_ids": {"app": web_ami},
            }
        ),
    )
    web = (
        f"web: no available AMI named threetier-web-9.9.99-<UTC time stamp> owned by {DEV} "
        f"in {REGION} is shared with this account, which has no AMI tagged Project=threetier "
        "Tier=web Release=9.9.99 either"
    )
    app = f"app: no available AMI {web_ami} named threetier-app-9.9.99-<UTC time stamp>"
    assert_refused_copying_nothing(staging, run, web, app, "nothing was copied")


def test_promotion_refused_when_the_snapshots_are_not_shared(moto, staging, baked):
    a = dev_ec2(moto)
    (snap,) = snapshot_ids(baked["app"])
    a.reset_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    try:
        # web is not copied either: every copy is checked first
        assert_refused_copying_nothing(
            staging,
            promote(staging, "-e", f"aws_ami_promote_source_account={DEV}"),
            f"AMI {baked['app']['ImageId']} ({baked['app']['Name']}) of {DEV} is shared",
            f"but not its snapshot(s) {snap}",
        )
    finally:
        a.modify_snapshot_attribute(
            SnapshotId=snap,
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=[STAGING],
        )


@pytest.fixture(scope="module")
def promoted(staging, baked):
    """Web first, by AMI id, with a wait shorter than the copy (the emulator's
    copy is pending conftest's AMI_COPY_SECONDS): the run fails naming the pending copy. Then both
    tiers by the baking account: web's pending copy is waited for, app is
    copied and waited for."""
    _, b, _ = staging
    first = promote(
        staging,
        "-e",
        json.dumps(
            {
                "aws_ami_promote_tiers": ["web"],
                "aws_ami_promote_source_ami_ids": {"web": baked["web"]["ImageId"]},
                "aws_ami_promote_timeout": 1,
            }
        ),
    )
    pending = staging_images(b)
    second = promote(staging, "-e", f"aws_ami_promote_source_account={DEV}")
    TIMINGS["promotion, app copied + web's pending copy waited for"] = second.seconds
    return first, pending, second


def test_a_wait_that_runs_out_fails_naming_the_pending_copy(promoted):
    first, pending, _ = promoted
    assert first.rc != 0
    (copy,) = pending
    assert copy["State"] == "pending"
    assert f"web {copy['ImageId']} is pending after 1 s" in first.output, first.output[-3000:]
    assert "run the promotion again to wait for it (it is not copied twice)" in first.output
    # tagged while still pending: tags come with the copy request
    assert tags(copy)["Release"] == RELEASE


def test_promotion_copies_each_ami_tagged_into_the_account(staging, baked, promoted):
    _, b, _ = staging
    _, pending, second = promoted
    assert second.rc == 0, second.output[-5000:]
    own = release_amis(b)
    assert set(own) == {"web", "app"}
    assert own["web"]["ImageId"] == pending[0]["ImageId"], "web's pending copy, not a new one"
    assert len(staging_images(b)) == 2
    for tier, image in own.items():
        t = tags(image)
        assert image["State"] == "available"
        assert image["OwnerId"] == STAGING
        assert image["Name"] == baked[tier]["Name"]
        assert image["Description"] == baked[tier]["Description"]
        assert t["Project"] == "threetier"
        assert t["Tier"] == tier
        assert t["Release"] == RELEASE
        assert t["SourceAmi"] == baked[tier]["ImageId"]
        assert t["SourceAccount"] == DEV
        for snap in snapshot_ids(image):
            (s,) = b.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
            assert s["OwnerId"] == STAGING
            assert tags(s)["Project"] == "threetier", "the copy's snapshots are tagged too"
    assert f"release {RELEASE}: " in second.output


def test_second_promotion_changes_nothing(staging, promoted):
    _, b, _ = staging
    before = sorted(i["ImageId"] for i in staging_images(b))
    run = promote(staging, "-e", f"aws_ami_promote_source_account={DEV}")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap()["changed"] == 0, run.output[-3000:]
    TIMINGS["promotion again (nothing to do)"] = run.seconds
    assert sorted(i["ImageId"] for i in staging_images(b)) == before


def test_release_immutable_finds_the_promoted_amis(staging, promoted):
    _, b, _ = staging
    own = release_amis(b)
    run = release_lookup(staging, "app")
    # past the lookup: it stops at the launch template the staging account lacks here
    assert "this account has no AMI tagged" not in run.output, run.output[-3000:]
    assert "launch template threetier-staging-app does not exist" in run.output, run.output[-3000:]
    assert own["app"]["State"] == "available"


def test_zz_print_timings():
    for what, seconds in TIMINGS.items():
        print(f"{what}: {seconds:.1f} s")
