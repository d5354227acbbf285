"""An immutable release of the local fleet under load, on the AWS code path:
the release's images baked for real (playbooks/images.yml: podman builders,
recorded as AMIs in the emulator), then `make release STRATEGY=immutable`
makes each AMI its launch template's new default version and replaces the
tier by an EC2 Auto Scaling instance refresh, which the emulator runs and
the local controller follows with containers. Zero failed requests, never
fewer healthy targets than desired; every instance's ImageId is the new AMI
and the refresh reports 100 %; a re-run changes nothing; `make up` (site.yml
included) afterwards keeps what the release set. A refresh whose new
instances never get healthy is rolled back by Auto Scaling (AutoRollback):
the old instances keep serving and the template's previous default is
restored."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
import requests
from fleetlib import (
    PREFIX,
    ROOT,
    emulator,
    fleet,
    group,
    instances,
    podman,
    run,
    skip_unless_asked,
    target_health,
    wait_fleet,
)
from load import Load

pytestmark = skip_unless_asked

TIERS = ("app", "web")
RATE = float(os.environ.get("THREETIER_FLEET_RATE", "60"))


def image_id(ref: str) -> str:
    found = podman("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def image_name_of(container: str) -> str:
    return podman("container", "inspect", "--format", "{{.ImageName}}", container).stdout.strip()


def template(tier: str) -> dict:
    """The tier's launch template: default version, its AMI and the AMI's tags."""
    ec2 = emulator("ec2")
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"{PREFIX}-{tier}"])
    default = lt["LaunchTemplates"][0]["DefaultVersionNumber"]
    data = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"{PREFIX}-{tier}", Versions=[str(default)]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    image = ec2.describe_images(ImageIds=[data["ImageId"]])["Images"][0]
    return {
        "version": default,
        "ami": data["ImageId"],
        "tags": {t["Key"]: t["Value"] for t in image.get("Tags", [])},
    }


def release_tag(tier: str) -> str:
    return {t["Key"]: t["Value"] for t in group(tier)["Tags"]}.get("Release", "")


class HealthyWatch:
    """Counts each tier's healthy targets (DescribeTargetHealth: what the
    local balancers' checks see) every 0.5 s in a thread while a rollout
    runs (bounded: stop() or `limit` seconds)."""

    def __init__(self, limit: float = 1500):
        self.limit = limit
        self.seen: dict[str, list[int]] = {t: [] for t in TIERS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            for tier in TIERS:
                states = target_health(tier).values()
                self.seen[tier].append(sum(1 for s in states if s == "healthy"))
            self._stop.wait(0.5)

    def __enter__(self) -> HealthyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def recaps(output: str) -> list[tuple[str, int]]:
    """(host, changed=) of every PLAY RECAP line of every playbook run."""
    return [
        (m.group(1), int(m.group(2)))
        for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    ]


def make_release(version: str, check: bool = True):
    return run(
        ["make", "--no-print-directory", "release", "STRATEGY=immutable", f"VERSION={version}"],
        timeout=2400,
        check=check,
    )


BROKEN = "0.9.1"


def broken_app_image(base: str) -> str:
    """An app image whose service runs but never answers (its unit's
    command replaced by a sleep), committed from `base`: a release whose new
    instances boot and never become healthy."""
    ref = f"localhost/threetier-app:{BROKEN}"
    podman("rm", "--force", "--ignore", "tt-test-broken-app")
    podman("create", "--name", "tt-test-broken-app", base, "/bin/true")
    # the unit's drop-in directory, copied whole: the image may have none yet
    dropins = ROOT / ".local" / "fleet" / "broken" / "taskboard.service.d"
    dropins.mkdir(parents=True, exist_ok=True)
    # the service starts (the user data's restart succeeds) but never listens
    (dropins / "99-broken.conf").write_text(
        "[Service]\nType=simple\nExecStart=\nExecStart=/bin/sleep infinity\n"
    )
    try:
        podman("cp", str(dropins), "tt-test-broken-app:/etc/systemd/system/")
        podman("commit", "--quiet", "tt-test-broken-app", ref, timeout=300)
    finally:
        podman("rm", "--force", "--ignore", "tt-test-broken-app")
    return ref


@pytest.fixture(scope="module")
def target():
    """The release the app instances' image was baked with, and the one to
    roll to (a release whose images are not baked yet, so the bake is real)."""
    fleet()
    old = image_name_of(instances("app")[0]["id"]).rsplit(":", 1)[-1]
    new = "0.2.0" if old != "0.2.0" else "0.3.0"
    baked = bool(image_id(f"localhost/threetier-app:{new}"))
    return {"old": old, "new": new, "baked_before": baked}


def test_immutable_release_by_instance_refresh_under_load(target):
    new = target["new"]
    before = {tier: wait_fleet(tier) for tier in TIERS}
    load = Load(fleet()["url"], rate=RATE, workers=6, max_seconds=1500).start()
    time.sleep(3)
    started = time.monotonic()
    try:
        with HealthyWatch() as watch:
            proc = make_release(new)
        took = time.monotonic() - started
        time.sleep(3)
    finally:
        result = load.stop()
    out = proc.stdout
    print(
        f"immutable release {target['old']} -> {new}: {took:.0f} s "
        f"(images {'reused' if target['baked_before'] else 'baked'}), {result.sent} requests, "
        f"statuses {result.statuses}"
    )
    if not target["baked_before"]:
        # the release's images were baked on podman builders by the tier roles
        bakers = {host for host, _ in recaps(out)}
        assert {"tt-local-bake-web", "tt-local-bake-app"} <= bakers, out[-3000:]
    assert result.sent > RATE * 30
    assert result.failures == [], result.failures[:20]
    assert target["old"] in result.versions[:5], result.versions[:5]
    assert new in result.versions
    after = {
        requests.get(fleet()["url"] + "/version", timeout=10).json()["version"] for _ in range(20)
    }
    assert after == {new}

    refreshes = emulator("autoscaling")
    for tier in TIERS:
        lt = template(tier)
        assert (lt["tags"].get("Tier"), lt["tags"].get("Release")) == (tier, new), lt
        assert lt["tags"]["LocalImage"].startswith(f"localhost/threetier-{tier}:{new}@")
        g = group(tier)
        # the refresh's desired configuration is the group's now, by number
        assert g["LaunchTemplate"]["Version"] == str(lt["version"]), g["LaunchTemplate"]
        assert release_tag(tier) == new
        # the refresh says it is done, and it is: every instance is new and
        # runs the new AMI from the new version, in a container of the new image
        last = refreshes.describe_instance_refreshes(AutoScalingGroupName=f"{PREFIX}-{tier}")[
            "InstanceRefreshes"
        ][0]
        assert (last["Status"], last["PercentageComplete"]) == ("Successful", 100), last
        now = instances(tier)
        assert {i["image"] for i in now} == {lt["ami"]}, now
        assert not {i["id"] for i in now} & set(before[tier])
        assert all(i["LaunchTemplate"]["Version"] == str(lt["version"]) for i in g["Instances"])
        want = image_id(f"localhost/threetier-{tier}:{new}")
        for i in now:
            assert image_id(image_name_of(i["id"])) == want
        # capacity never below desired: the balancer always had at least
        # as many healthy targets as the group's desired capacity
        counts = watch.seen[tier]
        assert counts, f"{tier}: no observation"
        assert min(counts) >= g["DesiredCapacity"], (tier, min(counts))
        assert wait_fleet(tier) == sorted(i["id"] for i in now)
        # the old instances' containers are gone
        for old in before[tier]:
            assert podman("container", "exists", old, check=False).returncode != 0


def test_immutable_release_again_changes_nothing(target):
    before = {tier: [i["id"] for i in instances(tier)] for tier in TIERS}
    again = make_release(target["new"])
    changed = recaps(again.stdout)
    # images.yml and one release_immutable.yml per tier, each its recap
    assert len([h for h, _ in changed if h == "localhost"]) == 3, again.stdout[-3000:]
    assert all(n == 0 for _, n in changed), changed
    assert {tier: [i["id"] for i in instances(tier)] for tier in TIERS} == before


def test_make_up_after_the_release_keeps_it(target):
    """Provisioning never undoes a release: `make up` (images.yml, site.yml
    with the inventory's older release, local_up.yml) changes nothing, and
    the launch templates' default versions, their AMIs and the groups'
    release tags stay as the release set them."""
    before = {tier: (template(tier), release_tag(tier), [i["id"] for i in instances(tier)])
              for tier in TIERS}  # fmt: skip
    started = time.monotonic()
    again = run(["scripts/up.sh"], timeout=1800)
    took = time.monotonic() - started
    print(f"make up with nothing to do: {took:.1f} s")
    steps = [
        line for line in again.stdout.splitlines() if line.startswith("up: ") and "changed=" in line
    ]
    # one step runs images.yml, site.yml and local_up.yml (playbooks/up.yml)
    assert any("up.yml" in line for line in steps), again.stdout
    for line in steps:
        assert "changed=0" in line, again.stdout
    after = {tier: (template(tier), release_tag(tier), [i["id"] for i in instances(tier)])
             for tier in TIERS}  # fmt: skip
    assert after == before
    assert before["app"][1] == target["new"]


def test_refresh_whose_instances_never_get_healthy_is_rolled_back(target):
    """A new app image whose service never answers: its instance never gets
    healthy, the instance refresh fails and Auto Scaling rolls it back; the
    old instances keep serving (zero failed requests), the group keeps its
    version and the template's previous default is restored; the run exits
    non-zero naming the check."""
    broken_app_image(f"localhost/threetier-app:{target['new']}")
    run(
        ["ansible-playbook", "playbooks/images.yml", "-e", f"threetier_release={BROKEN}",
         "-e", '{"images_tiers": ["app"]}', "-e", "images_prune=false"],
        timeout=900,
    )  # fmt: skip
    before = wait_fleet("app")
    version_before = template("app")
    group_version = group("app")["LaunchTemplate"]["Version"]
    load = Load(fleet()["url"], rate=RATE / 2, workers=4, max_seconds=600).start()
    started = time.monotonic()
    try:
        proc = run(
            ["ansible-playbook", "playbooks/release_immutable.yml", "-e", "release_tier=app",
             "-e", f"release_version={BROKEN}"],
            timeout=900, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        time.sleep(2)
    finally:
        result = load.stop()
    out = proc.stdout + proc.stderr
    print(
        f"broken immutable release: stopped after {took:.0f} s; {result.sent} requests, "
        f"statuses {result.statuses}"
    )
    assert proc.returncode != 0
    assert "by instance refresh FAILED" in out, out[-3000:]
    assert re.search(r"ended Rollback\w+", out), out[-3000:]
    assert re.search(r"i-[0-9a-f]+", out[out.index("by instance refresh FAILED") :])
    assert f"is back on version {version_before['version']}" in out
    assert result.failures == [], result.failures[:20]
    assert template("app") == version_before
    assert group("app")["LaunchTemplate"]["Version"] == group_version
    assert wait_fleet("app") == before
    last = emulator("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName=f"{PREFIX}-app"
    )["InstanceRefreshes"][0]
    assert last["Status"] == "RollbackSuccessful", last
