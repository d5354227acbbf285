"""The controller's view of the emulator: one snapshot per pass, and the pure
functions that turn it into what the data plane should be.

Why a snapshot: every decision of a pass (which containers, which servers,
which firewall rules) must come from the same instant of the emulator, so a
pass reads everything first (one set of describe calls) and then only works
on these frozen records. A part the emulator failed to answer is ``None``:
"unknown", never "empty", so that a failed call can never make the controller
remove what exists.

Everything below the readers is pure (no podman, no network): names, MAC
addresses, the hosts block, security-group members and resolved rules. The
unit tests (tests/test_controller_units.py) pin them.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Subnet:
    id: str
    vpc_id: str
    cidr: str
    az: str
    name: str  # the Name tag ("" when untagged)


@dataclass(frozen=True)
class Instance:
    id: str
    state: str  # pending | running | stopping | stopped | shutting-down | terminated
    subnet_id: str
    ip: str
    image_id: str
    security_groups: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]

    @property
    def live(self) -> bool:
        """Pending or running: an instance that has (or gets) a container."""
        return self.state in LIVE_STATES

    @property
    def auto_scaling_group(self) -> str:
        """The group that launched it ("" for a standalone instance)."""
        return dict(self.tags).get("aws:autoscaling:groupName", "")


LIVE_STATES = frozenset({"pending", "running"})


@dataclass(frozen=True)
class Permission:
    """One IpPermission of a security group, sources kept as the API has them."""

    protocol: str  # "tcp", "udp", "icmp", "-1", or a protocol number
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    vpc_id: str
    ingress: tuple[Permission, ...]
    egress: tuple[Permission, ...]


@dataclass(frozen=True)
class NetworkInterface:
    id: str
    subnet_id: str
    ip: str
    description: str
    groups: tuple[str, ...]
    instance_id: str  # "" when not attached to an instance


@dataclass(frozen=True)
class Action:
    """A listener's default action (only what HAProxy can stand in for)."""

    kind: str  # forward | redirect | fixed-response
    target_group_arn: str = ""
    redirect: tuple[tuple[str, str], ...] = ()
    fixed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Condition:
    """One condition of a listener rule: ``field`` (http-header, path-pattern,
    host-header, http-request-method) matches one of ``values`` (ALB's
    wildcards * and ?); ``header`` names the header of an http-header one."""

    field: str
    values: tuple[str, ...]
    header: str = ""


@dataclass(frozen=True)
class ListenerRule:
    """A listener's rule (not the default): its conditions all match, then
    its action applies; rules are tried by priority, lowest first."""

    priority: int
    conditions: tuple[Condition, ...]
    action: Action | None


@dataclass(frozen=True)
class Listener:
    arn: str
    port: int
    protocol: str
    action: Action | None
    certificates: tuple[str, ...] = ()  # HTTPS: the default certificate first
    ssl_policy: str = ""
    rules: tuple[ListenerRule, ...] = ()  # by priority


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    name: str
    dns_name: str
    scheme: str
    state: str
    subnets: tuple[str, ...]  # in the order of its availability zones
    security_groups: tuple[str, ...]
    idle_timeout: int
    listeners: tuple[Listener, ...]

    @property
    def internet_facing(self) -> bool:
        return self.scheme == "internet-facing"


@dataclass(frozen=True)
class HealthCheck:
    path: str = "/"
    port: str = "traffic-port"
    protocol: str = "HTTP"
    interval: int = 30
    timeout: int = 5
    healthy: int = 5
    unhealthy: int = 2
    matcher: str = "200"


@dataclass(frozen=True)
class Target:
    """A row of DescribeTargetHealth."""

    id: str
    port: int
    state: str  # initial | healthy | unhealthy | unused | draining | unavailable
    reason: str = ""


@dataclass(frozen=True)
class TargetGroup:
    arn: str
    name: str
    port: int
    protocol: str
    target_type: str
    health_check: HealthCheck
    slow_start: int
    deregistration_delay: int
    targets: tuple[Target, ...] | None  # None: its health could not be read

    @property
    def registered(self) -> tuple[Target, ...]:
        """Targets in service or on their way (a server each)."""
        return tuple(t for t in self.targets or () if t.state in REGISTERED_STATES)

    @property
    def draining(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets or () if t.state == "draining")


REGISTERED_STATES = frozenset({"initial", "healthy", "unhealthy"})


