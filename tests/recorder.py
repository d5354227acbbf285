"""Every run of a kit playbook (playbooks/*.yml) against the session's moto is
recorded: the API calls moto saw meanwhile (its recorder) and, just before and
after, what the evaluator of tests/iam_policies.py needs to judge them (EC2
tags, route-table associations, launch-template names, image owners and the
kit's roles' permissions boundaries, in the run's region). conftest's Kit
does it; tests/test_iam_calls.py and tests/test_diagram.py check the calls
against the operator's IAM policy.

Calls other threads of the test make during a run (e.g. test_immutable's
capacity watch) are recorded too: they are Describe calls, granted anyway."""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from iam_policies import Snapshot, recorded_requests

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RecordedRun:
    playbook: str
    args: list[str]
    inventory: str
    region: str
    emulator: bool  # the run took the kit's emulator paths (aws_emulator)
    rc: int = -1
    recording: str = ""
    before: Snapshot = field(default_factory=Snapshot)
    after: Snapshot = field(default_factory=Snapshot)


# every recorded run of the session, in order
RUNS: list[RecordedRun] = []

# What the callers that are not the operator put in their User-Agent: the
# local controller (scripts/local_controller.py, EC2's own work on AWS) and
# taskboard on the instances (its secret, with the instance role on AWS).
NOT_THE_OPERATOR = ("threetier-local-controller", "taskboard/")


def operator_calls(recording: str) -> str:
    """The lines of a recording of the local fleet's emulator that the
    operator's run made: the controller and the instances call it too,
    each naming itself in its User-Agent."""
    kept = []
    for line in recording.splitlines():
        if line.strip():
            headers = {k.lower(): v for k, v in json.loads(line)["headers"].items()}
            agent = headers.get("user-agent", "")
            if not any(marker in agent for marker in NOT_THE_OPERATOR):
                kept.append(line)
    return "\n".join(kept)


def _api(moto, path: str) -> bytes:
    req = urllib.request.Request(moto.url + path, method="POST", data=b"")  # noqa: S310 (loopback)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
        return resp.read()


# The local inventory's emulator switch (aws_emulator), which the tests also
# pass as extra vars to run the real inventories against moto
EMULATOR_VARS = "@inventories/local/group_vars/aws_control/emulator.yml"


def takes_emulator_paths(inventory: str, extra: tuple[str, ...]) -> bool:
    """Whether the run took the kit's emulator paths (aws_emulator true): the
    local inventory unless told otherwise, or another with the switch's file."""
    if "aws_emulator=false" in extra:
        return False
    return inventory == "inventories/local" or EMULATOR_VARS in extra


def run_region(inventory: str, extra: tuple[str, ...]) -> str:
    for value in extra:
        m = re.fullmatch(r"aws_region=(\S+)", value)
        if m:
            return m.group(1)
    main = ROOT / inventory / "group_vars" / "aws_control" / "main.yml"
    if main.exists():
        return (yaml.safe_load(main.read_text(encoding="utf-8")) or {}).get(
            "aws_region", "us-east-1"
        )
    return "us-east-1"


def snapshot(moto, region: str, image_ids: set[str] = frozenset()) -> Snapshot:
    ec2, iam = moto.client("ec2", region), moto.client("iam", region)
    snap = Snapshot()
    for page in ec2.get_paginator("describe_tags").paginate():
        for t in page["Tags"]:
            snap.tags.setdefault(t["ResourceId"], {})[t["Key"]] = t["Value"]
    for table in ec2.describe_route_tables()["RouteTables"]:
        for a in table.get("Associations", []):
            ids = [table["RouteTableId"]] + ([a["SubnetId"]] if a.get("SubnetId") else [])
            snap.associations[a["RouteTableAssociationId"]] = ids
    for lt in ec2.describe_launch_templates()["LaunchTemplates"]:
        snap.launch_templates[lt["LaunchTemplateName"]] = lt["LaunchTemplateId"]
    # every EC2 resource of the kinds the kit acts on, tagged or not
    listings = [
        ("describe_vpcs", "Vpcs", "VpcId", {}),
        ("describe_subnets", "Subnets", "SubnetId", {}),
        ("describe_security_groups", "SecurityGroups", "GroupId", {}),
        ("describe_route_tables", "RouteTables", "RouteTableId", {}),
        ("describe_internet_gateways", "InternetGateways", "InternetGatewayId", {}),
        ("describe_nat_gateways", "NatGateways", "NatGatewayId", {}),
        ("describe_vpc_endpoints", "VpcEndpoints", "VpcEndpointId", {}),
        ("describe_launch_templates", "LaunchTemplates", "LaunchTemplateId", {}),
        ("describe_images", "Images", "ImageId", {"Owners": ["self"]}),
        ("describe_snapshots", "Snapshots", "SnapshotId", {"OwnerIds": ["self"]}),
        ("describe_addresses", "Addresses", "AllocationId", {}),
    ]
    for call, key, id_key, kwargs in listings:
        snap.existing.update(x[id_key] for x in getattr(ec2, call)(**kwargs)[key])
    for r in ec2.describe_instances()["Reservations"]:
        snap.existing.update(i["InstanceId"] for i in r["Instances"])
    if image_ids:
        try:
            images = ec2.describe_images(ImageIds=sorted(image_ids))["Images"]
        except ec2.exceptions.ClientError:
            images = []
        for image in images:
            snap.image_owners[image["ImageId"]] = image["OwnerId"]
    # the run's region and us-east-1, where CloudFront's copy of the
    # certificate lives (roles/aws_certificate)
    for acm_region in dict.fromkeys((region, "us-east-1")):
        acm = moto.client("acm", acm_region)
        for cert in acm.list_certificates()["CertificateSummaryList"]:
            arn = cert["CertificateArn"]
            tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            snap.certificate_tags[arn] = {t["Key"]: t.get("Value", "") for t in tags}
    for role in iam.list_roles()["Roles"]:
        if role["RoleName"].startswith("threetier-"):
            got = iam.get_role(RoleName=role["RoleName"])["Role"]
            snap.role_boundaries[role["RoleName"]] = got.get("PermissionsBoundary", {}).get(
                "PermissionsBoundaryArn", ""
            )
    return snap


class Recording:
    """Context manager around one playbook run."""

    def __init__(self, moto, playbook: str, inventory: str, extra: tuple[str, ...]):
        self.moto = moto
        self.run = RecordedRun(
            playbook=playbook,
            args=list(extra),
            inventory=inventory,
            region=run_region(inventory, extra),
            emulator=takes_emulator_paths(inventory, extra),
        )

    def __enter__(self) -> RecordedRun:
        self.run.before = snapshot(self.moto, self.run.region)
        _api(self.moto, "/moto-api/recorder/reset-recording")
        _api(self.moto, "/moto-api/recorder/start-recording")
        return self.run

    def __exit__(self, *exc) -> None:
        _api(self.moto, "/moto-api/recorder/stop-recording")
        self.run.recording = (
            urllib.request.urlopen(  # noqa: S310 (loopback)
                self.moto.url + "/moto-api/recorder/download-recording", timeout=30
            )
            .read()
            .decode()
        )
        images = {
            v
            for r in recorded_requests(self.run.recording)
            if r.action == "ec2:RunInstances"
            for k, v in r.params.items()
            if k == "ImageId"
        }
        self.run.after = snapshot(self.moto, self.run.region, images)
        RUNS.append(self.run)
