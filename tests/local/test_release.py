"""Rolling releases under load through the external balancer, on the AWS
code path (the EC2 inventory's hosts, the ALB target groups' draining and
health): a good one (zero failed requests, /version moves, every app
instance on the new release), one an instance cannot install (stops before
any instance leaves its balancer), a broken one (stops at the first batch, which
is back on the old release; zero failed requests; non-zero exit naming host
and check), and make rollback (zero failed requests, every instance back). The good
release's AWS calls are recorded by the emulator and judged against the
operator's IAM policy (tests/iam_policies.py), as the kit's tests do for the
other playbooks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
import requests
from fleetlib import (
    ENDPOINT,
    ROOT,
    emulator,
    fleet,
    ids,
    podman,
    run,
    skip_unless_asked,
    target_health,
)
from iam_policies import judge, recorded_requests
from load import Load
from recorder import Recording, operator_calls

pytestmark = skip_unless_asked

BROKEN = "0.9.0"
RATE = float(os.environ.get("THREETIER_FLEET_RATE", "60"))


def current(name: str) -> str:
    return (
        podman("exec", name, "readlink", "/opt/taskboard/current").stdout.strip().rsplit("/", 1)[-1]
    )


def page_release(name: str) -> str:
    """The release the page a web instance serves names (build-wheel.sh stamps it)."""
    page = podman("exec", name, "cat", "/var/www/taskboard/current/index.html").stdout
    found = re.search(r'<meta name="taskboard-release" content="([^"]+)">', page)
    return found.group(1) if found else ""


def recap_changed(output: str) -> dict[str, int]:
    """changed= of every host in the PLAY RECAP."""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    }


def release(version: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(
        ["ansible-playbook", "playbooks/release.yml", "-e", f"release_version={version}"],
        timeout=1800,
        check=check,
    )


def under_load(url: str, action):
    load = Load(url, rate=RATE, workers=6, max_seconds=1500).start()
    time.sleep(3)
    try:
        outcome = action()
        time.sleep(3)
    finally:
        result = load.stop()
    return outcome, result


def all_healthy(tier: str, hosts: list[str]) -> bool:
    return target_health(tier) == dict.fromkeys(hosts, "healthy")


class FleetEmulator:
    """The fleet's emulator as tests/recorder.py's Recording wants it."""

    url = ENDPOINT

    @staticmethod
    def client(service: str, _region: str):
        return emulator(service)


@pytest.fixture(scope="module")
def versions():
    fleet()
    app = ids("app")
    old = current(app[0])
    assert all(current(n) == old for n in app)
    new = "0.2.0" if old != "0.2.0" else "0.1.0"
    return {"old": old, "new": new, "app": app, "web": ids("web"), "recorded": []}


def test_rolling_release_under_load_fails_no_request(versions):
    started = time.monotonic()
    args = (f"release_version={versions['new']}",)
    with Recording(FleetEmulator(), "release.yml", "inventories/local", args) as recorded:
        _, result = under_load(fleet()["url"], lambda: release(versions["new"]))
    versions["recorded"].append(recorded)
    took = time.monotonic() - started
    print(f"rollout of {versions['new']}: {took:.0f} s, {result.sent} requests; {result.statuses}")
    assert result.sent > RATE * 30
    assert result.failures == [], result.failures[:20]
    assert versions["old"] in result.versions
    assert versions["new"] in result.versions
    # /version moved from old to new and stayed there
    last_old = max(i for i, v in enumerate(result.versions) if v == versions["old"])
    first_new = result.versions.index(versions["new"])
    assert all(v == versions["new"] for v in result.versions[last_old + 1 :])
    assert first_new < len(result.versions)
    app, web = versions["app"], versions["web"]
    assert [current(n) for n in app] == [versions["new"]] * len(app)
    served = requests.get(fleet()["url"] + "/version", timeout=10).json()["version"]
    assert served == versions["new"]
    assert all_healthy("app", app)
    # the web tier rolled the release's page too, and is back in its target group
    assert [page_release(n) for n in web] == [versions["new"]] * len(web)
    assert all_healthy("web", web)


def test_every_call_of_the_release_is_granted(versions):
    """release.yml's calls (the kit's state module, the EC2 inventory, the
    target groups' draining and health) against the operator's IAM policy;
    the controller's and the instances' own calls to the emulator are left
    out (recorder.operator_calls: each names itself in its User-Agent)."""
    if not versions["recorded"]:
        pytest.skip("the rolling release did not run")
    (recorded,) = versions["recorded"]
    recorded.recording = operator_calls(recorded.recording)
    actions = {r.action for r in recorded_requests(recorded.recording)}
    # the release's own calls are there: it drained and registered targets
    assert {
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:RegisterTargets",
        "ec2:DescribeInstances",
    } <= actions, sorted(actions)
    problems, judged = judge([recorded])
    print(f"release.yml: {judged} calls judged, {len(actions)} actions")
    assert not problems, "\n".join(sorted(set(problems)))


def test_release_again_changes_nothing(versions):
    again = release(versions["new"])
    changed = recap_changed(again.stdout)
    assert set(versions["app"] + versions["web"]) <= set(changed), again.stdout[-3000:]
    assert all(n == 0 for n in changed.values()), changed


UNINSTALLABLE = "0.9.2"


def test_failed_install_stops_before_any_instance_leaves_its_balancer(versions):
    """The release is installed on every app instance before the first
    batch: one instance that cannot install it (its incoming directory's
    place taken by a file) stops the release there, with every instance
    still serving the old release, in its balancer, and no copy left."""
    app = versions["app"]
    before = [current(n) for n in app]
    blocked = app[-1]
    podman("exec", blocked, "touch", "/opt/taskboard/.incoming")
    try:
        proc = release(UNINSTALLABLE, check=False)
    finally:
        podman("exec", blocked, "rm", "-f", "/opt/taskboard/.incoming")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"release {UNINSTALLABLE}: the install FAILED on {blocked}" in out, out[-3000:]
    assert "no instance was taken out of its load balancer" in out
    assert "Take the instance out of its load balancer" not in out
    assert [current(n) for n in app] == before
    for name in app:
        copy = f"/opt/taskboard/releases/{UNINSTALLABLE}"
        left = podman("exec", name, "test", "-e", copy, check=False)
        assert left.returncode != 0, f"{name} keeps release {UNINSTALLABLE}"
    assert all_healthy("app", app)


def build_broken_wheel() -> str:
    """A release whose /readyz never passes: taskboard with its readiness
    check answering 503, built from a temporary copy."""
    work = ROOT / ".local" / "fleet" / "broken-build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "app").mkdir(parents=True)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / "app" / part, work / "app" / part)
    shutil.copytree(
        ROOT / "app" / "src",
        work / "app" / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    ops = work / "app" / "src" / "taskboard" / "ops.py"
    text = ops.read_text()
    patched = text.replace(
        'return jsonify({"status": "ready", "revision": current})',
        'return _not_ready("broken on purpose (fleet test build)")',
    )
    assert patched != text
    ops.write_text(patched)
    (work / "app" / "src" / "taskboard" / "_version.py").write_text(f'__version__ = "{BROKEN}"\n')
    run(
        ["python", "-m", "build", "--wheel", "--outdir", str(ROOT / "dist"), str(work / "app")],
        timeout=600,
    )
    shutil.rmtree(work, ignore_errors=True)
    return str(ROOT / "dist" / f"taskboard-{BROKEN}-py3-none-any.whl")


def test_broken_release_stops_at_the_first_batch(versions):
    build_broken_wheel()
    app = versions["app"]
    before = [current(n) for n in app]
    proc, result = under_load(fleet()["url"], lambda: release(BROKEN, check=False))
    print(f"broken rollout: {result.sent} requests, statuses {result.statuses}")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    failed = re.search(rf"release {BROKEN} FAILED its health gate on (i-[0-9a-f]+)", out)
    assert failed, out[-3000:]
    assert failed.group(1) in app
    assert "readyz" in out.lower()
    assert [current(n) for n in app] == before
    # the other instance never ran it, and keeps no copy of it (it was
    # installed there beside the running release before the first batch)
    (other,) = [n for n in app if n != failed.group(1)]
    absent = podman("exec", other, "test", "-e", f"/opt/taskboard/releases/{BROKEN}", check=False)
    assert absent.returncode != 0
    assert result.failures == [], result.failures[:20]
    assert all_healthy("app", app)
    assert requests.get(fleet()["url"] + "/version", timeout=10).json()["version"] == before[0]


def test_rollback_under_load_returns_to_the_previous_release(versions):
    app, web = versions["app"], versions["web"]
    assert [current(n) for n in app] == [versions["new"]] * len(app)
    _, result = under_load(
        fleet()["url"],
        lambda: run(["make", "--no-print-directory", "rollback"], timeout=1800),
    )
    print(f"rollback: {result.sent} requests; {result.statuses}")
    assert result.failures == [], result.failures[:20]
    assert [current(n) for n in app] == [versions["old"]] * len(app)
    served = requests.get(fleet()["url"] + "/version", timeout=10).json()["version"]
    assert served == versions["old"]
    assert [page_release(n) for n in web] == [versions["old"]] * len(web)
    assert all_healthy("app", app)
    assert all_healthy("web", web)