@dataclass(frozen=True)
class DbInstance:
    identifier: str
    address: str
    port: int
    security_groups: tuple[str, ...]


@dataclass
class World:
    """One pass's reading of the emulator. A part is None when it could not be
    read; ``errors`` says why (part -> message)."""

    subnets: dict[str, Subnet] | None = None
    vpc_cidrs: dict[str, tuple[str, ...]] | None = None
    instances: dict[str, Instance] | None = None
    local_images: dict[str, str] | None = None  # AMI id -> repo:tag (only those that name one)
    security_groups: dict[str, SecurityGroup] | None = None
    interfaces: dict[str, NetworkInterface] | None = None
    load_balancers: dict[str, LoadBalancer] | None = None
    target_groups: dict[str, TargetGroup] | None = None
    db_instances: dict[str, DbInstance] | None = None
    errors: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Reading the emulator (boto3)


@dataclass
class ImageCache:
    """AMI id -> local image. An AMI's LocalImage tag is written after the
    image is registered (playbooks/images.yml tags it afterwards: moto cannot
    tag at creation), so a miss is remembered only briefly; a hit for good
    (an AMI's tag does not change)."""

    found: dict[str, str] = field(default_factory=dict)
    missing: dict[str, float] = field(default_factory=dict)
    retry_after: float = 10.0

    def wanted(self, image_ids: Iterable[str], now: float) -> list[str]:
        return sorted(
            i
            for i in set(image_ids)
            if i not in self.found and now - self.missing.get(i, -1e9) >= self.retry_after
        )


def local_image(tag_value: str) -> str:
    """The LocalImage tag is "repo:tag@id" (playbooks/images.yml): podman is
    given repo:tag, the id only records which build it was."""
    return tag_value.strip().split("@", 1)[0]


def _tags(raw: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in raw or ()}


def _permission(raw: Mapping[str, Any]) -> Permission:
    return Permission(
        protocol=str(raw.get("IpProtocol", "-1")),
        from_port=raw.get("FromPort"),
        to_port=raw.get("ToPort"),
        cidrs=tuple(
            [r["CidrIp"] for r in raw.get("IpRanges", []) if r.get("CidrIp")]
            + [r["CidrIpv6"] for r in raw.get("Ipv6Ranges", []) if r.get("CidrIpv6")]
        ),
        groups=tuple(g["GroupId"] for g in raw.get("UserIdGroupPairs", []) if g.get("GroupId")),
    )


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    if client.can_paginate(operation):
        out: list[dict[str, Any]] = []
        for page in client.get_paginator(operation).paginate(**kwargs):
            out.extend(page.get(key, []))
        return out
    return list(getattr(client, operation)(**kwargs).get(key, []))


