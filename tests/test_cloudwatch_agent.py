"""roles/cloudwatch_agent against a systemd container of the base image
(localhost/threetier-base:bookworm), without the agent's package as in the
local environment: the configuration is rendered and validated (a broken one
never replaces the good one), the app tier's journal export ships gunicorn's
output to a file, bad input is refused before any change, and a second run
changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import ansible_env

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/threetier-base:bookworm"
CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
EXPORT = "/var/log/cloudwatch-journal-export/taskboard.log"


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def in_box(box: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", box, *argv, check=check)


@pytest.fixture(scope="module")
def box():
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (scripts/build-base-image.sh)")
    name = f"tt-cwagent-{uuid.uuid4().hex[:8]}"
    try:
        # (inside: a run that fails after creating the container leaves it)
        podman("run", "-d", "--name", name, "--systemd=always", IMAGE, "/lib/systemd/systemd")
        deadline = time.monotonic() + 60
        while True:
            state = in_box(name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, f"systemd did not come up: {state}"
            time.sleep(0.5)
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def play(box: str, *extra: str) -> subprocess.CompletedProcess:
    env = ansible_env()
    return subprocess.run(
        ["ansible-playbook", "-i", f"{box},", "-c", "containers.podman.podman",
         "tests/playbooks/cloudwatch_agent.yml", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def recap(run: subprocess.CompletedProcess, box: str) -> dict[str, int]:
    line = [x for x in run.stdout.splitlines() if x.startswith(box) and "ok=" in x][-1]
    return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}


@pytest.fixture(scope="module")
def app_run(box):
    run = play(box, "-e", "cloudwatch_agent_tier=app")
    assert run.returncode == 0, run.stdout[-4000:]
    return run


def test_app_tier_config_names_gunicorn_log_memory_and_disk(box, app_run):
    config = json.loads(in_box(box, "cat", CONFIG).stdout)
    files = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert [(f["file_path"], f["log_group_name"]) for f in files] == [
        (EXPORT, "/threetier/app/taskboard")
    ]
    assert files[0]["log_stream_name"] == "{instance_id}"
    metrics = config["metrics"]
    assert metrics["namespace"] == "CWAgent"
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    assert "mem_used_percent" in metrics["metrics_collected"]["mem"]["measurement"]
    assert metrics["metrics_collected"]["disk"]["resources"] == ["/"]
    assert config["agent"]["metrics_collection_interval"] == 60


def unit_says(box: str, line: str, *, until_shipped: bool = False) -> list[str]:
    """A long-running unit named like the service writes ``line`` to its stdout,
    as gunicorn does (once, or every half second with ``until_shipped``); the
    export's lines once it has shipped it (bounded wait), then the unit ends.
    One process, no child: systemd in a container on cgroup v1 is not told
    when a killed unit's cgroup empties, and waits on a child it lost track
    of until its stop timeout."""
    times = "itertools.count()" if until_shipped else "[0]"
    say = (
        f"import itertools, time\nfor _ in {times}:\n"
        f"    print({line!r}, flush=True)\n    time.sleep(0.5)\ntime.sleep(120)\n"
    )
    in_box(box, "systemd-run", "--unit=taskboard.service", "python3", "-c", say)
    try:
        deadline = time.monotonic() + 20
        while line not in (lines := in_box(box, "cat", EXPORT, check=False).stdout.splitlines()):
            assert time.monotonic() < deadline, (
                lines[-10:],
                in_box(box, "journalctl", "-o", "json", "-n", "15").stdout,
            )
            time.sleep(0.5)
    finally:
        unit_ends(box)
    return lines


def unit_ends(box: str) -> None:
    """The speaking unit is stopped and gone (bounded), so that the next one
    can take its name."""
    in_box(box, "systemctl", "stop", "taskboard.service", check=False)
    deadline = time.monotonic() + 30
    while in_box(
        box, "systemctl", "is-active", "taskboard.service", check=False
    ).stdout.strip() in (
        "active",
        "activating",
        "deactivating",
    ):
        assert time.monotonic() < deadline, "taskboard.service still there 30 s after its stop"
        time.sleep(0.2)
    in_box(box, "systemctl", "reset-failed", "taskboard.service", check=False)


def export_follows(box: str) -> None:
    """The export follows the journal: a line a unit keeps repeating arrives.
    (With --lines=0, what the unit writes before journalctl reaches the
    journal's end is not exported; the role's comment says so.)"""
    unit_says(box, f"probe-{uuid.uuid4().hex}", until_shipped=True)


def test_journal_export_ships_the_units_output(box, app_run):
    export_follows(box)
    marker = f"gunicorn-line-{uuid.uuid4().hex}"
    unit_says(box, marker)
    # a restart of the export repeats nothing and carries on
    in_box(box, "systemctl", "restart", "cloudwatch-journal-export@taskboard.service")
    export_follows(box)
    after = f"{marker}-after-restart"
    lines = unit_says(box, after)
    assert lines.count(marker) == 1
    assert lines.count(after) == 1


def test_second_run_changes_nothing(box, app_run):
    run = play(box, "-e", "cloudwatch_agent_tier=app")
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run, box)["changed"] == 0, run.stdout[-4000:]


def test_invalid_config_never_replaces_the_good_one(box, app_run):
    before = in_box(box, "cat", CONFIG).stdout
    # where the agent is installed its config-translator has the last word:
    # one that refuses makes the run fail and the file stays as it was
    translator = "/opt/aws/amazon-cloudwatch-agent/bin/config-translator"
    in_box(box, "mkdir", "-p", os.path.dirname(translator))
    in_box(box, "sh", "-c", f"printf '#!/bin/sh\\necho refused: $*\\nexit 1\\n' > {translator}")
    in_box(box, "chmod", "755", translator)
    try:
        run = play(
            box, "-e", "cloudwatch_agent_tier=app", "-e", "cloudwatch_agent_log_retention_days=60"
        )
    finally:
        in_box(box, "rm", "-f", translator)
    assert run.returncode != 0
    assert "config-translator: refused: --input" in run.stdout, run.stdout[-3000:]
    assert in_box(box, "cat", CONFIG).stdout == before
    # the checker itself, on a file with a log entry lacking its group
    bad = {"agent": {"metrics_collection_interval": 60}, "logs": {}}
    in_box(box, "sh", "-c", f"echo '{json.dumps(bad)}' > /tmp/bad.json")
    check = in_box(
        box,
        "/usr/local/libexec/threetier/cloudwatch-agent-check-config",
        "/tmp/bad.json",
        check=False,
    )
    assert check.returncode == 1
    assert "mem_used_percent is required" in check.stderr
    assert "collect_list" in check.stderr


def test_bad_input_refused_before_any_change(box, app_run):
    before = in_box(box, "cat", CONFIG).stdout
    for extra in (
        ["-e", "cloudwatch_agent_log_retention_days=42"],
        ["-e", "cloudwatch_agent_install=true"],  # no checksum
        ["-e", '{"cloudwatch_agent_extra_log_files": [{"path": "relative.log", "name": "x"}]}'],
    ):
        run = play(box, "-e", "cloudwatch_agent_tier=app", *extra)
        assert run.returncode != 0, extra
        assert "cloudwatch_agent: bad input" in run.stdout, run.stdout[-2000:]
        assert recap(run, box)["changed"] == 0
    assert in_box(box, "cat", CONFIG).stdout == before
