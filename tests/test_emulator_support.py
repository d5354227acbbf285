"""The shared world of the emulator's own tests (tests/test_emulator_*.py).

No tests here: the emulator servers (one with the data-plane mode, one
without, each started once per test session the way tests/motoserver.py
starts the kit's), a small VPC world built with boto3 (two subnets in two
AZs, launch templates whose versions differ by image, target groups, Auto
Scaling groups), bounded waits, and a player of the data plane (the tests
report target health themselves, as the controller's HAProxy checks would:
the real data plane is tested elsewhere).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from motoserver import Moto, moto_server

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b")
DATA_PLANE_ENV = "THREETIER_EMULATOR_DATA_PLANE"
ACTIVE = ("Pending", "InProgress", "Baking", "Cancelling", "RollbackInProgress")
#: Seconds within which the emulator's loop (a tick a second) must have acted:
#: a few ticks, with room for a busy machine (only a failure waits that long).
LOOP = 8

_SERVERS: dict[tuple[bool, tuple[tuple[str, str], ...]], Moto] = {}


def emulator(
    tmp_path_factory: Any, data_plane: bool, extra_env: dict[str, str] | None = None
) -> Moto:
    """The session's emulator of that mode (and ``extra_env``): started on
    first use, stopped when the test process exits (shared by the emulator's
    test modules)."""
    key = (data_plane, tuple(sorted((extra_env or {}).items())))
    if key not in _SERVERS:
        stack = contextlib.ExitStack()
        workdir = tmp_path_factory.mktemp("emulator-data-plane" if data_plane else "emulator")
        _SERVERS[key] = stack.enter_context(
            moto_server(
                workdir / "moto.log",
                cwd=workdir,
                env={DATA_PLANE_ENV: "1" if data_plane else "0", **(extra_env or {})},
            )
        )
        atexit.register(stack.close)
    return _SERVERS[key]


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    moto: Moto,
    interval: float = 0.2,
    show: Callable[[], Any] | None = None,
) -> Any:
    """``check()``'s first truthy value, polled every ``interval`` s; an
    AssertionError naming ``what`` (with ``show()`` and the emulator's log)
    when none within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"\nlast seen: {show()!r}" if show else ""
            raise AssertionError(
                f"{what}: not within {timeout} s{seen}\n--- emulator log ---\n{moto.log_tail(40)}"
            )
        time.sleep(interval)


class World:
    """A VPC with a subnet in each of two AZs, and builders around it."""

    def __init__(self, moto: Moto) -> None:
        self.moto = moto
        self.ec2 = moto.client("ec2", REGION)
        self.asg = moto.client("autoscaling", REGION)
        self.elb = moto.client("elbv2", REGION)
        self.iam = moto.client("iam", REGION)
        self.tag = uuid.uuid4().hex[:8]
        self.vpc = self.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [
            self.ec2.create_subnet(
                VpcId=self.vpc, CidrBlock=f"10.20.{i + 1}.0/24", AvailabilityZone=zone
            )["Subnet"]["SubnetId"]
            for i, zone in enumerate(ZONES)
        ]
        self.sg = self.ec2.create_security_group(
            GroupName=f"sg-{self.tag}", Description="emulator test", VpcId=self.vpc
        )["GroupId"]
        self.images: dict[int, str] = {}
        self.template_id = ""

    # ------------------------------------------------------------ builders

    def image(self, version: int) -> str:
        """A distinct image id per launch-template version (the image tells
        which version an instance was launched from)."""
        return f"ami-{self.tag}{version:04d}"

    def version_data(self, version: int, **extra: Any) -> dict[str, Any]:
        return {
            "ImageId": self.image(version),
            "InstanceType": "t3.micro",
            "UserData": base64.b64encode(f"#!/bin/sh\necho v{version}\n".encode()).decode(),
            "SecurityGroupIds": [self.sg],
            **extra,
        }

    def template(self, versions: int = 2, **extra: Any) -> str:
        """A launch template with ``versions`` versions (default stays 1)."""
        self.template_id = self.ec2.create_launch_template(
            LaunchTemplateName=f"lt-{self.tag}", LaunchTemplateData=self.version_data(1, **extra)
        )["LaunchTemplate"]["LaunchTemplateId"]
        self.images[1] = self.image(1)
        for version in range(2, versions + 1):
            self.add_version(version, **extra)
        return self.template_id

    def add_version(self, version: int, **extra: Any) -> None:
        self.ec2.create_launch_template_version(
            LaunchTemplateId=self.template_id,
            LaunchTemplateData=self.version_data(version, **extra),
        )
        self.images[version] = self.image(version)

    def target_group(self, delay: int = 2, name: str = "tg") -> str:
        arn = self.elb.create_target_group(
            Name=f"{name}-{self.tag}", Protocol="HTTP", Port=5000, VpcId=self.vpc
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}],
        )
        return arn

    def group(
        self,
        *,
        version: str | None = "1",
        desired: int = 2,
        min_size: int = 0,
        max_size: int = 8,
        target_groups: Iterable[str] = (),
        grace: int = 2,
        health_check_type: str = "ELB",
        name: str = "asg",
    ) -> str:
        if not self.template_id:
            self.template()
        spec = {"LaunchTemplateId": self.template_id}
        if version is not None:
            spec["Version"] = version
        group_name = f"{name}-{self.tag}"
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=group_name,
            LaunchTemplate=spec,
            MinSize=min_size,
            MaxSize=max_size,
            DesiredCapacity=desired,
            VPCZoneIdentifier=",".join(self.subnets),
            TargetGroupARNs=list(target_groups),
            HealthCheckType=health_check_type,
            HealthCheckGracePeriod=grace,
        )
        return group_name

    # ------------------------------------------------------------ reading

    def describe(self, name: str) -> dict[str, Any]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return groups["AutoScalingGroups"][0] if groups["AutoScalingGroups"] else {}

    def instances(self, name: str, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(states) if states is not None else None
        return [
            i
            for i in self.describe(name).get("Instances", [])
            if wanted is None or i["LifecycleState"] in wanted
        ]

    def in_service(self, name: str) -> list[dict[str, Any]]:
        return self.instances(name, ["InService"])

    def ec2_instances(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        reservations = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}

    def images_of(self, ids: Iterable[str]) -> dict[str, str]:
        return {k: v["ImageId"] for k, v in self.ec2_instances(ids).items()}

    def health(self, arn: str, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Target id -> TargetHealth (every listed target, or those asked by id)."""
        kwargs: dict[str, Any] = {"TargetGroupArn": arn}
        if ids is not None:
            kwargs["Targets"] = [{"Id": i} for i in ids]
        listing = self.elb.describe_target_health(**kwargs)["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"] for d in listing}

    def refresh(self, name: str, refresh_id: str) -> dict[str, Any]:
        return self.asg.describe_instance_refreshes(
            AutoScalingGroupName=name, InstanceRefreshIds=[refresh_id]
        )["InstanceRefreshes"][0]

    def wait_refresh(
        self,
        name: str,
        refresh_id: str,
        timeout: float,
        statuses: Iterable[str] | None = None,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The refresh once its status is in ``statuses`` (default: any end)
        and ``until(refresh)`` holds."""
        wanted = set(statuses) if statuses is not None else None
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            last.clear()
            last.update(self.refresh(name, refresh_id))
            done = last["Status"] in wanted if wanted else last["Status"] not in ACTIVE
            return dict(last) if done and (until is None or until(last)) else None

        return wait_for(
            check, timeout, f"instance refresh {statuses or 'end'}", self.moto, show=lambda: last
        )

    # ------------------------------------------------------------ data plane

    def post(self, path: str, body: bytes | None = None, method: str = "POST") -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 (the emulator on loopback)
            self.moto.url + path, data=body, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def report(self, *reports: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.post(
            "/_threetier/target-health", json.dumps({"reports": list(reports)}).encode()
        )
        assert status == 200, (status, answer)
        return answer


def report(arn: str, target_id: str, state: str, port: int = 5000, **extra: Any) -> dict[str, Any]:
    return {"target_group_arn": arn, "id": target_id, "port": port, "state": state, **extra}


class Player:
    """Plays the data plane in a thread: every ``interval`` s, each target of
    ``target_groups`` still ``initial`` is reported ``healthy``, or
    ``unhealthy`` when its instance runs an image of ``sick_images``; each
    draining target is reported ``drained`` when ``drain``. Bounded: stops on
    leaving the ``with`` or after ``limit`` seconds."""

    def __init__(
        self,
        world: World,
        target_groups: Iterable[str],
        *,
        sick_images: Iterable[str] = (),
        drain: bool = True,
        interval: float = 0.2,
        limit: float = 60,
    ) -> None:
        self.world = world
        self.target_groups = list(target_groups)
        self.sick_images = set(sick_images)
        self.drain = drain
        self.interval, self.limit = interval, limit
        self.reported: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._client = world.moto.client("elbv2", REGION)
        self._ec2 = world.moto.client("ec2", REGION)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            self.play()
            self._stop.wait(self.interval)

    def play(self) -> None:
        reports = []
        for arn in self.target_groups:
            listing = self._client.describe_target_health(TargetGroupArn=arn)
            targets = {
                d["Target"]["Id"]: d["TargetHealth"]["State"]
                for d in listing["TargetHealthDescriptions"]
            }
            if not targets:
                continue
            reservations = self._ec2.describe_instances(InstanceIds=list(targets))["Reservations"]
            images = {i["InstanceId"]: i["ImageId"] for r in reservations for i in r["Instances"]}
            for target_id, state in targets.items():
                if state == "draining" and self.drain:
                    reports.append(report(arn, target_id, "drained"))
                elif state in ("initial", "healthy", "unhealthy"):
                    sick = images.get(target_id) in self.sick_images
                    wanted = "unhealthy" if sick else "healthy"
                    if state != wanted:
                        extra = (
                            {"description": "Health checks failed with these codes: [500]"}
                            if sick
                            else {}
                        )
                        reports.append(report(arn, target_id, wanted, **extra))
        if reports:
            self.world.report(*reports)
            self.reported.extend(reports)

    def __enter__(self) -> Player:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Watch:
    """Polls a group in a thread while something runs: each observation's
    (instances counting toward capacity, desired capacity). Bounded."""

    def __init__(self, world: World, name: str, interval: float = 0.2, limit: float = 60) -> None:
        self.client = world.moto.client("autoscaling", REGION)
        self.name = name
        self.interval, self.limit = interval, limit
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            group = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])[
                "AutoScalingGroups"
            ][0]
            in_service = sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService")
            self.seen.append((in_service, group["DesiredCapacity"]))
            self._stop.wait(self.interval)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
