"""Fixtures of the kit's tests: a real moto server on a free loopback port, and
a runner for ansible-playbook / ansible-inventory pointed at it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from motoserver import Moto, moto_server
from recorder import EMULATOR_VARS, Recording

# the emulator's switch, named where the emulator reads it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from localaws.emulator_ami_sharing import COPY_SECONDS_ENV
from localaws.emulator_autoscaling import IAM_PROPAGATION_ENV

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IAM_PROPAGATION_SECONDS = 20
# A copied AMI stays pending this long (AWS: minutes): test_ami_promote's
# wait of 1 s must find its copy still pending however slowly a loaded
# machine runs the promotion's tasks (5 s was once not enough).
AMI_COPY_SECONDS = 15


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Iterator[Moto]:
    # its recorder (the production fixture) writes into its working directory
    workdir = tmp_path_factory.mktemp("moto")
    # a new instance profile is refused for a group for 20 s, as AWS's IAM
    # propagation does (scripts/localaws/emulator_autoscaling.py): every
    # first provisioning goes through aws_autoscaling's retry of that error
    env = {
        IAM_PROPAGATION_ENV: str(IAM_PROPAGATION_SECONDS),
        COPY_SECONDS_ENV: str(AMI_COPY_SECONDS),
    }
    with moto_server(workdir / "moto.log", cwd=workdir, env=env) as server:
        yield server


def pytest_collection_modifyitems(items):
    # test_iam_calls judges the calls of every kit run of the session: last
    items.sort(key=lambda item: item.path.name == "test_iam_calls.py")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and "moto" in getattr(item, "funcargs", {}):
        report.sections.append(("moto server log (errors, tail)", item.funcargs["moto"].log_tail()))
    return report


@dataclass
class Run:
    args: list[str]
    rc: int
    output: str
    seconds: float
    # the API calls moto recorded during the run (JSON lines; kit playbooks)
    recording: str = ""

    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters of localhost (last recap line)."""
        line = [x for x in self.output.splitlines() if x.startswith("localhost ") and "ok=" in x][
            -1
        ]
        return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}


def ansible_env() -> dict[str, str]:
    """The environment the tests run ansible-playbook in: this venv's tools
    first, the repo's ansible.cfg, plain output, a callback named."""
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
    )
    # ansible.cfg's empty `callbacks_enabled =` makes ansible-core 2.21
    # fail ("A non-empty plugin name is required"); name one explicitly.
    if not env.get("ANSIBLE_CALLBACKS_ENABLED"):
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.timer"
    return env


