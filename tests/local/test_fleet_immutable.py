"""An immutable release of the local fleet under load: the release's images
baked for real (playbooks/images.yml: podman builders, recorded as AMIs in
the emulator), then `make release STRATEGY=immutable` replaces every app and
web container by surge and retire. Zero failed requests; the balancers never
have fewer healthy targets than instances; every container ends on the new
image; the launch templates' default versions name the new AMIs; a re-run
and the fleet's own playbook (local_up.yml) change nothing."""

from __future__ import annotations

import os
import re
import threading
import time

import boto3
import pytest
import requests
from fleetlib import ROOT, fleet, lb_servers, podman, run, skip_unless_asked
from load import Load

pytestmark = skip_unless_asked

TIERS = {
    "app": {"balancer": "tt-local-lb-int", "names": ["tt-local-app-1", "tt-local-app-2"]},
    "web": {"balancer": "tt-local-lb-ext", "names": ["tt-local-web-1", "tt-local-web-2"]},
}
RATE = float(os.environ.get("THREETIER_FLEET_RATE", "60"))


def image_of(container: str) -> str:
    return podman("container", "inspect", "--format", "{{.Image}}", container).stdout.strip()


def image_name_of(container: str) -> str:
    return podman("container", "inspect", "--format", "{{.ImageName}}", container).stdout.strip()


def container_id(name: str) -> str:
    return podman("container", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def image_id(ref: str) -> str:
    found = podman("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def emulator(service: str):
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto's documented dummy
    )


class HealthyWatch:
    """Counts the UP servers of both backends every 0.3 s in a thread while
    a rollout runs (bounded: stop() or `limit` seconds)."""

    def __init__(self, limit: float = 1500):
        self.limit = limit
        self.seen: dict[str, list[tuple[int, list[str]]]] = {t: [] for t in TIERS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            for tier, spec in TIERS.items():
                rows = lb_servers(spec["balancer"], tier)
                self.seen[tier].append((sum(1 for _, s in rows if s == "UP"), [n for n, _ in rows]))
            self._stop.wait(0.3)

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
    dropin = ROOT / ".local" / "fleet" / "99-broken.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    # the service starts (the user data's restart succeeds) but never listens
    dropin.write_text("[Service]\nType=simple\nExecStart=\nExecStart=/bin/sleep infinity\n")
    try:
        podman("cp", str(dropin), "tt-test-broken-app:/etc/systemd/system/taskboard.service.d/")
        podman("commit", "--quiet", "tt-test-broken-app", ref, timeout=300)
    finally:
        podman("rm", "--force", "--ignore", "tt-test-broken-app")
    return ref


def default_version(tier: str) -> tuple[int, str]:
    ec2 = emulator("ec2")
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"threetier-local-{tier}"])
    default = lt["LaunchTemplates"][0]["DefaultVersionNumber"]
    data = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"threetier-local-{tier}", Versions=[str(default)]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    return default, data["ImageId"]


@pytest.fixture(scope="module")
def target():
    """The release the app containers' image was baked with, and the one to
    roll to (a release whose images are not baked yet, so the bake is real)."""
    fleet()
    old_image = image_name_of(TIERS["app"]["names"][0])
    old = old_image.rsplit(":", 1)[-1]
    new = "0.2.0" if old != "0.2.0" else "0.3.0"
    baked = bool(image_id(f"localhost/threetier-app:{new}"))
    return {"old": old, "new": new, "baked_before": baked}