class Reader:
    """The describe calls of one pass, each part on its own: a failure is
    recorded in ``World.errors`` and leaves that part None."""

    PARTS = (
        "subnets",
        "instances",
        "images",
        "security_groups",
        "interfaces",
        "load_balancers",
        "target_groups",
        "db_instances",
    )

    def __init__(self, ec2: Any, elbv2: Any, rds: Any, images: ImageCache) -> None:
        self.ec2 = ec2
        self.elbv2 = elbv2
        self.rds = rds
        self.images = images

    def read(self) -> World:
        world = World()
        for part in self.PARTS:
            try:
                getattr(self, f"_{part}")(world)
            except Exception as exc:  # one part failing must not stop the pass
                world.errors[part] = f"{type(exc).__name__}: {exc}"
        return world

    def _subnets(self, world: World) -> None:
        subnets = {}
        for s in _pages(self.ec2, "describe_subnets", "Subnets"):
            subnets[s["SubnetId"]] = Subnet(
                id=s["SubnetId"],
                vpc_id=s["VpcId"],
                cidr=s["CidrBlock"],
                az=s.get("AvailabilityZone", ""),
                name=_tags(s.get("Tags")).get("Name", ""),
            )
        cidrs: dict[str, tuple[str, ...]] = {}
        for v in _pages(self.ec2, "describe_vpcs", "Vpcs"):
            blocks = [
                a["CidrBlock"]
                for a in v.get("CidrBlockAssociationSet", [])
                if a.get("CidrBlockState", {}).get("State", "associated") == "associated"
            ]
            cidrs[v["VpcId"]] = tuple(dict.fromkeys([v["CidrBlock"], *blocks]))
        world.subnets, world.vpc_cidrs = subnets, cidrs

    def _instances(self, world: World) -> None:
        instances = {}
        # not the terminated ones: the emulator keeps them all (AWS forgets
        # them within the hour), and the listing grows with every release
        # and replacement; an instance not listed is not live anyway
        states = ["pending", "running", "stopping", "stopped", "shutting-down"]
        for reservation in _pages(
            self.ec2,
            "describe_instances",
            "Reservations",
            Filters=[{"Name": "instance-state-name", "Values": states}],
        ):
            for i in reservation.get("Instances", []):
                instances[i["InstanceId"]] = Instance(
                    id=i["InstanceId"],
                    state=i.get("State", {}).get("Name", ""),
                    subnet_id=i.get("SubnetId", ""),
                    ip=i.get("PrivateIpAddress", ""),
                    image_id=i.get("ImageId", ""),
                    security_groups=tuple(g["GroupId"] for g in i.get("SecurityGroups", [])),
                    tags=tuple(sorted(_tags(i.get("Tags")).items())),
                )
        world.instances = instances

    def _images(self, world: World) -> None:
        if world.instances is None:
            raise RuntimeError("instances unknown")
        now = time.monotonic()
        wanted = self.images.wanted(
            (i.image_id for i in world.instances.values() if i.live and i.image_id), now
        )
        seen: set[str] = set()
        if wanted:
            try:
                described = self.ec2.describe_images(ImageIds=wanted)["Images"]
            except Exception:  # one deregistered AMI fails the whole call
                described = []
                for image_id in wanted:
                    try:
                        described.extend(self.ec2.describe_images(ImageIds=[image_id])["Images"])
                    except Exception:  # noqa: S112 -- that AMI is gone: a miss
                        continue
            for image in described:
                seen.add(image["ImageId"])
                tag = _tags(image.get("Tags")).get("LocalImage", "")
                if tag:
                    self.images.found[image["ImageId"]] = local_image(tag)
                    self.images.missing.pop(image["ImageId"], None)
        for image_id in wanted:
            if image_id not in self.images.found:
                self.images.missing[image_id] = now
        world.local_images = dict(self.images.found)

    def _security_groups(self, world: World) -> None:
        world.security_groups = {
            g["GroupId"]: SecurityGroup(
                id=g["GroupId"],
                name=g.get("GroupName", ""),
                vpc_id=g.get("VpcId", ""),
                ingress=tuple(_permission(p) for p in g.get("IpPermissions", [])),
                egress=tuple(_permission(p) for p in g.get("IpPermissionsEgress", [])),
            )
            for g in _pages(self.ec2, "describe_security_groups", "SecurityGroups")
        }

    def _interfaces(self, world: World) -> None:
        world.interfaces = {
            n["NetworkInterfaceId"]: NetworkInterface(
                id=n["NetworkInterfaceId"],
                subnet_id=n.get("SubnetId", ""),
                ip=n.get("PrivateIpAddress", ""),
                description=n.get("Description", "") or "",
                groups=tuple(g["GroupId"] for g in n.get("Groups", [])),
                instance_id=(n.get("Attachment") or {}).get("InstanceId", "") or "",
            )
            for n in _pages(self.ec2, "describe_network_interfaces", "NetworkInterfaces")
        }

    def _load_balancers(self, world: World) -> None:
        lbs = {}
        for lb in _pages(self.elbv2, "describe_load_balancers", "LoadBalancers"):
            if lb.get("Type", "application") != "application":
                continue
            arn = lb["LoadBalancerArn"]
            attributes = {
                a["Key"]: a.get("Value", "")
                for a in self.elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)[
                    "Attributes"
                ]
            }
            listeners = tuple(
                Listener(
                    arn=x["ListenerArn"],
                    port=int(x["Port"]),
                    protocol=x.get("Protocol", "HTTP"),
                    action=_default_action(x.get("DefaultActions", [])),
                    certificates=tuple(c["CertificateArn"] for c in x.get("Certificates") or []),
                    ssl_policy=x.get("SslPolicy") or "",
                    rules=self._rules(x["ListenerArn"]),
                )
                for x in _pages(self.elbv2, "describe_listeners", "Listeners", LoadBalancerArn=arn)
            )
            lbs[arn] = LoadBalancer(
                arn=arn,
                name=lb["LoadBalancerName"],
                dns_name=lb.get("DNSName", ""),
                scheme=lb.get("Scheme", "internet-facing"),
                state=lb.get("State", {}).get("Code", "active"),
                subnets=tuple(
                    z["SubnetId"] for z in lb.get("AvailabilityZones", []) if z.get("SubnetId")
                ),
                security_groups=tuple(lb.get("SecurityGroups", [])),
                idle_timeout=_int(attributes.get("idle_timeout.timeout_seconds"), 60),
                listeners=tuple(sorted(listeners, key=lambda x: x.port)),
            )
        world.load_balancers = lbs

    def _rules(self, listener_arn: str) -> tuple[ListenerRule, ...]:
        rules = []
        for r in _pages(self.elbv2, "describe_rules", "Rules", ListenerArn=listener_arn):
            if r.get("IsDefault") or not str(r.get("Priority", "")).isdigit():
                continue
            rules.append(
                ListenerRule(
                    priority=int(r["Priority"]),
                    conditions=tuple(_condition(c) for c in r.get("Conditions", [])),
                    action=_default_action(r.get("Actions", [])),
                )
            )
        return tuple(sorted(rules, key=lambda x: x.priority))

    def _target_groups(self, world: World) -> None:
        groups = {}
        for tg in _pages(self.elbv2, "describe_target_groups", "TargetGroups"):
            arn = tg["TargetGroupArn"]
            attributes = {
                a["Key"]: a.get("Value", "")
                for a in self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)[
                    "Attributes"
                ]
            }
            try:
                health: tuple[Target, ...] | None = tuple(
                    Target(
                        id=h["Target"]["Id"],
                        port=int(h["Target"].get("Port") or tg.get("Port") or 0),
                        state=h.get("TargetHealth", {}).get("State", ""),
                        reason=h.get("TargetHealth", {}).get("Reason", ""),
                    )
                    for h in self.elbv2.describe_target_health(TargetGroupArn=arn)[
                        "TargetHealthDescriptions"
                    ]
                )
            except Exception as exc:  # that group's targets stay as they are
                world.errors[f"target_health {tg['TargetGroupName']}"] = str(exc)
                health = None
            matcher = tg.get("Matcher", {})
            groups[arn] = TargetGroup(
                arn=arn,
                name=tg["TargetGroupName"],
                port=int(tg.get("Port") or 0),
                protocol=tg.get("Protocol", "HTTP"),
                target_type=tg.get("TargetType", "instance"),
                health_check=HealthCheck(
                    path=tg.get("HealthCheckPath") or "/",
                    port=str(tg.get("HealthCheckPort") or "traffic-port"),
                    protocol=tg.get("HealthCheckProtocol") or "HTTP",
                    interval=int(tg.get("HealthCheckIntervalSeconds") or 30),
                    timeout=int(tg.get("HealthCheckTimeoutSeconds") or 5),
                    healthy=int(tg.get("HealthyThresholdCount") or 5),
                    unhealthy=int(tg.get("UnhealthyThresholdCount") or 2),
                    matcher=str(matcher.get("HttpCode") or "200"),
                ),
                slow_start=_int(attributes.get("slow_start.duration_seconds"), 0),
                deregistration_delay=_int(
                    attributes.get("deregistration_delay.timeout_seconds"), 300
                ),
                targets=health,
            )
        world.target_groups = groups

    def _db_instances(self, world: World) -> None:
        world.db_instances = {
            d["DBInstanceIdentifier"]: DbInstance(
                identifier=d["DBInstanceIdentifier"],
                address=(d.get("Endpoint") or {}).get("Address", ""),
                port=int((d.get("Endpoint") or {}).get("Port") or 0),
                security_groups=tuple(
                    g["VpcSecurityGroupId"]
                    for g in d.get("VpcSecurityGroups", [])
                    if g.get("Status", "active") == "active"
                ),
            )
            for d in _pages(self.rds, "describe_db_instances", "DBInstances")
        }


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _default_action(actions: list[dict[str, Any]]) -> Action | None:
    """The listener's terminal default action (the last by Order; an
    authenticate action before it has no local stand-in)."""
    for a in sorted(actions, key=lambda x: x.get("Order", 0), reverse=True):
        kind = a.get("Type", "")
        if kind == "forward":
            arn = a.get("TargetGroupArn", "")
            if not arn:
                # ForwardConfig: the heaviest group takes everything locally
                groups = (a.get("ForwardConfig") or {}).get("TargetGroups", [])
                if groups:
                    arn = max(groups, key=lambda g: g.get("Weight", 1))["TargetGroupArn"]
            return Action(kind="forward", target_group_arn=arn) if arn else None
        if kind == "redirect":
            config = a.get("RedirectConfig", {})
            return Action(kind="redirect", redirect=tuple(sorted(config.items())))
        if kind == "fixed-response":
            config = a.get("FixedResponseConfig", {})
            return Action(kind="fixed-response", fixed=tuple(sorted(config.items())))
    return None


