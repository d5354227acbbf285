"""Helpers of the fleet tests (tests/local/): real containers, real traffic on
127.0.0.1. They need the fleet (`make up`; the `fleet` fixture runs
scripts/up.sh, a no-op when it is up) and take minutes, so they only run
when asked: `make test-fleet` (THREETIER_FLEET_TESTS=1); otherwise every
test module is skipped (`skip_unless_asked`). No conftest.py here: the kit's
tests/conftest.py is imported as `conftest` by its own tests."""

from __future__ import annotations

import collections
import functools
import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

skip_unless_asked = pytest.mark.skipif(
    os.environ.get("THREETIER_FLEET_TESTS") != "1",
    reason="fleet tests: make up, then make test-fleet (THREETIER_FLEET_TESTS=1)",
)


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.timer")
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["CONTAINERS_CONF"] = str(ROOT / "scripts" / "containers.conf")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("THREETIER_LOCAL_DIR", None)
    env.pop("THREETIER_MODE", None)
    env.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    return env


def run(argv: list[str], timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
        )
    return result


def podman(*args: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout, check=check)


# The local CA: it signs what the external balancer serves on HTTPS
CA = ROOT / ".local" / "ca" / "ca.crt"


@functools.cache
def fleet() -> dict[str, str]:
    """The fleet is up (scripts/up.sh, once per test run; a no-op when it
    is up): the site's URL (https, CloudFront's stand-in: what a user opens),
    the external balancer's (https, its published 443), the same balancer's
    plain HTTP port (a redirect) and up.sh's output.
    THREETIER_FLEET_UP=1 says the caller has just run it
    (scripts/test-all.sh): then it is not run again here. From then on
    `requests` trusts the local CA (REQUESTS_CA_BUNDLE), as a browser of the
    site would trust the site's CA; nothing else does. Requests straight to
    the external balancer carry the origin check's header (as CloudFront's
    do; `origin_header`)."""
    log = ROOT / ".local" / "fleet" / "up.log"  # Ansible's output of the last up.sh
    http = f"http://127.0.0.1:{os.environ.get('THREETIER_LOCAL_PORT', '8080')}"
    url = f"https://127.0.0.1:{os.environ.get('THREETIER_LOCAL_TLS_PORT', '8443')}"
    site = f"https://127.0.0.1:{os.environ.get('THREETIER_LOCAL_CDN_TLS_PORT', '9443')}"
    site_http = f"http://127.0.0.1:{os.environ.get('THREETIER_LOCAL_CDN_PORT', '9080')}"
    if os.environ.get("THREETIER_FLEET_UP") == "1":
        said = log.read_text(errors="replace")
    else:
        up = run([str(ROOT / "scripts" / "up.sh")], timeout=3600)
        printed = up.stdout.strip().splitlines()[-1].split()[-1]
        assert printed.rstrip("/") == site, up.stdout
        said = up.stdout + log.read_text(errors="replace")
    assert CA.is_file(), f"no local CA at {CA}: make up makes it"
    os.environ["REQUESTS_CA_BUNDLE"] = str(CA)
    found = {"url": url, "site": site, "site_http": site_http, "up": said, "http": http}
    _carry_origin_header(url, origin_header())
    return found


def origin_header() -> tuple[str, str]:
    """The header the external balancer's origin check asks for (CloudFront
    sends it; aws_load_balancers keeps it in Secrets Manager)."""
    secret = emulator("secretsmanager").get_secret_value(SecretId="threetier/local/cdn-origin")
    stored = json.loads(secret["SecretString"])
    return stored["header"], stored["value"]


def _carry_origin_header(balancer: str, header: tuple[str, str]) -> None:
    """Every request of `requests` to ``balancer`` (its URL: past
    CloudFront) carries ``header``, as CloudFront's do: the fleet's tests
    measure that balancer as an entry point of its own. A test that asks
    without it passes ``headers={name: None}`` (requests drops it)."""
    original = getattr(requests.Session.request, "__wrapped__", requests.Session.request)

    @functools.wraps(original)
    def request(self, method, url, *args, **kwargs):  # requests' own names
        if str(url).startswith(balancer):
            headers = dict(kwargs.get("headers") or {})
            headers.setdefault(header[0], header[1])
            kwargs["headers"] = headers
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request


ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
PREFIX = "threetier-local"


def emulator(service: str):
    """A client of the emulator, the fleet's source of truth."""
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto's documented dummy
    )


def group(tier: str) -> dict:
    """The tier's Auto Scaling group as the emulator describes it."""
    found = emulator("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{PREFIX}-{tier}"]
    )["AutoScalingGroups"]
    assert found, f"no Auto Scaling group {PREFIX}-{tier}"
    return found[0]


def instances(tier: str) -> list[dict]:
    """The tier's running EC2 instances (id, private IP, AMI, subnet, AZ),
    sorted by id: each one is a container named by its id."""
    pages = emulator("ec2").describe_instances(
        Filters=[
            {"Name": "tag:Environment", "Values": ["local"]},
            {"Name": "tag:Tier", "Values": [tier]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    out = [
        {
            "id": i["InstanceId"],
            "ip": i["PrivateIpAddress"],
            "image": i["ImageId"],
            "subnet": i["SubnetId"],
            "az": i["Placement"]["AvailabilityZone"],
            "hostname": "ip-" + i["PrivateIpAddress"].replace(".", "-"),
        }
        for r in pages["Reservations"]
        for i in r["Instances"]
    ]
    return sorted(out, key=lambda x: x["id"])


def ids(tier: str) -> list[str]:
    return [i["id"] for i in instances(tier)]


def target_group_arn(tier: str) -> str:
    return emulator("elbv2").describe_target_groups(Names=[f"{PREFIX}-{tier}"])["TargetGroups"][0][
        "TargetGroupArn"
    ]


def target_health(tier: str) -> dict[str, str]:
    """{target id: state} of the tier's target group (DescribeTargetHealth:
    what the local balancer's health checks see)."""
    rows = emulator("elbv2").describe_target_health(TargetGroupArn=target_group_arn(tier))
    return {r["Target"]["Id"]: r["TargetHealth"]["State"] for r in rows["TargetHealthDescriptions"]}


def wait_fleet(
    tier: str, count: int | None = None, timeout: float = 180, without: tuple[str, ...] = ()
) -> list[str]:
    """Until the tier has `count` (default: desired) running instances, all
    InService and healthy in the target group and nothing else in it (no
    target draining), none of them in `without`; their ids."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        want = count if count is not None else group(tier)["DesiredCapacity"]
        g = group(tier)
        in_service = sorted(
            i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"
        )
        health = target_health(tier)
        seen = (want, in_service, health)
        if (
            len(in_service) == want
            and len(g["Instances"]) == want
            and health == dict.fromkeys(in_service, "healthy")
            and not set(in_service) & set(without)
        ):
            return in_service
        time.sleep(2)
    raise AssertionError(f"{tier}: not {count} healthy instances within {timeout} s: {seen}")


def served_by(names: set[str], seconds: float) -> collections.Counter:
    """Ask /version through the public URL until every one of `names` has
    answered, or `seconds` pass. A target that has just turned healthy gets a
    small share at first (the target group's slow start ramps its weight up),
    so a fixed number of requests could miss it without anything wrong."""
    hosts: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not names <= set(hosts):
        hosts[requests.get(fleet()["url"] + "/version", timeout=10).json()["hostname"]] += 1
        time.sleep(0.05)
    return hosts