class Kit:
    """Runs the kit's playbooks and inventories against the test's moto."""

    def __init__(self, moto: Moto):
        self.moto = moto
        self.env = ansible_env()
        self.env.update(
            AWS_ENDPOINT_URL=moto.url,
            AWS_URL=moto.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # moto's documented dummy
            AWS_SESSION_TOKEN="testing",
            AWS_DEFAULT_REGION="us-east-1",
            ANSIBLE_NOCOLOR="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            self.env.pop(var, None)

    def playbook(
        self, playbook: str, *extra: str, inventory: str = "inventories/local", timeout=900
    ) -> Run:
        args = ["ansible-playbook", "-i", inventory, f"playbooks/{playbook}", *extra]
        start = time.monotonic()
        # a kit playbook's calls are recorded (tests/recorder.py): test_iam_calls
        # checks them against the operator's IAM policy
        with contextlib.ExitStack() as stack:
            recorded = (
                None
                if "/" in playbook
                else stack.enter_context(Recording(self.moto, playbook, inventory, extra))
            )
            proc = subprocess.run(
                args,
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if recorded:
                recorded.rc = proc.returncode
        run = Run(args, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)
        run.recording = recorded.recording if recorded else ""
        # visible with -s / in the report of a failing test
        print(f"$ {' '.join(args)}  ({run.seconds:.1f} s, rc={run.rc})")
        return run

    def inventory_graph(self, inventory: str) -> str:
        proc = subprocess.run(
            ["ansible-inventory", "-i", inventory, "--graph"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return proc.stdout

    def inventory_groups(self, inventory: str) -> tuple[dict[str, set[str]], str]:
        """The inventory's groups -> direct hosts, and the raw graph."""
        graph = self.inventory_graph(inventory)
        return parse_graph(graph), graph


def parse_graph(text: str) -> dict[str, set[str]]:
    """`ansible-inventory --graph` output -> group -> its hosts (direct)."""
    groups: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        name = re.sub(r"^[\s|-]*", "", line).strip()
        if not name:
            continue
        if name.startswith("@"):
            current = name[1:].rstrip(":")
            groups.setdefault(current, set())
        elif current:
            groups[current].add(name)
    return groups


@pytest.fixture(scope="session")
def kit(moto) -> Kit:
    return Kit(moto)


def assert_refused(run: Run, *messages: str) -> None:
    """The run failed, saying each of `messages`."""
    assert run.rc != 0, run.output[-3000:]
    for message in messages:
        assert message in run.output, run.output[-3000:]


# A run's arguments: an AMI id of AWS's form (no such AMI: for runs that stop
# before a launch template uses it, as the pre-flight's refusals do)
ANY_AMI = ("-e", "aws_launch_templates_ami_id=ami-0123456789abcdef0")


def certificate(arn: str) -> tuple[str, str]:
    """A run's argument: the external ALB's certificate (HTTPS)."""
    return ("-e", f"aws_load_balancers_certificate_arn={arn}")


def assert_https_with_redirect(
    elb, lb_arn: str, certificate_arn: str, web_group_arn: str, origin_header: dict | None = None
):
    """The external balancer serves HTTPS on 443 (the certificate, a TLS
    1.3/1.2 policy, forwarding to web) and answers HTTP on 80 with a
    permanent redirect to it; its listeners by port. With ``origin_header``
    ({header, value}: CloudFront in front), 443 forwards only what carries
    that header and answers anything else 403 in the API's error shape."""
    listeners = {x["Port"]: x for x in elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]}
    assert set(listeners) == {80, 443}
    (redirect,) = listeners[80]["DefaultActions"]
    assert (listeners[80]["Protocol"], redirect["Type"]) == ("HTTP", "redirect")
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [certificate_arn]
    (default,) = https["DefaultActions"]
    rules = [
        r
        for r in elb.describe_rules(ListenerArn=https["ListenerArn"])["Rules"]
        if not r["IsDefault"]
    ]
    if origin_header is None:
        assert default["TargetGroupArn"] == web_group_arn
        assert rules == []
        return listeners
    assert default["Type"] == "fixed-response"
    fixed = default["FixedResponseConfig"]
    assert (fixed["StatusCode"], fixed["ContentType"]) == ("403", "application/json")
    assert json.loads(fixed["MessageBody"])["error"]["status"] == 403
    (rule,) = rules
    assert rule["Priority"] == "1"
    (condition,) = rule["Conditions"]
    assert condition["Field"] == "http-header"
    assert condition["HttpHeaderConfig"] == {
        "HttpHeaderName": origin_header["header"], "Values": [origin_header["value"]],
    }  # fmt: skip
    (forward,) = rule["Actions"]
    assert (forward["Type"], forward["TargetGroupArn"]) == ("forward", web_group_arn)
    return listeners


# The whole control plane as the production environment: the real
# production inventory (inventories/production: its group_vars, production's
# profile, one NAT gateway per AZ, the interface endpoints, eu-west-1 and its
# EC2 inventory) against the session's moto. Only what an operator must set
# there differs: the emulator (its switch, the local inventory's file, as
# extra vars), the buckets' names (the shipped ones are placeholders the
# pre-flight refuses) and the site's name and hosted zone (the kit requests
# its certificate from ACM and validates it there).
PRODUCTION_REGION = "eu-west-1"
PRODUCTION = "threetier-production"
PRODUCTION_INVENTORY = "inventories/production"
EMULATOR = ("-e", EMULATOR_VARS)
PRODUCTION_ARTIFACTS = "threetier-production-test-artifacts"
PRODUCTION_SSM_BUCKET = "threetier-production-test-ssm"
# A certificate of the operator's own, given by ARN (the pre-flight's tests):
# an IAM server certificate, which an ALB takes as it takes an ACM one, and
# whose ARN is known before the session's moto exists (an ACM ARN carries a
# random id). test_provision_staging gives a balancer an ACM certificate.
PRODUCTION_CERTIFICATE = "arn:aws:iam::123456789012:server-certificate/threetier-production-test"
# The site's name and its public hosted zone: the zone is the operator's
# (made by the production fixture, as an operator's registrar and Route 53
# would have it); the kit writes the certificate's validation records there.
PRODUCTION_ZONE = "threetier-production.example"
PRODUCTION_SITE = f"www.{PRODUCTION_ZONE}"
PRODUCTION_EXTRA = (
    *EMULATOR,
    "-e",
    f"aws_artifacts_bucket_name={PRODUCTION_ARTIFACTS}",
    "-e",
    f"ansible_aws_ssm_bucket_name={PRODUCTION_SSM_BUCKET}",
    # production serves HTTPS (the pre-flight refuses it without a certificate):
    # the kit requests the site's certificate and validates it in its zone
    "-e",
    f"threetier_site_name={PRODUCTION_SITE}",
    "-e",
    f"threetier_site_zone={PRODUCTION_ZONE}",
)


def production_playbook(kit: Kit, playbook: str, *more: str) -> Run:
    """A kit playbook on the production inventory, against the session's moto."""
    return kit.playbook(playbook, *PRODUCTION_EXTRA, *more, inventory=PRODUCTION_INVENTORY)


@dataclass
class Provisioned:
    run: Run
    # every request moto recorded during the run (JSON lines)
    recording: str


@pytest.fixture(scope="session")
def production(kit, moto) -> Provisioned:
    """site.yml run once as production, moto's recorder on meanwhile:
    test_provision checks what it made (then changes and tears it down),
    test_diagram draws it and checks every recorded call against the
    operator's IAM policy."""
    moto.client("route53", PRODUCTION_REGION).create_hosted_zone(
        Name=PRODUCTION_ZONE, CallerReference="threetier-production-test"
    )
    run = production_playbook(kit, "site.yml")  # recorded, as every kit playbook
    assert run.rc == 0, run.output[-6000:] + "\n" + moto.log_tail()
    return Provisioned(run=run, recording=run.recording)
