"""playbooks/tasks/local_stale_containers.yml (local_up.yml runs it first)
against real podman containers: one alive, one stopped, and one that podman
still calls running although its processes are gone (conmon and the
container's process killed, as on a host restored without its processes,
where podman can neither exec in nor start it). Only that one is removed;
a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

IMAGE = "localhost/threetier-base:bookworm"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=60, check=check
    )


def state(name: str) -> str:
    proc = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "absent"


def sweep(kit, label: str):
    return kit.playbook(
        "../tests/playbooks/stale_containers.yml",
        "-e",
        f"tt_filter=label={label}",
        inventory="localhost,",
        timeout=300,
    )


@pytest.fixture
def boxes():
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (scripts/build-base-image.sh)")
    tag = uuid.uuid4().hex[:8]
    label = f"threetier.test=stale-{tag}"
    names = {kind: f"tt-stale-{kind}-{tag}" for kind in ("alive", "stopped", "dead")}
    try:
        for name in names.values():
            podman("run", "-d", "--name", name, "--label", label, IMAGE, "sleep", "600")
        podman("stop", "-t", "0", names["stopped"])
        conmon, pid = podman(
            "container", "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}",
            names["dead"],
        ).stdout.split()  # fmt: skip
        # conmon first: it would otherwise record the exit
        os.kill(int(conmon), 9)
        os.kill(int(pid), 9)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state(names["dead"]) == "running", "podman should still call it running"
        assert podman("exec", names["dead"], "true", check=False).returncode != 0
        yield label, names
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "0", name, check=False)


def test_only_the_dead_container_goes_and_a_second_run_changes_nothing(kit, boxes):
    label, names = boxes
    first = sweep(kit, label)
    assert first.rc == 0, first.output[-3000:]
    assert first.recap()["changed"] == 1, first.output[-3000:]
    assert state(names["dead"]) == "absent"
    assert state(names["alive"]) == "running"
    assert podman("exec", names["alive"], "true", check=False).returncode == 0
    assert state(names["stopped"]) == "exited"

    second = sweep(kit, label)
    assert second.rc == 0, second.output[-3000:]
    assert second.recap()["changed"] == 0, second.output[-3000:]
    assert state(names["alive"]) == "running"
    assert state(names["stopped"]) == "exited"
