"""The local data plane's controller: the containers follow the emulator.

docs/local-data-plane.md ("The controller") is the contract. Each pass reads
the emulator once (controller_world.Reader), then makes podman, HAProxy and
the containers' firewalls match it, and reports back what only the data plane
knows: a dead instance (SetInstanceHealth) and the targets' health (the
emulator's private /_threetier/target-health endpoint).

Why a loop over the whole world rather than events: the emulator has no event
stream, and a level-triggered pass recovers from anything (a controller
restart, a container removed by hand, a failed call) by doing the same thing
again. Every step of a pass is guarded on its own: a failure is logged and the
pass goes on; a part of the emulator that could not be read is left as it is
in reality (never taken for "nothing exists").

Actions are logged one line each; the state of the world one summary line when
it changes, not every pass.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import dataplane_cdn as cdn
from . import dataplane_haproxy as hap
from . import dataplane_nft as nft
from . import dataplane_tls as tls
from .controller_world import (
    ImageCache,
    Instance,
    LoadBalancer,
    Reader,
    Target,
    TargetGroup,
    World,
    decode_user_data,
    eni_description,
    free_address,
    gateway,
    group_members,
    hostname_for_ip,
    hosts_entries,
    lb_container_name,
    mac_for_ip,
    merge_hosts,
    network_name,
    resolve_rules,
    short_name,
)
from .dataplane_podman import FLEET, KIND, OWNER, Container, HostNat, Podman, label_args

RDS_LABEL = "threetier.rds-instance"
SPEC_LABEL = "threetier.spec"
SUBNET_ID_LABEL = "threetier.subnet-id"
DEAD_STATES = frozenset({"exited", "stopped", "dead"})
UNSTARTED_STATES = frozenset({"created", "initialized", "configured"})
LAUNCHERS = 4  # instances launched at once
LAUNCH_RETRY = 10.0  # seconds before a failed launch is tried again
EDGE_EVERY = 2.0  # seconds between two reads of CloudFront (the _edge step)


@dataclass(frozen=True)
class Options:
    endpoint: str = "http://127.0.0.1:4566"
    region: str = "us-east-1"
    name_prefix: str = "threetier-local-"
    container_prefix: str = "tt-local-"
    publish_port: int = 8080
    publish_tls_port: int = 8443  # the internet-facing ALB's 443 on 127.0.0.1
    cdn_port: int = 9080  # CloudFront's stand-in (dataplane_cdn): plain HTTP on 127.0.0.1
    cdn_tls_port: int = 9443  # and HTTPS: the site's local URL with CloudFront
    ca_dir: Path = Path(".local/ca")  # the local CA, ACM's stand-in (dataplane_tls)
    lb_image: str = "localhost/threetier-lb:bookworm"
    state_dir: Path = Path(".local/controller")
    interval: float = 0.5
    transition_interval: int = 1


# --------------------------------------------------------------------------
# Logging


class Log:
    """One line per action on stdout. Problems that repeat every pass (the
    emulator down, a socket not there yet) are logged when they start, then
    at most once a minute, and once when they end."""

    def __init__(self, stream: TextIO | None = None, repeat_every: float = 60) -> None:
        self.stream = stream or sys.stdout
        self.repeat_every = repeat_every
        self._once: set[str] = set()
        self._problems: dict[str, tuple[str, float, int]] = {}
        self._seen_this_pass: set[str] = set()

    def info(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} controller: {message}", file=self.stream, flush=True)

    def once(self, key: str, message: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self.info(message)

    def forget(self, key: str) -> None:
        self._once.discard(key)

    def problem(self, key: str, message: str) -> None:
        now = time.monotonic()
        self._seen_this_pass.add(key)
        previous = self._problems.get(key)
        if previous is None or previous[0] != message:
            self._problems[key] = (message, now, 0)
            self.info(f"problem: {key}: {message}")
            return
        text, since, count = previous
        if now - since >= self.repeat_every:
            self.info(
                f"problem: {key}: {message} (again, {count + 1} times in {now - since:.0f} s)"
            )
            self._problems[key] = (text, now, 0)
        else:
            self._problems[key] = (text, since, count + 1)

    def end_pass(self) -> None:
        """Problems not seen in this pass are over."""
        for key in list(self._problems):
            if key not in self._seen_this_pass:
                del self._problems[key]
                self.info(f"recovered: {key}")
        self._seen_this_pass = set()


# --------------------------------------------------------------------------
# Target health reports


ReportKey = tuple[str, str, int]  # target group ARN, target id, port


class Reporter:
    """Target health to the emulator's private endpoint: the changes of each
    pass, and everything again every ``resend`` seconds (the emulator may have
    restarted, a report may have been lost). Until the emulator says a data
    plane is attached (GET /_threetier/status), nothing is sent: a plain moto
    answers 404 there, and an emulator without the data-plane mode ignores
    reports anyway."""

    def __init__(self, endpoint: str, log: Log, resend: float = 10, probe: float = 10) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.log = log
        self.resend = resend
        self.probe = probe
        self.attached = False
        self._next_probe = 0.0
        self._last_full = 0.0
        self._sent: dict[ReportKey, hap.Health] = {}

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 -- the emulator's own URL
            self.endpoint + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return json.loads(response.read() or b"{}")

    def _check_attached(self, now: float) -> bool:
        if self.attached:
            return True
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe
        try:
            status = self._request("/_threetier/status")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                self.log.once(
                    "no-data-plane",
                    "no data plane attached (the emulator has no "
                    "/_threetier/status): target health is not reported",
                )
            else:
                self.log.problem("data plane status", f"HTTP {exc.code}")
            return False
        except (OSError, ValueError) as exc:
            self.log.problem("data plane status", str(exc))
            return False
        if not status.get("data_plane"):
            self.log.once(
                "plain-emulator",
                "the emulator runs without a data plane "
                "(THREETIER_EMULATOR_DATA_PLANE unset): target health is not reported",
            )
            return False
        self.attached = True
        self._sent = {}
        self.log.forget("no-data-plane")
        self.log.forget("plain-emulator")
        self.log.info("data plane attached: reporting target health")
        return True

    def send(self, current: Mapping[ReportKey, hap.Health]) -> None:
        now = time.monotonic()
        if not self._check_attached(now):
            return
        full = now - self._last_full >= self.resend
        # a change is a change of state (a new reason alone waits for the resend)
        changed = {
            k: h
            for k, h in current.items()
            if k not in self._sent or self._sent[k].state != h.state
        }
        batch = dict(current) if full else changed
        if not batch:
            return
        reports = [
            {
                "target_group_arn": arn,
                "id": target_id,
                "port": port,
                "state": h.state,
                **({"reason": h.reason} if h.reason else {}),
                **({"description": h.description} if h.description else {}),
            }
            for (arn, target_id, port), h in sorted(batch.items())
        ]
        try:
            answer = self._request("/_threetier/target-health", {"reports": reports})
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                self.attached = False
                self.log.info("the emulator no longer takes target health (404): detached")
            else:
                self.log.problem("target health report", f"HTTP {exc.code}")
            return
        except (OSError, ValueError) as exc:
            self.log.problem("target health report", str(exc))
            return
        if full:
            self._last_full = now
        self._sent = dict(current)
        if changed:
            listed = ", ".join(f"{k[1]}:{k[2]} {h.state}" for k, h in sorted(changed.items()))
            self.log.info(
                f"reported {len(changed)} target health change(s): {listed} "
                f"(accepted {answer.get('accepted', '?')}, ignored {answer.get('ignored', '?')})"
            )


# --------------------------------------------------------------------------
# The controller


@dataclass
class _Pass:
    """What one pass learned, shared by its steps."""

    world: World
    everything: list[Container] = field(default_factory=list)  # every container of podman
    containers: dict[str, Container] = field(default_factory=dict)  # mine, by name
    rds: dict[str, Container] = field(default_factory=dict)  # by DB instance identifier
    networks: dict[str, str] = field(default_factory=dict)  # subnet id -> podman network
    lb_nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # ALB ARN -> subnet -> ip
    rds_ips: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] | None = None
    hosts: list[tuple[str, str]] | None = None
    images_present: dict[str, bool] = field(default_factory=dict)
    health: dict[ReportKey, hap.Health] = field(default_factory=dict)
    launched: set[str] = field(default_factory=set)  # containers made in this pass
    ok: bool = True


class Controller:
    def __init__(
        self,
        options: Options,
        ec2: Any,
        elbv2: Any,
        rds: Any,
        autoscaling: Any,
        podman: Podman | None = None,
        log: Log | None = None,
        acm: Any = None,
        cloudfront: Any = None,
        route53: Any = None,
        edge_acm: Any = None,
        edge_wafv2: Any = None,
    ) -> None:
        self.o = options
        self.cloudfront = cloudfront
        self.route53 = route53
        self.edge_wafv2 = edge_wafv2  # CloudFront's web ACLs (scope CLOUDFRONT, us-east-1)
        self.edge_read = 0.0  # when the edge was last read (monotonic)
        # the viewer certificates CloudFront serves (ACM in us-east-1)
        self.edge_certificates = tls.Certificates(edge_acm or acm, options.ca_dir.resolve())
        self.edge_structure: dict[str, str] = {}  # CloudFront stand-in -> structure digest
        self.certificates = tls.Certificates(acm, options.ca_dir.resolve())
        self.ec2 = ec2
        self.elbv2 = elbv2
        self.autoscaling = autoscaling
        self.podman = podman or Podman()
        self.log = log or Log()
        self.reader = Reader(ec2, elbv2, rds, ImageCache())
        self.nat = HostNat(options.container_prefix)
        self.reporter = Reporter(options.endpoint, self.log)
        self.state_dir = options.state_dir.resolve()
        # memory across passes (all of it can be lost: a restart rebuilds it)
        self.started: set[str] = set()  # instances whose container ran
        self.dead_reported: set[str] = set()
        self.launch_retry: dict[str, float] = {}  # instance -> when to try again
        self.removing: dict[str, subprocess.Popen[bytes]] = {}
        self.rulesets: dict[str, tuple[int, str]] = {}  # container -> (pid, digest)
        self.hosts_paths: dict[str, str] = {}  # container id -> hosts file
        self.rds_addresses: dict[str, str] = {}  # container id -> address
        self.lb_structure: dict[str, str] = {}  # balancer container -> structure digest
        self.lb_nodes: dict[str, dict[str, str]] = {}
        self.subnet_networks: dict[str, str] = {}
        self.server_memory: dict[ReportKey, hap.ServerMemory] = {}
        self.health: dict[ReportKey, hap.Health] = {}
        self.summary = ""

    # -- the pass ------------------------------------------------------------

    def run_pass(self) -> bool:
        """One reconcile pass. True when every step went through."""
        world = self.reader.read()
        p = _Pass(world=world)
        if world.errors and set(world.errors) >= set(Reader.PARTS):
            # the emulator is down (or restarting): one line, not one per part
            self.log.problem("emulator", next(iter(world.errors.values())))
            p.ok = False
        else:
            for part, message in world.errors.items():
                self.log.problem(f"emulator {part}", message)
                p.ok = False
        self._reap()
        try:
            p.everything = self.podman.containers()
        except Exception as exc:  # without podman's list nothing can be done
            self.log.problem("podman", str(exc))
            self.log.end_pass()
            return False
        for c in p.everything:
            if c.labels.get(OWNER) == self.o.container_prefix and c.name not in self.removing:
                p.containers[c.name] = c
            if c.labels.get(RDS_LABEL):
                # stopped too: its endpoint's name stays in the VPC's DNS
                p.rds[c.labels[RDS_LABEL]] = c
        steps: list[tuple[str, Callable[[_Pass], None]]] = [
            ("networks", self._networks),
            ("aws api", self._aws_api),
            ("load balancer interfaces", self._lb_interfaces),
            ("addresses", self._addresses),
            ("instances", self._instances),
            ("load balancers", self._load_balancers),
            ("target health", self._report),
            ("security groups", self._security_groups),
            ("vpc dns", self._vpc_dns),
            ("cloudfront", self._edge),
        ]
        for name, step in steps:
            try:
                step(p)
            except Exception as exc:  # a step failing must not stop the pass
                self.log.problem(name, f"{type(exc).__name__}: {exc}")
                p.ok = False
        self._summarize(p)
        self._prune(p)
        self.log.end_pass()
        return p.ok

    def _prune(self, p: _Pass) -> None:
        """Memory of things that are gone (a long-running controller sees
        thousands of instances come and go)."""
        ids = {c.id for c in p.everything}
        for cache in (self.hosts_paths, self.rds_addresses):
            for key in [k for k in cache if k not in ids]:
                del cache[key]
        names = {c.name for c in p.everything} | p.launched
        for key in [k for k in self.rulesets if k not in names]:
            del self.rulesets[key]
        if p.world.instances is not None:
            for memory in (self.started, self.dead_reported):
                memory.intersection_update(p.world.instances)
            for iid in [k for k in self.launch_retry if k not in p.world.instances]:
                del self.launch_retry[iid]

    def _mine(self, p: _Pass, kind: str) -> list[Container]:
        """This controller's containers of a kind, except those being removed."""
        return [
            c
            for c in p.containers.values()
            if c.labels.get(KIND) == kind and c.name not in self.removing
        ]

    def _labels(self, kind: str, **extra: str) -> dict[str, str]:
        return {**FLEET, KIND: kind, OWNER: self.o.container_prefix, **extra}

    def _reap(self) -> None:
        """Background removals that finished."""
        for name, proc in list(self.removing.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.removing[name]
            if code != 0:
                error = (proc.stderr.read() if proc.stderr else b"").decode().strip()
                self.log.info(f"removing {name} failed: {error or code}")

    def _remove_later(self, name: str, why: str, stop_timeout: int = 10) -> None:
        if name in self.removing:
            return
        self.removing[name] = self.podman.remove_async(name, stop_timeout)
        self.rulesets.pop(name, None)
        self.log.info(f"removing {name} ({why})")

    # -- subnets -> podman networks -----------------------------------------

    def _networks(self, p: _Pass) -> None:
        world = p.world
        if world.subnets is None or world.vpc_cidrs is None:
            p.networks = dict(self.subnet_networks)
            return
        existing = {n.name: n for n in self.podman.networks()}
        in_use = {name for c in p.everything for name in c.networks}
        desired = {}
        for s in world.subnets.values():
            name = network_name(self.o.container_prefix, s, self.o.name_prefix)
            if name:
                desired[name] = s
        # stale networks first: a subnet re-created under another name keeps
        # its CIDR, which podman lets only one network have
        for name, n in existing.items():
            mine = n.labels.get(OWNER) == self.o.container_prefix
            if mine and n.labels.get(KIND) == "subnet" and name not in desired:
                if name in in_use:
                    self.log.once(f"net-busy {name}", f"network {name}: subnet gone, still in use")
                    continue
                self.podman.remove_network(name)
                self.log.info(f"removed network {name} (its subnet is gone)")
        mapping: dict[str, str] = {}
        for name, s in sorted(desired.items()):
            have = existing.get(name)
            if have is not None and (
                have.cidr != s.cidr or have.labels.get(SUBNET_ID_LABEL) != s.id
            ):
                if name in in_use:
                    if have.cidr == s.cidr:
                        mapping[s.id] = name  # only the id changed: keep using it
                    else:
                        self.log.once(
                            f"net-stale {name}",
                            f"network {name}: {have.cidr} is in use, the subnet is now {s.cidr}",
                        )
                    continue
                self.podman.remove_network(name)
                self.log.info(
                    f"removed network {name} ({have.cidr}, {have.labels.get(SUBNET_ID_LABEL)}:"
                    f" replaced by {s.cidr}, {s.id})"
                )
                have = None
            if have is None:
                labels = self._labels("subnet", **{SUBNET_ID_LABEL: s.id, "threetier.cidr": s.cidr})
                self.podman.create_network(name, s.cidr, gateway(s.cidr), labels)
                self.log.info(f"created network {name} ({s.cidr}, {s.id})")
            mapping[s.id] = name
        self.subnet_networks = mapping
        p.networks = mapping
        # one RETURN rule per VPC CIDR, so the host routes without masquerading
        cidrs = {c for s in desired.values() for c in world.vpc_cidrs.get(s.vpc_id, ())}
        present = self.nat.present()
        for cidr in sorted(cidrs - present):
            self.nat.ensure(cidr)
            self.log.info(f"routing {cidr} between its networks without address translation")
        for cidr in sorted(present - cidrs):
            self.nat.remove(cidr)
            self.log.info(f"removed the routing rule of {cidr} (no VPC has it)")

    # -- the AWS APIs as the VPC sees them (local only) -----------------------

    def _aws_api(self, p: _Pass) -> None:
        """LOCAL ONLY: instances reach the AWS APIs (on AWS through the NAT
        gateway or an interface endpoint); here the APIs are the emulator on
        the host's 127.0.0.1, which containers cannot reach. An HAProxy on the
        host's network passes the emulator's port on every subnet's gateway
        address (.1, the host's end of each network) to the emulator, for
        connections from the VPCs' CIDRs only. It is bound transparently
        (IP_TRANSPARENT, hence NET_ADMIN), so it listens before podman has
        made a network's bridge: the first instances boot with the APIs
        already there (taskboard reads its database secret at start)."""
        world = p.world
        if world.subnets is None or world.vpc_cidrs is None:
            return
        name = f"{self.o.container_prefix}aws-api"
        target = urllib.parse.urlsplit(self.o.endpoint)
        port = target.port or 80
        # the subnets that are networks here, and their VPCs
        subnets = [s for s in world.subnets.values() if s.id in p.networks]
        addresses = sorted({gateway(s.cidr) for s in subnets})
        sources = sorted({c for s in subnets for c in world.vpc_cidrs.get(s.vpc_id, ())})
        c = p.containers.get(name)
        if not addresses:
            if c is not None:
                self._remove_later(name, "no subnet left", 2)
            return
        text = hap.render_aws_api(addresses, port, sources, f"{target.hostname}:{port}")
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        if c is not None and c.labels.get(SPEC_LABEL) == digest and c.running:
            return
        if c is not None:
            self.podman.remove(name, 2)
            self.log.info(f"removed {name} ({'its addresses changed' if c.running else c.state})")
        etc = self.state_dir / "aws-api"
        etc.mkdir(parents=True, exist_ok=True)
        _write_atomic(etc / "haproxy.cfg", text)
        labels = self._labels("aws-api", **{SPEC_LABEL: digest})
        self.podman.create(
            [
                "--name", name, "--network", "host", "--cap-add", "NET_ADMIN", *label_args(labels),
                "--volume", f"{etc}:{hap.CONFIG_DIR}:ro", self.o.lb_image,
                "haproxy", "-W", "-db", "-f", f"{hap.CONFIG_DIR}/haproxy.cfg",
            ]
        )  # fmt: skip
        self.podman.start(name)
        p.launched.add(name)
        self.log.info(
            f"launched {name}: the AWS APIs on {', '.join(addresses)} port {port}"
            f" for {', '.join(sources)}"
        )

    # -- ALB nodes: one network interface per subnet, in the emulator ---------

    def _lb_interfaces(self, p: _Pass) -> None:
        world = p.world
        if world.load_balancers is None or world.interfaces is None or world.instances is None:
            p.lb_nodes = dict(self.lb_nodes)
            return
        descriptions = {eni_description(lb.arn): lb for lb in world.load_balancers.values()}
        nodes: dict[str, dict[str, str]] = {lb: {} for lb in world.load_balancers}
        for n in sorted(world.interfaces.values(), key=lambda x: x.id):
            if not n.description.startswith("ELB app/"):
                continue
            lb = descriptions.get(n.description)
            if lb is None or n.subnet_id not in lb.subnets or n.subnet_id in nodes[lb.arn]:
                self.ec2.delete_network_interface(NetworkInterfaceId=n.id)
                self.log.info(f"deleted interface {n.id} ({n.description}, {n.ip})")
                continue
            nodes[lb.arn][n.subnet_id] = n.ip
            if sorted(n.groups) != sorted(lb.security_groups) and lb.security_groups:
                self.ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=n.id, Groups=list(lb.security_groups)
                )
                self.log.info(f"interface {n.id} of {lb.name}: groups {list(lb.security_groups)}")
        for lb in world.load_balancers.values():
            for subnet_id in lb.subnets:
                if subnet_id in nodes[lb.arn]:
                    continue
                subnet = (world.subnets or {}).get(subnet_id)
                if subnet is None:
                    continue
                used = [n.ip for n in world.interfaces.values() if n.subnet_id == subnet_id]
                used += [i.ip for i in world.instances.values() if i.subnet_id == subnet_id]
                used += [ip for m in nodes.values() for ip in m.values()]
                ip = free_address(subnet.cidr, used)
                if not ip:
                    self.log.once(f"full {subnet_id}", f"{lb.name}: no free address in {subnet_id}")
                    continue
                args: dict[str, Any] = {
                    "SubnetId": subnet_id,
                    "Description": eni_description(lb.arn),
                    "PrivateIpAddress": ip,
                }
                if lb.security_groups:
                    args["Groups"] = list(lb.security_groups)
                made = self.ec2.create_network_interface(**args)["NetworkInterface"]
                nodes[lb.arn][subnet_id] = made.get("PrivateIpAddress") or ip
                self.log.info(
                    f"created interface {made['NetworkInterfaceId']} for {lb.name} in "
                    f"{subnet_id} ({nodes[lb.arn][subnet_id]})"
                )
        self.lb_nodes = nodes
        p.lb_nodes = nodes

    # -- who has which address (security-group members, DNS) -----------------

    def _addresses(self, p: _Pass) -> None:
        world = p.world
        vpc_nets = [c for cs in (world.vpc_cidrs or {}).values() for c in cs]
        p.rds_ips = database_addresses(
            p.rds, self.rds_addresses, lambda c: _address_in(self.podman.inspect(c.name), vpc_nets)
        )
        lb_ips = {arn: list(m.values()) for arn, m in p.lb_nodes.items()}
        complete = all(
            part is not None
            for part in (
                world.instances,
                world.interfaces,
                world.load_balancers,
                world.db_instances,
                world.security_groups,
            )
        )
        if complete:
            p.members = group_members(world, lb_ips, p.rds_ips)
        if world.load_balancers is not None and world.db_instances is not None:
            first = {
                lb.arn: p.lb_nodes.get(lb.arn, {}).get(lb.subnets[0], "") if lb.subnets else ""
                for lb in world.load_balancers.values()
            }
            p.hosts = hosts_entries(world, first, p.rds_ips)

    def _ruleset(self, p: _Pass, groups: tuple[str, ...], label: str) -> tuple[str, str] | None:
        """(nft text, a few words on it) for a resource with these groups;
        None while the members are unknown (never rules that admit nobody
        because a part of the emulator could not be read)."""
        if p.members is None or p.world.security_groups is None:
            return None
        ingress, egress = resolve_rules(groups, p.world.security_groups, p.members)
        text = nft.render_ruleset(ingress, egress, label)
        return text, f"{len(ingress)} ingress, {len(egress)} egress rules"

    def _apply_rules(self, name: str, pid: int, ruleset: tuple[str, str], why: str = "") -> None:
        text, words = ruleset
        digest = nft.digest(text)
        if self.rulesets.get(name) == (pid, digest):
            return
        nft.apply(pid, text)
        self.rulesets[name] = (pid, digest)
        self.log.info(f"security groups applied to {name} ({words}{', ' + why if why else ''})")

    # -- instances -----------------------------------------------------------

    def _instances(self, p: _Pass) -> None:
        world = p.world
        if world.instances is None:
            return
        live = {i.id: i for i in world.instances.values() if i.live}
        by_instance = {
            c.labels.get("threetier.instance-id", c.name): c for c in self._mine(p, "instance")
        }
        for iid, c in by_instance.items():
            if iid in live:
                continue
            state = world.instances[iid].state if iid in world.instances else "unknown"
            self._remove_later(c.name, f"instance {state}")
            self.started.discard(iid)
            self.dead_reported.discard(iid)
            self.log.forget(f"dead {iid}")
        launch: list[Instance] = []
        dead: list[tuple[Instance, str]] = []
        now = time.monotonic()
        for i in sorted(live.values(), key=lambda x: x.id):
            container = by_instance.get(i.id)
            if container is None:
                if i.id in self.started:
                    dead.append((i, "its container is gone"))
                elif now >= self.launch_retry.get(i.id, 0):
                    launch.append(i)
            elif container.running:
                self.started.add(i.id)
            elif container.state in UNSTARTED_STATES and i.id not in self.started:
                # a launch cut short (a controller stopped mid-way): again
                self.podman.remove(container.name, 0)
                self.log.info(f"removed {container.name} (launch was not finished)")
                launch.append(i)
            elif container.state in DEAD_STATES or container.state in UNSTARTED_STATES:
                dead.append((i, f"its container {container.state}"))
        for i, why in dead:
            try:
                self._dead(i, why)
            except Exception as exc:  # the next pass tries again; launches go on
                self.log.problem(f"dead {i.id}", f"{type(exc).__name__}: {exc}")
                p.ok = False
        if not launch:
            return
        # side by side: a group of four launches in the time of one (podman
        # takes a few hundred milliseconds per step, mostly waiting)
        with ThreadPoolExecutor(max_workers=min(LAUNCHERS, len(launch))) as pool:
            futures = {pool.submit(self._launch, p, i): i for i in launch}
            for future in as_completed(futures):
                error = future.exception()
                iid = futures[future].id
                if error is None:
                    self.launch_retry.pop(iid, None)
                    continue
                # not again every pass: podman would create and remove it each second
                self.launch_retry[iid] = time.monotonic() + LAUNCH_RETRY
                self.log.problem(f"launch {iid}", f"{type(error).__name__}: {error}")
                p.ok = False

    def _dead(self, i: Instance, why: str) -> None:
        """A dead instance: its group hears it (SetInstanceHealth) and
        replaces it; the container is not restarted, as EC2 does not bring a
        failed instance back by itself."""
        if i.id in self.dead_reported:
            return
        group = i.auto_scaling_group
        if not group:
            self.log.once(f"dead {i.id}", f"instance {i.id}: {why}; no Auto Scaling group, left")
            self.dead_reported.add(i.id)
            return
        self.autoscaling.set_instance_health(
            InstanceId=i.id, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
        )
        self.dead_reported.add(i.id)
        self.log.info(f"instance {i.id} ({group}): {why}: reported Unhealthy to its group")

    def _launch(self, p: _Pass, i: Instance) -> None:
        world = p.world
        network = p.networks.get(i.subnet_id, "")
        image = (world.local_images or {}).get(i.image_id, "")
        if not network:
            self.log.once(f"nonet {i.id}", f"instance {i.id}: subnet {i.subnet_id} has no network")
            return
        if world.local_images is None:
            return
        if not image:
            self.log.once(
                f"noimage {i.id}",
                f"instance {i.id}: AMI {i.image_id} names no local "
                "image (no LocalImage tag): left without a container",
            )
            return
        if image not in p.images_present:
            p.images_present[image] = self.podman.image_exists(image)
        if not p.images_present[image]:
            self.log.once(f"noimage {i.id}", f"instance {i.id}: image {image} is not in podman")
            return
        if not i.ip:
            return
        started = time.monotonic()
        labels = self._labels(
            "instance",
            **{"threetier.instance-id": i.id, "threetier.image-id": i.image_id},
            **{f"threetier.tag.{k}": v for k, v in i.tags},
        )
        args = [
            "--systemd=always",
            "--name", i.id,
            "--hostname", hostname_for_ip(i.ip),
            "--network", f"{network}:ip={i.ip},mac={mac_for_ip(i.ip)}",
            # systemd builds taskboard's mount sandbox, as on EC2
            "--cap-add", "SYS_ADMIN",
            *label_args(labels),
            image,
            "/lib/systemd/systemd",
        ]  # fmt: skip
        user_data = decode_user_data(
            self.ec2.describe_instance_attribute(InstanceId=i.id, Attribute="userData")
            .get("UserData", {})
            .get("Value")
        )
        self.podman.create(args)
        try:
            # before its first process: /etc/hosts, the security groups, the user data
            self.podman.init(i.id)
            info = self.podman.inspect(i.id)
            pid = int(info.get("State", {}).get("Pid") or 0)
            hosts_path = info.get("HostsPath", "")
            if hosts_path and p.hosts is not None:
                _write_hosts(hosts_path, p.hosts)
                self.hosts_paths[info.get("Id", "")] = hosts_path
            rules = self._ruleset(p, i.security_groups, i.id)
            if rules is not None and pid:
                self._apply_rules(i.id, pid, rules, "before its first process")
            if user_data:
                self._copy_user_data(i.id, user_data)
            self.podman.start(i.id)
        except Exception:
            self.podman.remove(i.id, 0)
            raise
        self.started.add(i.id)
        p.launched.add(i.id)
        self.log.info(
            f"launched {i.id} ({i.auto_scaling_group or dict(i.tags).get('Name', '-')}) at {i.ip} "
            f"on {network} from "
            f"{image} in {time.monotonic() - started:.1f} s"
            + ("" if user_data else " (no user data)")
        )

    def _copy_user_data(self, name: str, data: bytes) -> None:
        """/var/lib/threetier/user-data, mode 0600, run once by the image's
        first-boot unit (the stand-in for cloud-init)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            path = Path(tmp) / "user-data"
            path.write_bytes(data)
            path.chmod(0o600)
            self.podman.copy_in(str(path), name, "/var/lib/threetier/user-data")

    # -- load balancers ------------------------------------------------------

    def _facing(self, lbs: Iterable[LoadBalancer]) -> list[str]:
        """The containers of the internet-facing ALBs, by name: there is one
        port on 127.0.0.1, and the first has it (CloudFront's stand-in
        reaches its origin there)."""
        return sorted(
            lb_container_name(self.o.container_prefix, lb, self.o.name_prefix)
            for lb in lbs
            if lb.internet_facing and lb.state != "failed"
        )

    def _load_balancers(self, p: _Pass) -> None:
        world = p.world
        if world.load_balancers is None:
            return
        wanted: dict[str, LoadBalancer] = {}
        for lb in world.load_balancers.values():
            if lb.state == "failed":
                continue
            wanted[lb_container_name(self.o.container_prefix, lb, self.o.name_prefix)] = lb
        for c in self._mine(p, "load-balancer"):
            if c.name not in wanted:
                self._remove_later(c.name, "its load balancer is gone", 2)
                self.lb_structure.pop(c.name, None)
                shutil.rmtree(self.state_dir / "lb" / c.name, ignore_errors=True)
        facing = self._facing(wanted.values())
        for name in facing[1:]:
            self.log.once(
                f"unpublished {name}",
                f"{name}: internet-facing, but {facing[0]} "
                f"has 127.0.0.1:{self.o.publish_port}: not published",
            )
        for name, lb in sorted(wanted.items()):
            try:
                self._load_balancer(p, name, lb, publisher=bool(facing) and name == facing[0])
            except Exception as exc:  # one balancer failing must not stop the others
                self.log.problem(f"load balancer {name}", f"{type(exc).__name__}: {exc}")
                p.ok = False

    # -- CloudFront -> HAProxy on the host's network (dataplane_cdn) ---------

    def _distributions(self) -> list[cdn.Distribution]:
        out = []
        listed = self.cloudfront.list_distributions().get("DistributionList") or {}
        for summary in listed.get("Items") or []:
            config = self.cloudfront.get_distribution_config(Id=summary["Id"])
            listing = self.cloudfront.list_invalidations(DistributionId=summary["Id"])
            ids = [i["Id"] for i in (listing.get("InvalidationList") or {}).get("Items") or []]
            out.append(cdn.distribution_from(summary["Id"], config["DistributionConfig"], ids))
        return out

    def _zones(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The Route 53 records of the public zones that hold ``names``."""
        out: dict[str, list[dict[str, Any]]] = {}
        for zone in self.route53.list_hosted_zones().get("HostedZones", []):
            if (zone.get("Config") or {}).get("PrivateZone"):
                continue
            z = zone["Name"].rstrip(".")
            if not any(n == z or n.endswith("." + z) for n in names):
                continue
            records = self.route53.get_paginator("list_resource_record_sets")
            out[z] = [
                r
                for page in records.paginate(HostedZoneId=zone["Id"])
                for r in page.get("ResourceRecordSets", [])
            ]
        return out

    def _edge(self, p: _Pass) -> None:
        """Each enabled distribution: its stand-in container (one, published
        on the cdn ports; a second is not run and says so)."""
        if self.cloudfront is None:
            return
        # CloudFront, Route 53 and WAF take six calls: every EDGE_EVERY s,
        # not every pass (a change deploys within seconds, as it takes
        # minutes on AWS)
        now = time.monotonic()
        if now - self.edge_read < EDGE_EVERY:
            return
        self.edge_read = now
        distributions = self._distributions()
        wanted = {
            f"{self.o.container_prefix}cdn-{d.id.lower()}": d
            for d in sorted(distributions, key=lambda x: x.id)
            if d.enabled
        }
        for c in self._mine(p, "cdn"):
            if c.name not in wanted or c.name != next(iter(wanted)):
                self._remove_later(c.name, "its distribution is gone or disabled", 2)
                self.edge_structure.pop(c.name, None)
                shutil.rmtree(self.state_dir / "cdn" / c.name, ignore_errors=True)
        for name in list(wanted)[1:]:
            self.log.once(
                f"unpublished {name}",
                f"{name}: a second distribution: only {next(iter(wanted))} runs locally",
            )
        if wanted:
            name, d = next(iter(wanted.items()))
            self._cdn(p, name, d)

    def _origins(self, p: _Pass, d: cdn.Distribution) -> dict[str, str]:
        """Custom origin id -> where it answers locally: its name resolved by
        the site's Route 53 records to a load balancer; the internet-facing
        one answers at the port the host publishes its 443 on."""
        custom = [o for o in d.origins if not o.bucket]
        if not custom or p.world.load_balancers is None or self.route53 is None:
            return {}
        zones = self._zones([o.domain for o in custom])
        lbs = p.world.load_balancers.values()
        published = self._facing(lbs)[:1]
        by_dns = {lb.dns_name.lower().rstrip("."): lb for lb in lbs}
        out = {}
        for o in custom:
            lb = by_dns.get(cdn.alias_target(zones, o.domain))
            if (
                lb is not None
                and published
                == [lb_container_name(self.o.container_prefix, lb, self.o.name_prefix)]
                and any(x.port == 443 and x.protocol == "HTTPS" for x in lb.listeners)
            ):
                out[o.id] = f"127.0.0.1:{self.o.publish_tls_port}"
        return out

    def _web_acl(self, name: str, arn: str) -> cdn.WebAcl | None:
        """The distribution's web ACL as the emulator has it (None: none, or
        not readable now: then nothing is enforced, and the log says so)."""
        found = cdn.web_acl_id(arn) if arn else None
        if found is None or self.edge_wafv2 is None:
            return None
        try:
            raw = self.edge_wafv2.get_web_acl(Name=found[0], Scope="CLOUDFRONT", Id=found[1])
        except Exception as exc:  # the distribution is served without it meanwhile
            self.log.problem(f"web acl {name}", f"{name}: web ACL {arn}: {exc}")
            return None
        return cdn.web_acl_from(raw["WebACL"])

    def _cdn(self, p: _Pass, name: str, d: cdn.Distribution) -> None:
        base = self.state_dir / "cdn" / name
        etc, run = base / "etc", base / "run"
        certificate = ""
        if d.certificate_arn and self.edge_certificates.ca_ready():
            try:
                certificate = self.edge_certificates.ensure(d.certificate_arn, etc / "certs").name
            except Exception as exc:  # the viewer certificate waits; the rest goes on
                self.log.problem(f"cert {d.certificate_arn}", f"{name}: {exc}")
        endpoint = urllib.parse.urlsplit(self.o.endpoint).netloc
        text = cdn.render_config(
            d,
            f"certs/{certificate}" if certificate else "",
            self.o.cdn_tls_port,
            self.o.cdn_port,
            endpoint,
            self._origins(p, d),
            self._web_acl(name, d.web_acl_arn),
        )
        spec = {
            "id": d.id,
            "image": self.o.lb_image,
            "ports": [self.o.cdn_port, self.o.cdn_tls_port],
        }
        spec_digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        c = p.containers.get(name)
        if c is not None and (c.labels.get(SPEC_LABEL) != spec_digest or not c.running):
            why = "its ports changed" if c.running else c.state + _last_words(self.podman, name)
            self.podman.remove(name, 2)
            self.log.info(f"removed {name} ({why})")
            c = None
        wanted = cdn.structure_of(text)
        if c is None:
            etc.mkdir(parents=True, exist_ok=True)
            run.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.certificates.ca_dir / "ca.crt", etc / "ca.crt")
            _write_atomic(etc / "haproxy.cfg", text, 0o600)
            labels = self._labels(
                "cdn", **{"threetier.distribution-id": d.id, SPEC_LABEL: spec_digest}
            )
            self.podman.create(
                [
                    "--name", name, "--hostname", name, *label_args(labels),
                    # CloudFront is outside the VPC: it reaches the ALB where the
                    # internet does (the published port) and S3 at the emulator
                    "--network", "host",
                    "--volume", f"{etc}:{cdn.CONFIG_DIR}:ro",
                    "--volume", f"{run}:{cdn.RUN_DIR}",
                    self.o.lb_image,
                    "haproxy", "-W", "-db", "-f", f"{cdn.CONFIG_DIR}/haproxy.cfg",
                ]
            )  # fmt: skip
            try:
                self.podman.start(name)
            except Exception:
                self.podman.remove(name, 0)
                raise
            self.edge_structure[name] = wanted
            p.launched.add(name)
            self.log.info(
                f"launched {name} for distribution {d.id} (CloudFront's stand-in: "
                f"127.0.0.1:{self.o.cdn_tls_port} https, :{self.o.cdn_port} http)"
            )
            return
        applied = self.edge_structure.get(name)
        if applied is None:
            try:
                applied = cdn.structure_of((etc / "haproxy.cfg").read_text())
            except OSError:
                applied = ""
        if wanted == applied:
            return
        shutil.copyfile(self.certificates.ca_dir / "ca.crt", etc / "ca.crt")
        self.edge_structure[name] = wanted  # not again every pass when refused
        if self._haproxy_reload(name, etc / "haproxy.cfg", cdn.CONFIG_DIR, text):
            self.log.info(f"reloaded {name} (distribution, origins or invalidations changed)")

    def _certificates(self, name: str, lb: LoadBalancer, etc: Path) -> dict[str, str]:
        """The HTTPS listeners' certificates, issued by the local CA for the
        names ACM gives (dataplane_tls): listener ARN -> file name in the
        balancer's certs directory. A listener whose certificate cannot be
        issued yet (no local CA, ACM not answering) stays out of the
        configuration until it can, and says so."""
        wanted = [x for x in lb.listeners if x.protocol == "HTTPS" and x.certificates]
        certs_dir = etc / "certs"
        out: dict[str, str] = {}
        if not wanted:
            tls.Certificates.remove_all(certs_dir)
            return out
        if not self.certificates.ca_ready():
            self.log.problem(
                f"no ca {name}",
                f"{name}: its HTTPS listener waits for the local CA "
                f"({self.certificates.ca_dir}: make up makes it)",
            )
            return out
        for listener in wanted:
            arn = listener.certificates[0]
            try:
                path = self.certificates.ensure(arn, certs_dir)
            except Exception as exc:  # one certificate failing must not stop the balancer
                self.log.problem(f"cert {arn}", f"{name}: certificate {arn}: {exc}")
                continue
            out[listener.arn] = path.name
        # (a file of names no longer wanted stays: a configuration HAProxy
        # refused, put back, may still name it; all go with the listeners)
        return out

    def _lb_dirs(self, name: str) -> tuple[Path, Path]:
        base = self.state_dir / "lb" / name
        return base / "etc", base / "run"

    def _load_balancer(self, p: _Pass, name: str, lb: LoadBalancer, publisher: bool) -> None:
        """One ALB: its container (made again when its legs change or it
        died), its configuration (a reload when the structure changed), its
        targets."""
        world = p.world
        nodes = p.lb_nodes.get(lb.arn, {})
        legs = [(p.networks[s], nodes[s]) for s in lb.subnets if s in nodes and s in p.networks]
        if not legs:
            self.log.once(f"nolegs {name}", f"{name}: no subnet of {lb.name} has a network yet")
            return
        publish = publisher and any(x.port == 80 and x.protocol == "HTTP" for x in lb.listeners)
        etc, run = self._lb_dirs(name)
        certificates = self._certificates(name, lb, etc)
        publish_tls = publisher and any(
            x.port == 443 and x.arn in certificates for x in lb.listeners
        )
        # what a redirect to 443 names on the published balancer: the host's port
        published = {"443": str(self.o.publish_tls_port)} if publish_tls else {}
        spec = {
            "arn": lb.arn,
            "image": self.o.lb_image,
            "legs": legs,
            "publish": self.o.publish_port if publish else 0,
            "publish_tls": self.o.publish_tls_port if publish_tls else 0,
        }
        spec_digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        c = p.containers.get(name)
        if c is not None and (c.labels.get(SPEC_LABEL) != spec_digest or not c.running):
            why = "subnets, addresses or published port changed" if c.running else c.state
            if not c.running:
                # HAProxy's own last words: a file it refuses at start ends it
                # at once, and the balancer is launched again every pass
                why += _last_words(self.podman, name)
            self.podman.remove(name, 2)
            self.rulesets.pop(name, None)
            self.log.info(f"removed {name} ({why})")
            c = None
        groups = world.target_groups
        if groups is None:
            return
        text = hap.render_config(
            lb, groups, self.o.transition_interval, certificates=certificates, published=published
        )
        if c is None:
            etc.mkdir(parents=True, exist_ok=True)
            run.mkdir(parents=True, exist_ok=True)
            (run / hap.STATE_FILE).unlink(missing_ok=True)
            _write_atomic(etc / "haproxy.cfg", text, 0o600)  # a rule may hold a secret header
            labels = self._labels(
                "load-balancer", **{"threetier.lb-arn": lb.arn, SPEC_LABEL: spec_digest}
            )
            args = ["--name", name, "--hostname", name, *label_args(labels)]
            for network, ip in legs:
                args += ["--network", f"{network}:ip={ip},mac={mac_for_ip(ip)}"]
            if publish:
                args += ["--publish", f"127.0.0.1:{self.o.publish_port}:80"]
            if publish_tls:
                args += ["--publish", f"127.0.0.1:{self.o.publish_tls_port}:443"]
            args += [
                "--volume", f"{etc}:{hap.CONFIG_DIR}:ro",
                "--volume", f"{run}:{hap.RUN_DIR}",
                self.o.lb_image,
                "haproxy", "-W", "-db", "-f", f"{hap.CONFIG_DIR}/haproxy.cfg",
            ]  # fmt: skip
            self.podman.create(args)
            try:
                self.podman.init(name)
                pid = int(self.podman.inspect(name).get("State", {}).get("Pid") or 0)
                rules = self._ruleset(p, lb.security_groups, name)
                if rules is not None and pid:
                    self._apply_rules(name, pid, rules, "before its first process")
                self.podman.start(name)
            except Exception:
                self.podman.remove(name, 0)
                raise
            self.lb_structure[name] = hap.structure_of(text)
            p.launched.add(name)
            where = ", ".join(f"{ip} on {net}" for net, ip in legs)
            ports = [str(self.o.publish_port)] * publish + [
                str(self.o.publish_tls_port)
            ] * publish_tls
            shown = f", published on 127.0.0.1:{' and :'.join(ports)}" if ports else ""
            self.log.info(f"launched {name} for {lb.name} ({where}{shown})")
            return
        runtime = hap.Runtime(run / hap.SOCKET)
        wanted = hap.structure_of(text)
        applied = self.lb_structure.get(name)
        if applied is None:
            try:
                applied = hap.structure_of((etc / "haproxy.cfg").read_text())
            except OSError:
                applied = ""
        if wanted != applied and self._reload(
            name, lb, groups, runtime, etc, run, wanted, certificates, published
        ):
            return  # the new workers' socket is being set up: targets next pass
        self._targets(p, lb, groups, runtime)

    def _haproxy_reload(self, name: str, path: Path, config_dir: str, text: str) -> bool:
        """``text`` as the HAProxy configuration of container ``name``
        (``path`` on the host, ``config_dir`` inside, mode 0600: a listener
        rule or an origin may hold a secret header), then a graceful reload
        (SIGUSR2 to the master: new workers, the old ones finish their
        connections). A file HAProxy refuses (``haproxy -c``) is not
        applied: the previous one is put back and HAProxy keeps running as
        it was. True when reloaded."""
        previous = path.read_text() if path.exists() else ""
        _write_atomic(path, text, 0o600)
        try:
            self.podman.run(
                "exec", name, "haproxy", "-c", "-q", "-f", f"{config_dir}/haproxy.cfg",
                timeout=20,
            )  # fmt: skip
        except Exception as exc:
            _write_atomic(path, previous, 0o600)
            self.log.info(f"{name}: new configuration refused, the previous one kept: {exc}")
            return False
        self.podman.signal(name, "USR2")
        return True

    def _reload(
        self,
        name: str,
        lb: LoadBalancer,
        groups: Mapping[str, TargetGroup],
        runtime: hap.Runtime,
        etc: Path,
        run: Path,
        wanted: str,
        certificates: Mapping[str, str],
        published: Mapping[str, str],
    ) -> bool:
        """A structural change: the new file, with the servers that exist
        now, and their state saved for the new workers (HAProxy's master
        starts them on SIGUSR2; the old ones finish their connections).
        A file HAProxy refuses (``haproxy -c``) is not applied: the previous
        one is put back and the balancer keeps running as it was. True when
        reloaded."""
        rows = runtime.rows()
        servers = {
            backend: [(server, row.address) for server, row in sorted(by_server.items())]
            for backend, by_server in rows.items()
        }
        text = hap.render_config(
            lb, groups, self.o.transition_interval, servers, certificates, published
        )
        runtime.save_state(run / hap.STATE_FILE)
        self.lb_structure[name] = wanted  # not again every pass; the next change retries
        if not self._haproxy_reload(name, etc / "haproxy.cfg", hap.CONFIG_DIR, text):
            return False
        self.log.info(f"reloaded {name} (listeners or target-group settings changed)")
        return True

    def _target_address(self, world: World, group: TargetGroup, t: Target) -> str:
        if group.target_type == "ip":
            return f"{t.id}:{t.port}"
        instance = (world.instances or {}).get(t.id)
        if instance is None or not instance.ip or not instance.live:
            # a stopped or terminated instance gets no traffic (AWS: unused)
            return ""
        return f"{instance.ip}:{t.port}"

    def _targets(
        self, p: _Pass, lb: LoadBalancer, groups: Mapping[str, TargetGroup], rt: hap.Runtime
    ) -> None:
        """Registered targets in service, draining ones drained, others out."""
        rows = rt.rows()
        now = time.monotonic()
        for group in hap.backends_of(lb, groups):
            backend = rows.get(group.name)
            if group.targets is None or backend is None:
                continue
            label = short_name(group.name, self.o.name_prefix)
            keywords = hap.server_keywords(group, self.o.transition_interval)
            registered: dict[str, tuple[Target, str]] = {}
            for t in group.registered:
                address = self._target_address(p.world, group, t)
                if address:
                    registered[hap.server_name(t, group.port)] = (t, address)
            draining = {hap.server_name(t, group.port): t for t in group.draining}
            for server, (t, address) in sorted(registered.items()):
                key = (group.arn, t.id, t.port)
                row = backend.get(server)
                if row is not None and row.address != address:
                    rt.remove(group.name, server)
                    self.log.info(f"{label}: {server} moved from {row.address} to {address}")
                    row = None
                if row is None:
                    rt.add(group.name, server, address, keywords)
                    rt.enter(group.name, server)
                    self.server_memory[key] = hap.ServerMemory()
                    self.log.info(f"{label}: {server} ({address}) registered: health checks begin")
                    continue
                if row.kind in ("MAINT", "DRAIN"):
                    # registered again (while draining too): a target group
                    # takes it as a new target, no request before the
                    # healthy threshold of checks passed
                    rt.enter(group.name, server)
                    self.server_memory[key] = hap.ServerMemory()
                    self.log.info(f"{label}: {server} registered again: health checks begin")
                    continue
                if row.kind in ("UP", "NOLB") and row.uweight == 0:
                    rt.give_weight(group.name, server)
                    self.log.info(f"{label}: {server} passed the healthy threshold: in service")
                memory = self.server_memory.setdefault(key, hap.ServerMemory())
                p.health[key] = hap.health_from_row(row, memory, group, now)
            for server, t in sorted(draining.items()):
                key = (group.arn, t.id, t.port)
                row = backend.get(server)
                if row is None:
                    p.health[key] = hap.Health("drained")
                elif row.kind in ("UP", "NOLB"):
                    # no new request; those in flight finish (HAProxy shows
                    # a draining server as DRAIN, or DOWN when its checks fail)
                    rt.drain(group.name, server)
                    self.log.info(f"{label}: {server} deregistered: draining ({row.sessions} open)")
                elif row.sessions == 0:
                    p.health[key] = hap.Health("drained")
                    if rt.remove(group.name, server):
                        self.log.info(f"{label}: {server} drained: removed")
            for server in sorted(set(backend) - set(registered) - set(draining)):
                if rt.remove(group.name, server):
                    self.log.info(f"{label}: {server} no longer registered: removed")
                else:
                    self.log.problem(f"{label} {server}", "HAProxy keeps it (connections)")

    def _report(self, p: _Pass) -> None:
        """Health changes logged (whether or not the emulator takes reports),
        then reported."""
        groups = p.world.target_groups or {}
        for key, h in sorted(p.health.items()):
            before = self.health.get(key)
            changed = before is None or before.state != h.state
            if changed and h.state != "drained" and key[0] in groups:
                name = short_name(groups[key[0]].name, self.o.name_prefix)
                was = before.state if before else "new"
                why = f" ({h.reason}: {h.description})" if h.state == "unhealthy" else ""
                self.log.info(f"{name}: {key[1]}:{key[2]} {was} -> {h.state}{why}")
            self.health[key] = h
        self.reporter.send(p.health)

    # -- security groups -----------------------------------------------------

    def _security_groups(self, p: _Pass) -> None:
        world = p.world
        if p.members is None or world.instances is None or world.load_balancers is None:
            return
        todo: list[tuple[str, int, tuple[str, ...]]] = []
        for c in self._mine(p, "instance"):
            i = world.instances.get(c.labels.get("threetier.instance-id", ""))
            if c.running and i is not None and i.live:
                todo.append((c.name, c.pid, i.security_groups))
        for c in self._mine(p, "load-balancer"):
            lb = world.load_balancers.get(c.labels.get("threetier.lb-arn", ""))
            if c.running and lb is not None:
                todo.append((c.name, c.pid, lb.security_groups))
        for identifier, c in p.rds.items():
            db = (world.db_instances or {}).get(identifier)
            if c.running and db is not None:
                todo.append((c.name, c.pid, db.security_groups))
        for name, pid, groups in todo:
            rules = self._ruleset(p, groups, name)
            if rules is None or not pid or name in p.launched:
                continue  # a container made in this pass has its rules (the listing is older)
            try:
                self._apply_rules(name, pid, rules)
            except Exception as exc:  # the others still get theirs
                self.log.problem(f"security groups {name}", str(exc))
                p.ok = False

    # -- VPC DNS -------------------------------------------------------------

    def _vpc_dns(self, p: _Pass) -> None:
        if p.hosts is None:
            return
        for c in self._mine(p, "instance"):
            if not c.running:
                continue
            path = self.hosts_paths.get(c.id)
            if path is None:
                path = self.podman.inspect(c.name).get("HostsPath", "")
                self.hosts_paths[c.id] = path
            if path and _write_hosts(path, p.hosts):
                self.log.info(f"VPC DNS of {c.name} updated ({len(p.hosts)} names)")

    # -- summary -------------------------------------------------------------

    def _summarize(self, p: _Pass) -> None:
        world = p.world
        parts = [f"networks {len(p.networks)}"]
        if world.instances is not None:
            live = [i for i in world.instances.values() if i.live]
            running = sum(1 for c in self._mine(p, "instance") if c.running)
            parts.append(f"instances {len(live)} live, {running} containers running")
        if world.load_balancers is not None:
            parts.append(f"load balancers {len(world.load_balancers)}")
        by_group: dict[str, dict[str, int]] = {}
        for (arn, _, _), h in sorted(self.health.items()):
            if world.target_groups and arn in world.target_groups:
                name = short_name(world.target_groups[arn].name, self.o.name_prefix)
                by_group.setdefault(name, {}).setdefault(h.state, 0)
                by_group[name][h.state] += 1
        for name, counts in sorted(by_group.items()):
            parts.append(f"{name}: " + " ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        # forget health of targets that left
        current = {
            (g.arn, t.id, t.port)
            for g in (world.target_groups or {}).values()
            for t in g.targets or ()
        }
        if world.target_groups is not None:
            for key in list(self.health):
                if key not in current:
                    self.health.pop(key, None)
                    self.server_memory.pop(key, None)
        summary = "; ".join(parts)
        if summary != self.summary:
            self.summary = summary
            self.log.info(f"world: {summary}")


def database_addresses(
    containers: Mapping[str, Container],
    known: dict[str, str],
    address_of: Callable[[Container], str],
) -> dict[str, str]:
    """Each database container's address in the VPC, by DB instance
    identifier: for the VPC's DNS (the RDS endpoint's name) and the security
    groups' members. A container stopped for a moment (its host restarted:
    the stand-in of a failover) keeps its address, as an RDS endpoint's name
    keeps resolving through a failover: without it, every name lookup of the
    endpoint went to the VPC's resolver and waited for its timeout (5 s,
    outside the app's own limits). ``known`` remembers addresses by container
    id; an address is read from a running container only."""
    addresses: dict[str, str] = {}
    for identifier, c in containers.items():
        ip = known.get(c.id, "")
        if not ip and c.running:
            ip = address_of(c)
            if ip:
                known[c.id] = ip
        if ip:
            addresses[identifier] = ip
    return addresses


def _address_in(info: Mapping[str, Any], cidrs: list[str]) -> str:
    """The container's address inside one of the VPC's CIDRs ("" if none)."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    for n in (info.get("NetworkSettings", {}).get("Networks") or {}).values():
        ip = n.get("IPAddress", "")
        if ip and any(ipaddress.ip_address(ip) in net for net in nets):
            return ip
    return ""


def _last_words(podman: Any, name: str, lines: int = 3) -> str:
    """': ' and the last lines a dead container wrote, on one line ('' when
    it wrote none)."""
    said = " | ".join(podman.last_lines(name, lines))
    return f": {said[:400]}" if said else ""


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _write_hosts(path: str, entries: list[tuple[str, str]]) -> bool:
    """The managed block of a container's /etc/hosts, written in place (the
    file is bind-mounted into the container: replacing it would leave the
    container with the old one). True when it changed."""
    with open(path, "r+") as f:
        text = f.read()
        merged = merge_hosts(text, entries)
        if merged == text:
            return False
        f.seek(0)
        f.write(merged)
        f.truncate()
    return True


# --------------------------------------------------------------------------
# The loop


def run(controller: Controller, interval: float, once: bool, stop: threading.Event) -> int:
    """Passes until ``stop`` (SIGTERM, SIGINT): the pass under way finishes,
    the containers stay (they are the data plane; `make down` removes them)."""
    if once:
        try:
            return 0 if controller.run_pass() else 1
        except Exception as exc:
            controller.log.info(f"pass failed: {type(exc).__name__}: {exc}")
            return 1
    controller.log.info(
        f"started: emulator {controller.o.endpoint}, containers {controller.o.container_prefix}*,"
        f" state in {controller.state_dir}"
    )
    while not stop.is_set():
        began = time.monotonic()
        try:
            controller.run_pass()
        except Exception as exc:  # the loop never dies
            controller.log.problem("pass", f"{type(exc).__name__}: {exc}")
        stop.wait(max(0.0, interval - (time.monotonic() - began)))
    controller.log.info("stopped (containers left running)")
    return 0