def _condition(raw: Mapping[str, Any]) -> Condition:
    """A rule condition in either of the API's spellings (the field's
    ``...Config`` or the older ``Values``)."""
    name = raw.get("Field", "")
    config = {
        "http-header": "HttpHeaderConfig",
        "path-pattern": "PathPatternConfig",
        "host-header": "HostHeaderConfig",
        "http-request-method": "HttpRequestMethodConfig",
    }.get(name, "")
    values = (raw.get(config) or {}).get("Values") or raw.get("Values") or []
    header = (raw.get("HttpHeaderConfig") or {}).get("HttpHeaderName", "")
    return Condition(field=name, values=tuple(values), header=header)


def decode_user_data(value: str | None) -> bytes:
    """DescribeInstanceAttribute userData is base64 (as on AWS)."""
    if not value:
        return b""
    return base64.b64decode(value)


# --------------------------------------------------------------------------
# Names


_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def short_name(name: str, prefix: str) -> str:
    """The environment's resource name without its prefix
    ("threetier-local-app-a" -> "app-a"); names of other environments are
    kept whole."""
    rest = name[len(prefix) :] if prefix and name.startswith(prefix) else name
    return _NAME_CHARS.sub("-", rest.lower()).strip("-")


def network_name(container_prefix: str, subnet: Subnet, name_prefix: str) -> str:
    """Podman network of a subnet: tt-local-app-a for threetier-local-app-a.
    An untagged subnet, or one of another environment, has none ("")."""
    if not subnet.name or (name_prefix and not subnet.name.startswith(name_prefix)):
        return ""
    rest = short_name(subnet.name, name_prefix)
    return f"{container_prefix}{rest}" if rest else ""


