"""roles/ssm_agent's checks, on the control node (no instance: the package
install and the agent registering with Systems Manager only AWS proves): with
the install, a package URL that is not https:// or a checksum that is not
sha256:<64 hex> is refused before anything changes; good ones pass; without
the install (the local environment) the role changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ansible_env

ROOT = Path(__file__).resolve().parent.parent
GOOD_URL = "https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/latest/debian_amd64/amazon-ssm-agent.deb"
GOOD_SUM = "sha256:" + "0123456789abcdef" * 4


def play(*extra: str) -> subprocess.CompletedProcess:
    env = ansible_env()
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=" + sys.executable,
         "tests/playbooks/ssm_agent.yml", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def recap(run: subprocess.CompletedProcess) -> dict[str, int]:
    line = [x for x in run.stdout.splitlines() if x.startswith("localhost") and "ok=" in x][-1]
    return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}


@pytest.mark.parametrize(
    ("url", "checksum", "said"),
    [
        ("http://example.org/amazon-ssm-agent.deb", GOOD_SUM, "given: http://example.org/"),
        ("file:///tmp/amazon-ssm-agent.deb", GOOD_SUM, "given: file:///tmp/"),
        (GOOD_URL, "", "(given: nothing)"),
        (GOOD_URL, "abc", "(given: abc)"),
        (GOOD_URL, "sha256:" + "a" * 63, "(given: sha256:" + "a" * 63),
        (GOOD_URL, "md5:" + "a" * 32, "(given: md5:"),
    ],
)
def test_bad_package_refused_before_any_change(url, checksum, said):
    run = play(
        "-e",
        json.dumps(
            {
                "ssm_agent_install": True,
                "ssm_agent_package_url": url,
                "ssm_agent_package_checksum": checksum,
            }
        ),
    )
    assert run.returncode != 0
    assert "ssm_agent: bad input" in run.stdout, run.stdout[-2000:]
    assert said in run.stdout, run.stdout[-2000:]
    assert recap(run)["changed"] == 0
    # the check is the first task: nothing was fetched or installed
    assert "Fetch the agent's package" not in run.stdout


def test_good_package_passes_the_check():
    run = play(
        "--tags",
        "ssm_agent_preflight",
        "-e",
        json.dumps({"ssm_agent_package_url": GOOD_URL, "ssm_agent_package_checksum": GOOD_SUM}),
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Check the inputs before anything changes" in run.stdout


def test_without_the_install_nothing_happens():
    """The local environment's case: no package, podman reaches the
    containers. The role checks and stops (no URL or checksum needed)."""
    run = play("-e", "ssm_agent_install=false")
    assert run.returncode == 0, run.stdout[-2000:]
    counts = recap(run)
    assert (counts["changed"], counts["failed"]) == (0, 0), run.stdout[-2000:]
    assert "Fetch the agent's package" not in run.stdout
    assert "Enable the agent at boot" not in run.stdout
