#!/usr/bin/env python3
"""Draw threetier as it is deployed, read from the live environment.

Reads the AWS APIs through boto3 (the emulator when AWS_ENDPOINT_URL is set,
as for `make diagram` on the local environment) and, when podman has them,
the local fleet's containers (label fleet=local). Draws: the VPC's subnets by
availability zone and tier, both load balancers with their listeners and
target groups, the Auto Scaling groups with their instances and the release
each runs, the security-group edges with their ports (who may talk to whom),
and the database. Writes DOT and renders SVG and PNG with graphviz's `dot`.

    python scripts/diagram.py [--region R] [--prefix threetier-local] [--out-dir DIR] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import boto3

TIER_COLORS = {"public": "#e8f1fb", "app": "#eef7ea", "db": "#fdf1e4"}
KIND_STYLE = {
    "alb": 'shape=box, style="rounded,filled", fillcolor="#ffd8a8"',
    "asg": 'shape=box3d, style="filled", fillcolor="#d0ebff"',
    "instance": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "db": 'shape=cylinder, style="filled", fillcolor="#e5dbff"',
    "standby": 'shape=cylinder, style="dashed,filled", fillcolor="#f3f0ff"',
    "internet": 'shape=ellipse, style="filled", fillcolor="#f1f3f5"',
    "container": 'shape=box, style="rounded,filled", fillcolor="#fff9db"',
}


@dataclass
class Graph:
    title: str
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (kind, label)
    placed: dict[str, str] = field(default_factory=dict)  # node id -> subnet id
    subnets: dict[str, dict] = field(default_factory=dict)  # subnet id -> {name, az, tier, cidr}
    edges: list[tuple[str, str, str, str]] = field(default_factory=list)  # a, b, label, style
    fleet: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # network -> nodes
    vpc_label: str = ""

    def node(self, nid: str, kind: str, label: str, subnet: str | None = None) -> str:
        self.nodes[nid] = (kind, label)
        if subnet:
            self.placed[nid] = subnet
        return nid


def q(text: str) -> str:
    # labels carry DOT's own "\n" line breaks: only quotes are escaped
    return '"' + str(text).replace('"', '\\"') + '"'


def tags_of(item: dict, key: str = "Tags") -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get(key, []) or []}


def port_label(perm: dict) -> str:
    proto = perm.get("IpProtocol", "-1")
    if proto == "-1":
        return "all"
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    return f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}"


# ----------------------------------------------------------------- AWS side


def read_aws(graph: Graph, session: boto3.session.Session, prefix: str) -> None:
    ec2 = session.client("ec2")
    elb = session.client("elbv2")
    asg_client = session.client("autoscaling")
    rds = session.client("rds")

    all_vpcs = ec2.describe_vpcs()["Vpcs"]
    # the environment's own VPC (<prefix>-vpc), else any whose name starts with the prefix
    vpcs = [v for v in all_vpcs if tags_of(v).get("Name") == f"{prefix}-vpc"] or [
        v for v in all_vpcs if tags_of(v).get("Name", "").startswith(prefix)
    ]
    if not vpcs:
        raise SystemExit(f"diagram: no VPC named {prefix}* in {session.region_name}")
    if len(vpcs) > 1:
        names = sorted(tags_of(v).get("Name", v["VpcId"]) for v in vpcs)
        raise SystemExit(f"diagram: several VPCs match {prefix}*: {names}; give --prefix")
    vpc = vpcs[0]
    vid = vpc["VpcId"]
    vname = tags_of(vpc).get("Name", vid)
    base = vname.removesuffix("-vpc")
    graph.vpc_label = f"VPC {vname}\\n{vpc['CidrBlock']} ({vid})"
    vf = [{"Name": "vpc-id", "Values": [vid]}]

    for s in ec2.describe_subnets(Filters=vf)["Subnets"]:
        name = tags_of(s).get("Name", s["SubnetId"]).removeprefix(base + "-")
        tier = name.rsplit("-", 1)[0] if "-" in name else name
        graph.subnets[s["SubnetId"]] = {
            "name": name,
            "az": s["AvailabilityZone"],
            "tier": tier,
            "cidr": s["CidrBlock"],
        }

    owners: dict[str, list[str]] = defaultdict(list)  # security group -> component nodes

    # load balancers, listeners, target groups
    tg_lb: dict[str, str] = {}
    tg_info: dict[str, dict] = {}
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        if lb.get("VpcId") != vid:
            continue
        listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        ports = ", ".join(f"{x['Protocol']}:{x['Port']}" for x in listeners) or "no listener"
        subnets = sorted(
            graph.subnets.get(z["SubnetId"], {}).get("name", z["SubnetId"])
            for z in lb.get("AvailabilityZones", [])
        )
        nid = graph.node(
            f"lb_{lb['LoadBalancerName']}",
            "alb",
            f"ALB {lb['LoadBalancerName']}\\n{lb['Scheme']}, {ports}"
            f"\\nsubnets: {', '.join(subnets)}",
        )
        for sg in lb.get("SecurityGroups", []):
            owners[sg].append(nid)
        for tg in elb.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]:
            tg_lb[tg["TargetGroupArn"]] = nid
            tg_info[tg["TargetGroupArn"]] = tg

    # Auto Scaling groups and their instances
    groups = [
        g
        for g in asg_client.describe_auto_scaling_groups()["AutoScalingGroups"]
        if set(filter(None, g.get("VPCZoneIdentifier", "").split(","))) & set(graph.subnets)
    ]
    instance_ids = [i["InstanceId"] for g in groups for i in g.get("Instances", [])]
    described = {}
    if instance_ids:
        for r in ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]:
            for i in r["Instances"]:
                described[i["InstanceId"]] = i
    for g in groups:
        gtags = tags_of(g)
        lt = g.get("LaunchTemplate") or (g.get("MixedInstancesPolicy") or {}).get(
            "LaunchTemplate", {}
        ).get("LaunchTemplateSpecification", {})
        lt_name = lt.get("LaunchTemplateName", "")
        version = lt.get("Version", "$Default")
        release = gtags.get("Release", "")
        sgs: list[str] = []
        if lt_name:
            versions = ec2.describe_launch_template_versions(
                LaunchTemplateName=lt_name, Versions=[version]
            )["LaunchTemplateVersions"]
            if versions:
                data = versions[0]["LaunchTemplateData"]
                version = str(versions[0]["VersionNumber"])
                sgs = list(data.get("SecurityGroupIds", []))
                for ni in data.get("NetworkInterfaces", []):
                    sgs.extend(ni.get("Groups", []))
                release = release or tags_of(
                    {"Tags": [t for s in data.get("TagSpecifications", []) for t in s["Tags"]]}
                ).get("Release", "")
        label = (
            f"ASG {g['AutoScalingGroupName']}\\n"
            f"{g['MinSize']} <= {g['DesiredCapacity']} <= {g['MaxSize']}, "
            f"launch template {lt_name} v{version}" + (f"\\nrelease {release}" if release else "")
        )
        gid = graph.node(f"asg_{g['AutoScalingGroupName']}", "asg", label)
        for sg in sgs:
            owners[sg].append(gid)
        for tg_arn in g.get("TargetGroupARNs", []):
            if tg_arn in tg_lb:
                tg = tg_info[tg_arn]
                graph.edges.append(
                    (
                        tg_lb[tg_arn],
                        gid,
                        f"target group {tg['TargetGroupName']}\\n{tg['Protocol']}:{tg['Port']}",
                        "solid",
                    )
                )
        for inst in g.get("Instances", []):
            iid = inst["InstanceId"]
            info = described.get(iid, {})
            itags = tags_of(info)
            irelease = itags.get("Release", release)
            label = (
                f"{iid}\\n{info.get('PrivateIpAddress', '')} {inst['AvailabilityZone']}\\n"
                f"{inst['LifecycleState']}, {inst['HealthStatus']}, "
                f"lt v{(inst.get('LaunchTemplate') or {}).get('Version', '?')}"
                + (f"\\nrelease {irelease}" if irelease else "")
            )
            nid = graph.node(f"i_{iid}", "instance", label, info.get("SubnetId"))
            graph.edges.append((gid, nid, "", "dotted"))

    # the database (and its Multi-AZ standby)
    for db in rds.describe_db_instances()["DBInstances"]:
        group = db.get("DBSubnetGroup") or {}
        if group.get("VpcId") != vid:
            continue
        in_group = [s["SubnetIdentifier"] for s in group.get("Subnets", [])]

        def subnet_in(az: str, candidates=in_group) -> str | None:
            return next((s for s in candidates if graph.subnets.get(s, {}).get("az") == az), None)

        endpoint = (db.get("Endpoint") or {}).get("Address", "")
        port = (db.get("Endpoint") or {}).get("Port", "")
        nid = graph.node(
            f"db_{db['DBInstanceIdentifier']}",
            "db",
            f"RDS {db['DBInstanceIdentifier']}\\n{db['Engine']} {db.get('EngineVersion', '')}, "
            f"{db['DBInstanceClass']}\\n{endpoint}:{port}"
            + ("\\nMulti-AZ primary" if db.get("MultiAZ") else ""),
            subnet_in(db.get("AvailabilityZone", "")),
        )
        for sg in db.get("VpcSecurityGroups", []):
            owners[sg["VpcSecurityGroupId"]].append(nid)
        standby_az = db.get("SecondaryAvailabilityZone")
        if db.get("MultiAZ") and standby_az:
            sid = graph.node(
                f"dbs_{db['DBInstanceIdentifier']}",
                "standby",
                f"standby\\n{standby_az}",
                subnet_in(standby_az),
            )
            graph.edges.append((nid, sid, "sync", "dashed"))

    # security-group edges: who may open connections to whom, on which port
    for sg in ec2.describe_security_groups(Filters=vf)["SecurityGroups"]:
        targets = owners.get(sg["GroupId"], [])
        for perm in sg.get("IpPermissions", []):
            ports = port_label(perm)
            for pair in perm.get("UserIdGroupPairs", []):
                for src in owners.get(pair["GroupId"], []):
                    for dst in targets:
                        graph.edges.append((src, dst, f"SG {ports}", "bold"))
            for rng in perm.get("IpRanges", []) + perm.get("Ipv6Ranges", []):
                cidr = rng.get("CidrIp") or rng.get("CidrIpv6")
                if cidr in ("0.0.0.0/0", "::/0") and targets:
                    graph.node("internet", "internet", "internet")
                    for dst in targets:
                        graph.edges.append(("internet", dst, f"SG {ports} from {cidr}", "bold"))


# ----------------------------------------------------------------- podman side


def read_fleet(graph: Graph) -> None:
    podman = shutil.which("podman")
    if not podman:
        return
    proc = subprocess.run(
        [podman, "ps", "--filter", "label=fleet=local", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return
    containers = json.loads(proc.stdout) or []
    names = [c["Names"][0] for c in containers]
    if not names:
        return
    inspect = subprocess.run(
        [podman, "inspect", *names],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    details = {d["Name"].lstrip("/"): d for d in json.loads(inspect.stdout or "[]")}
    for name in sorted(names):
        d = details.get(name, {})
        labels = (d.get("Config") or {}).get("Labels") or {}
        release = labels.get("threetier.release", "")
        if labels.get("role") == "app":
            # the release it runs now (a rolling release changes it in place)
            cur = subprocess.run(
                [podman, "exec", name, "readlink", "/opt/taskboard/current"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if cur.returncode == 0 and cur.stdout.strip():
                release = Path(cur.stdout.strip()).name
        nets = ((d.get("NetworkSettings") or {}).get("Networks") or {}).items()
        addrs = ", ".join(f"{n} {v.get('IPAddress', '')}" for n, v in sorted(nets))
        label = f"{name}\\nrole {labels.get('role', '?')}" + (
            f", release {release}" if release else ""
        )
        label += f"\\n{addrs}" if addrs else ""
        first_net = sorted(n for n, _ in nets)[0] if nets else "no network"
        graph.fleet.setdefault(first_net, []).append((f"c_{name}", label))


# ----------------------------------------------------------------- DOT


def ident(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def to_dot(graph: Graph) -> str:
    out = [
        "digraph threetier {",
        f"  label={q(graph.title)}; labelloc=t; fontname=Helvetica; fontsize=18;",
        "  rankdir=LR; compound=true; newrank=true; nodesep=0.3; ranksep=0.6;",
        "  node [fontname=Helvetica, fontsize=10];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    if "internet" in graph.nodes:
        out.append(f'  internet [label="internet", {KIND_STYLE["internet"]}];')
    out.append("  subgraph cluster_vpc {")
    out.append(f'    label={q(graph.vpc_label)}; style=rounded; color="#495057";')
    # the components that span subnets (load balancers, groups) sit in the VPC
    for nid, (kind, label) in sorted(graph.nodes.items()):
        if nid != "internet" and nid not in graph.placed:
            out.append(f"    {ident(nid)} [label={q(label)}, {KIND_STYLE[kind]}];")
    by_az: dict[str, list[str]] = defaultdict(list)
    for sid, s in graph.subnets.items():
        by_az[s["az"]].append(sid)
    tier_order = {"public": 0, "app": 1, "db": 2}
    for az in sorted(by_az):
        out.append(f"    subgraph cluster_{ident(az)} {{")
        out.append(f'      label={q("AZ " + az)}; style=dashed; color="#868e96";')
        for sid in sorted(
            by_az[az],
            key=lambda x: (tier_order.get(graph.subnets[x]["tier"], 9), graph.subnets[x]["name"]),
        ):
            s = graph.subnets[sid]
            out.append(f"      subgraph cluster_{ident(sid)} {{")
            out.append(
                f"        label={q(s['tier'] + ' subnet ' + s['name'] + '  ' + s['cidr'])};"
                f" style=filled; fillcolor={q(TIER_COLORS.get(s['tier'], '#f8f9fa'))};"
                ' color="#adb5bd";'
            )
            out.append(f"        {ident('anchor_' + sid)} [shape=point, style=invis];")
            for nid, where in sorted(graph.placed.items()):
                if where == sid:
                    kind, label = graph.nodes[nid]
                    out.append(f"        {ident(nid)} [label={q(label)}, {KIND_STYLE[kind]}];")
            out.append("      }")
        out.append("    }")
    out.append("  }")
    if graph.fleet:
        out.append("  subgraph cluster_fleet {")
        out.append('    label="local fleet (podman, label fleet=local)"; style=rounded;')
        for net, nodes in sorted(graph.fleet.items()):
            out.append(f"    subgraph cluster_net_{ident(net)} {{")
            out.append(f"      label={q('network ' + net)}; style=dashed;")
            for nid, label in nodes:
                out.append(f"      {ident(nid)} [label={q(label)}, {KIND_STYLE['container']}];")
            out.append("    }")
        out.append("  }")
    # one edge per pair and kind; the ports of several rules in one label
    merged: dict[tuple[str, str, str], list[str]] = {}
    for a, b, label, style in graph.edges:
        labels = merged.setdefault((a, b, style), [])
        if label and label not in labels:
            labels.append(label)
    # a target group and the security group behind it: one edge, both labels
    for a, b, style in [k for k in merged if k[2] == "solid"]:
        if (a, b, "bold") in merged:
            merged[(a, b, "bold")] = merged.pop((a, b, style)) + merged[(a, b, "bold")]
    for (a, b, style), labels in merged.items():
        attrs = [f"style={style}"]
        if labels:
            text = labels[0]
            sg_labels = [x for x in labels if x.startswith("SG ")]
            other = [x for x in labels if not x.startswith("SG ")]
            if style == "bold" and other:
                text = "\\n".join([*other, *sg_labels])
            elif style == "bold" and len(labels) > 1:
                # "SG tcp/80 from X" + "SG tcp/443 from X" -> "SG tcp/80, tcp/443 from X"
                ports = [x.removeprefix("SG ").split(" from ")[0] for x in labels]
                suffix = labels[0].partition(" from ")[2]
                text = "SG " + ", ".join(ports) + (f" from {suffix}" if suffix else "")
            attrs.append(f"label={q(text)}")
        if style == "bold":
            attrs.append('color="#c92a2a"')
            attrs.append('fontcolor="#c92a2a"')
        if style == "dotted":
            attrs.append("arrowhead=none")
        out.append(f"  {ident(a)} -> {ident(b)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot_file: Path, formats: list[str]) -> list[Path]:
    dot = shutil.which("dot")
    if not dot:
        raise SystemExit("diagram: graphviz's `dot` is missing (make setup installs graphviz)")
    outputs = []
    for fmt in formats:
        target = dot_file.with_suffix("." + fmt)
        subprocess.run([dot, f"-T{fmt}", "-o", str(target), str(dot_file)], check=True, timeout=120)
        outputs.append(target)
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    parser.add_argument(
        "--prefix",
        default="threetier-",
        help="the environment's name prefix (threetier-<environment>); its VPC is <prefix>-vpc",
    )
    parser.add_argument("--out-dir", default="build/diagram", type=Path)
    parser.add_argument("--name", default="architecture")
    parser.add_argument("--formats", default="svg,png")
    parser.add_argument("--no-fleet", action="store_true", help="leave the podman fleet out")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    where = f"emulator {endpoint}" if endpoint else f"AWS {args.region}"
    graph = Graph(title=f"threetier as deployed ({where})")
    read_aws(graph, session, args.prefix)
    if not args.no_fleet:
        read_fleet(graph)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    dot_file = args.out_dir / f"{args.name}.dot"
    dot_file.write_text(to_dot(graph), encoding="utf-8")
    outputs = render(dot_file, [f for f in args.formats.split(",") if f])
    for path in [dot_file, *outputs]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