def lb_container_name(container_prefix: str, lb: LoadBalancer, name_prefix: str) -> str:
    return f"{container_prefix}lb-{short_name(lb.name, name_prefix)}"


def hostname_for_ip(ip: str) -> str:
    """EC2's default private host name: ip-10-0-3-21."""
    return "ip-" + ip.replace(".", "-")


def mac_for_ip(ip: str) -> str:
    """A locally administered MAC from the IPv4 address (02:00 and its four
    octets): an address used again (a replacement instance) keeps its MAC, so
    the neighbours' ARP caches are right at once instead of pointing at the
    previous holder for tens of seconds."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def eni_description(lb_arn: str) -> str:
    """How AWS describes an ALB's network interfaces: "ELB app/<name>/<id>"."""
    return "ELB " + lb_arn.split(":loadbalancer/", 1)[-1]


def gateway(cidr: str) -> str:
    """AWS's VPC router address: the subnet's first host (.1)."""
    return str(ipaddress.IPv4Network(cidr).network_address + 1)


def free_address(cidr: str, used: Iterable[str]) -> str:
    """An address for an ALB node's interface: the highest one not in use and
    not among AWS's reserved ones (network, .1-.3, broadcast). From the top
    so it never meets the emulator's instance addresses (handed out from the
    bottom). "" when the subnet is full."""
    net = ipaddress.IPv4Network(cidr)
    taken = {ipaddress.ip_address(u) for u in used if u}
    reserved = {net.network_address + i for i in range(4)} | {net.broadcast_address}
    for address in reversed(list(net.hosts())):
        if address not in taken and address not in reserved:
            return str(address)
    return ""


# --------------------------------------------------------------------------
# VPC DNS (the managed block of each instance's /etc/hosts)

HOSTS_BEGIN = "# BEGIN threetier VPC DNS (local controller; edited from the host)"
HOSTS_END = "# END threetier VPC DNS"


