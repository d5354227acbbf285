"""local_image_bake's start step against real podman images: an image is the
release plus what the bake took from this machine, named by the caller as
labels (local_bake.yml: the checksum of the local CA the app image trusts).
An image present with the same labels is kept (nothing changes), one with
other labels or none is baked again (a builder starts for it), and an image
nobody asked labels of is kept as before. Podman's images are the machine's
and the CA is a checkout's: without this, another checkout's make up reused
an app image trusting another CA and the migration failed ("certificate
verify failed"). A few seconds: the builders boot systemd, nothing is
installed."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from aws_stack import BASE_IMAGE as BASE
from aws_stack import labelled_image
from conftest import Kit

LABEL = "threetier.db-ca-sha256"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=check
    )


@pytest.fixture
def images(tmp_path):
    if podman("image", "exists", BASE, check=False).returncode != 0:
        pytest.skip(f"{BASE} is not built (scripts/build-base-image.sh)")
    tag = uuid.uuid4().hex[:8]
    refs = {
        "web": f"localhost/tt-labels-{tag}-web:1.0",
        "app": f"localhost/tt-labels-{tag}-app:1.0",
    }
    prefix = f"tt-labels-{tag}-bake-"
    podman("tag", BASE, refs["web"])
    yield refs, prefix, tmp_path / "apt"
    podman("rm", "--force", "--ignore", "--time", "0", f"{prefix}web", f"{prefix}app", check=False)
    podman("untag", BASE, refs["web"], check=False)
    podman("untag", BASE, refs["app"], check=False)  # (when a tag of the base)
    podman("rmi", refs["app"], check=False)  # (when an image of its own)


def start(kit: Kit, refs: dict[str, str], prefix: str, store, checksum: str):
    wanted = [
        {"kind": "web", "image": refs["web"]},
        {"kind": "app", "image": refs["app"], "labels": {LABEL: checksum}},
    ]
    return kit.playbook(
        "../tests/playbooks/bake_start.yml",
        "-e",
        json.dumps({"tt_images": wanted, "tt_prefix": prefix, "tt_store": str(store)}),
        inventory="localhost,",
        timeout=300,
    )


def builders(prefix: str) -> set[str]:
    out = podman("ps", "--all", "--filter", f"name=^{prefix}", "--format", "{{.Names}}").stdout
    return {name.removeprefix(prefix) for name in out.split()}


def test_same_labels_kept_other_labels_baked_again(kit, images):
    refs, prefix, store = images
    labelled_image(refs["app"], {LABEL: "a" * 64, "threetier.kind": "app"})

    same = start(kit, refs, prefix, store, "a" * 64)
    assert same.rc == 0, same.output[-4000:]
    assert builders(prefix) == set(), "both images are as asked: no builder"
    assert same.recap()["changed"] == 0, same.output[-4000:]

    other = start(kit, refs, prefix, store, "b" * 64)
    assert other.rc == 0, other.output[-4000:]
    assert builders(prefix) == {"app"}, "the app image trusts another CA: baked again, web kept"
    running = podman("container", "inspect", "--format", "{{.State.Status}}", f"{prefix}app")
    assert running.stdout.strip() == "running"


def test_an_image_without_the_labels_is_baked_again(kit, images):
    refs, prefix, store = images
    podman("tag", BASE, refs["app"])  # baked before images carried labels

    run = start(kit, refs, prefix, store, "c" * 64)
    assert run.rc == 0, run.output[-4000:]
    assert builders(prefix) == {"app"}