def test_immutable_release_under_load_replaces_every_instance(target):
    new = target["new"]
    before = {n: container_id(n) for t in TIERS.values() for n in t["names"]}
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
    # /version answered the old release, then both (surge instances beside
    # old ones), and the new one only once the rollout is done
    assert target["old"] in result.versions[:5], result.versions[:5]
    assert new in result.versions
    after = {
        requests.get(fleet()["url"] + "/version", timeout=10).json()["version"] for _ in range(20)
    }
    assert after == {new}

    for tier, spec in TIERS.items():
        want = image_id(f"localhost/threetier-{tier}:{new}")
        assert want, f"no image localhost/threetier-{tier}:{new}"
        # every instance relaunched from the new image, under its own name
        assert {n: image_of(n) for n in spec["names"]} == dict.fromkeys(spec["names"], want)
        assert all(container_id(n) != before[n] for n in spec["names"])
        # the balancer never had fewer healthy targets than instances, a
        # surge instance was in it meanwhile, and none is left
        counts = [up for up, _ in watch.seen[tier]]
        assert counts, f"{tier}: no observation"
        assert min(counts) >= len(spec["names"]), (tier, min(counts))
        surged = [names for _, names in watch.seen[tier] if f"tt-local-{tier}-s1" in names]
        assert surged, f"{tier}: no surge instance was seen in the balancer"
        assert lb_servers(spec["balancer"], tier) == [(n, "UP") for n in spec["names"]]
    assert podman("ps", "-aq", "--filter", "name=^tt-local-(web|app)-s").stdout.strip() == ""

    # the launch templates' default versions launch the release's AMIs
    ec2 = emulator("ec2")
    for tier in TIERS:
        _, ami = default_version(tier)
        tags = {
            t["Key"]: t["Value"] for t in ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"]
        }
        assert (tags.get("Tier"), tags.get("Release")) == (tier, new), tags
        assert tags["LocalImage"].startswith(f"localhost/threetier-{tier}:{new}@")


def test_release_whose_instances_never_get_healthy_is_undone(target):
    """The surge instance of a broken app image never passes its health
    check: the rollout stops within the batch limit, the surge instance goes,
    the old instances keep serving (zero failed requests), and the launch
    template's previous version is the default again."""
    app = TIERS["app"]
    broken_app_image(f"localhost/threetier-app:{target['new']}")
    run(
        ["ansible-playbook", "playbooks/images.yml", "-e", f"threetier_release={BROKEN}",
         "-e", '{"images_tiers": ["app"]}', "-e", "images_prune=false"],
        timeout=900,
    )  # fmt: skip
    before = {n: container_id(n) for n in app["names"]}
    version_before = default_version("app")
    load = Load(fleet()["url"], rate=RATE / 2, workers=4, max_seconds=600).start()
    try:
        proc = run(
            ["ansible-playbook", "playbooks/release_immutable.yml", "-e", "release_tier=app",
             "-e", f"release_version={BROKEN}", "-e", "release_batch_timeout=25"],
            timeout=900, check=False,
        )  # fmt: skip
        time.sleep(2)
    finally:
        result = load.stop()
    out = proc.stdout + proc.stderr
    print(f"broken immutable release: {result.sent} requests, statuses {result.statuses}")
    assert proc.returncode != 0
    assert "Immutable rollout of the local app tier stopped (surge tt-local-app-s1)" in out, out[
        -3000:
    ]
    assert "is not healthy in tt-local-lb-int" in out
    assert f"is back on version {version_before[0]}" in out
    assert result.failures == [], result.failures[:20]
    assert default_version("app") == version_before
    assert {n: container_id(n) for n in app["names"]} == before
    assert lb_servers(app["balancer"], "app") == [(n, "UP") for n in app["names"]]
    assert podman("ps", "-aq", "--filter", "name=^tt-local-app-s").stdout.strip() == ""


def test_immutable_release_again_changes_nothing(target):
    before = {n: container_id(n) for t in TIERS.values() for n in t["names"]}
    again = make_release(target["new"])
    changed = recaps(again.stdout)
    # images.yml and one release_immutable.yml per tier, each its recap
    assert len([h for h, _ in changed if h == "localhost"]) == 3, again.stdout[-3000:]
    assert all(n == 0 for _, n in changed), changed
    assert {n: container_id(n) for n in before} == before


def test_the_fleet_playbook_keeps_the_released_instances(target):
    """local_up.yml (make up's last step) launches from the launch templates'
    default versions: after the release it finds nothing to change."""
    before = {n: container_id(n) for t in TIERS.values() for n in t["names"]}
    up = run(["ansible-playbook", "playbooks/local_up.yml"], timeout=900)
    changed = recaps(up.stdout)
    assert changed, up.stdout[-3000:]
    assert all(n == 0 for _, n in changed), changed
    assert {n: container_id(n) for n in before} == before