def hosts_entries(
    world: World, lb_first_ip: Mapping[str, str], rds_ips: Mapping[str, str]
) -> list[tuple[str, str]]:
    """What AWS's DNS would resolve inside the VPC: every ALB's DNS name (its
    first node's address) and every RDS endpoint (its container's address)."""
    entries: list[tuple[str, str]] = []
    for lb in (world.load_balancers or {}).values():
        ip = lb_first_ip.get(lb.arn, "")
        if lb.dns_name and ip:
            entries.append((ip, lb.dns_name.lower()))
    for db in (world.db_instances or {}).values():
        ip = rds_ips.get(db.identifier, "")
        if db.address and ip:
            entries.append((ip, db.address.lower()))
    return sorted(set(entries), key=lambda e: (e[1], e[0]))


def hosts_block(entries: Iterable[tuple[str, str]]) -> str:
    lines = [HOSTS_BEGIN, *(f"{ip}\t{name}" for ip, name in entries), HOSTS_END]
    return "\n".join(lines) + "\n"


def merge_hosts(text: str, entries: list[tuple[str, str]]) -> str:
    """The hosts file with its managed block replaced (appended when absent).
    Lines outside the block naming one of the block's names are dropped:
    glibc takes the first match, so an older entry above would win."""
    names = {name for _, name in entries}
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == HOSTS_BEGIN:
            inside = True
            continue
        if line.strip() == HOSTS_END:
            inside = False
            continue
        if inside:
            continue
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and names.intersection(f.lower() for f in fields[1:]):
            continue
        kept.append(line)
    body = "\n".join(kept).rstrip("\n")
    return (body + "\n" if body else "") + hosts_block(entries)


# --------------------------------------------------------------------------
# Security groups: members and resolved rules


@dataclass(frozen=True)
class Rule:
    """A permission with its sources resolved to addresses, ready for nft."""

    protocol: str
    from_port: int | None
    to_port: int | None
    sources: tuple[str, ...]  # collapsed networks (IPv4 and IPv6); empty: no source
    group_id: str = ""  # the group it came from (for the rule's comment)


def group_members(
    world: World, lb_interfaces: Mapping[str, list[str]], rds_ips: Mapping[str, str]
) -> dict[str, set[str]]:
    """Security group id -> private addresses of what carries it: live
    instances, network interfaces (the ALBs' among them), RDS containers.
    ``lb_interfaces`` maps an ALB ARN to its node addresses, for interfaces
    the emulator does not list yet."""
    members: dict[str, set[str]] = {}

    def add(groups: Iterable[str], ip: str) -> None:
        if ip:
            for g in groups:
                members.setdefault(g, set()).add(ip)

    instances = world.instances or {}
    for i in instances.values():
        if i.live:
            add(i.security_groups, i.ip)
    for n in (world.interfaces or {}).values():
        owner = instances.get(n.instance_id)
        if owner is not None and not owner.live:
            continue
        add(n.groups, n.ip)
    for lb in (world.load_balancers or {}).values():
        for ip in lb_interfaces.get(lb.arn, []):
            add(lb.security_groups, ip)
    for db in (world.db_instances or {}).values():
        add(db.security_groups, rds_ips.get(db.identifier, ""))
    return members


def _collapse(addresses: Iterable[str]) -> tuple[str, ...]:
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for a in addresses:
        net = ipaddress.ip_network(a, strict=False)
        (v4 if isinstance(net, ipaddress.IPv4Network) else v6).append(net)  # type: ignore[arg-type]
    return tuple(str(n) for n in ipaddress.collapse_addresses(v4)) + tuple(
        str(n) for n in ipaddress.collapse_addresses(v6)
    )


def resolve_rules(
    group_ids: Iterable[str],
    groups: Mapping[str, SecurityGroup],
    members: Mapping[str, set[str]],
) -> tuple[list[Rule], list[Rule]]:
    """(ingress, egress) of a resource carrying these groups: every permission
    of every group, its group sources replaced by their members' addresses. A
    permission whose sources resolve to nothing (a group without members yet)
    is left out: it admits nobody."""
    ingress: list[Rule] = []
    egress: list[Rule] = []
    for gid in dict.fromkeys(group_ids):
        group = groups.get(gid)
        if group is None:
            continue
        for out, permissions in ((ingress, group.ingress), (egress, group.egress)):
            for p in permissions:
                addresses = list(p.cidrs)
                for source in p.groups:
                    addresses.extend(f"{ip}/32" for ip in sorted(members.get(source, ())))
                sources = _collapse(addresses)
                if not sources:
                    continue
                out.append(Rule(p.protocol, p.from_port, p.to_port, sources, gid))
    return ingress, egress
