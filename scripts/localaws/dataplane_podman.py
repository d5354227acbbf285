"""podman as the EC2 hypervisor and the VPC: containers, networks, routing.

A thin layer over the podman CLI (no API socket to keep running), plus the
host's one routing rule: packets between the VPC's podman networks keep their
addresses. Every call has a time limit; the callers decide what a failure
means. Nothing here decides *what* should exist (controller.py does).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

# Labels every resource of the controller carries. ``fleet=local`` is what
# `make down` removes; ``threetier.controller`` tells two controllers apart
# (the lead's fleet and a developer's, on one machine) by container prefix.
FLEET = {"fleet": "local"}
KIND = "threetier.kind"
OWNER = "threetier.controller"


class PodmanError(RuntimeError):
    """A podman (or iptables) command failed; the message has its stderr."""


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str  # created, initialized, running, exited, stopped, paused, ...
    pid: int
    labels: dict[str, str]
    networks: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Network:
    name: str
    cidr: str
    gateway: str
    labels: dict[str, str]


def _run(
    argv: list[str], timeout: float, stdin: str | None = None, stderr_too: bool = False
) -> str:
    try:
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,  # a terminal's ^C is for the controller only
        )
    except subprocess.TimeoutExpired as exc:
        raise PodmanError(f"{' '.join(argv[:4])}: no answer in {timeout:.0f} s") from exc
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise PodmanError(f"{' '.join(argv[:4])}: {message[-1] if message else result.returncode}")
    return result.stdout + result.stderr if stderr_too else result.stdout


class Podman:
    """The podman CLI. CONTAINERS_CONF must point at scripts/containers.conf
    (runc, lowered ulimits: on the kit's hosts podman's defaults fail every
    container); scripts/local_controller.py sets it when unset."""

    def __init__(self, timeout: float = 60) -> None:
        self.timeout = timeout

    def run(self, *args: str, timeout: float | None = None, stdin: str | None = None) -> str:
        return _run(["podman", *args], timeout or self.timeout, stdin)

    # -- containers --------------------------------------------------------

    def containers(self) -> list[Container]:
        """Every container (one call; filtered by the caller)."""
        out = []
        for c in json.loads(self.run("ps", "-a", "--format", "json", timeout=30) or "[]"):
            names = c.get("Names") or [""]
            out.append(
                Container(
                    id=c.get("Id", ""),
                    name=names[0],
                    state=str(c.get("State", "")).lower(),
                    pid=int(c.get("Pid") or 0),
                    labels=dict(c.get("Labels") or {}),
                    networks=tuple(c.get("Networks") or ()),
                )
            )
        return out

    def image_exists(self, ref: str) -> bool:
        try:
            self.run("image", "exists", ref, timeout=20)
        except PodmanError:
            return False
        return True

    def create(self, args: list[str]) -> str:
        return self.run("create", *args).strip()

    def init(self, name: str) -> None:
        """Networks, mounts and /etc/hosts made, no process yet: the hosts
        block and the security groups go in before the instance's first
        process runs."""
        self.run("init", name)

    def start(self, name: str) -> None:
        self.run("start", name)

    def copy_in(self, source: str, name: str, dest: str) -> None:
        self.run("cp", source, f"{name}:{dest}")

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        self.run("rm", "-f", "-t", str(stop_timeout), name, timeout=stop_timeout + 30)

    def remove_async(self, name: str, stop_timeout: int = 10) -> subprocess.Popen[bytes]:
        """Removal in the background: a systemd container takes a few seconds
        to stop, and a pass should not wait for it."""
        return subprocess.Popen(  # fixed argv
            ["podman", "rm", "-f", "-t", str(stop_timeout), name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def signal(self, name: str, signal: str) -> None:
        self.run("kill", "--signal", signal, name, timeout=20)

    def last_lines(self, name: str, lines: int = 3) -> list[str]:
        """The last lines a container wrote, stdout's then stderr's (podman
        logs gives them apart); none when podman cannot say."""
        try:
            said = _run(
                ["podman", "logs", "--tail", str(lines), name], self.timeout, stderr_too=True
            )
        except PodmanError:
            return []
        return [line.strip() for line in said.splitlines() if line.strip()][-lines:]

    def inspect(self, name: str) -> dict[str, Any]:
        data = json.loads(self.run("container", "inspect", name, timeout=20))
        return data[0] if data else {}

    # -- networks ------------------------------------------------------------

    def networks(self) -> list[Network]:
        out = []
        for n in json.loads(self.run("network", "ls", "--format", "json", timeout=30) or "[]"):
            subnets = n.get("subnets") or [{}]
            out.append(
                Network(
                    name=n.get("name", ""),
                    cidr=subnets[0].get("subnet", ""),
                    gateway=subnets[0].get("gateway", ""),
                    labels=dict(n.get("labels") or {}),
                )
            )
        return out

    def create_network(self, name: str, cidr: str, gateway: str, labels: dict[str, str]) -> None:
        """A bridge with the subnet's CIDR and AWS's router address as its
        gateway. Not ``--internal`` and not isolated: the host routes between
        the VPC's networks, as the VPC's implicit router does. No DNS server
        of podman's: the VPC's names are the hosts block's."""
        args = ["network", "create", "--driver", "bridge", "--disable-dns"]
        args += ["--subnet", cidr, "--gateway", gateway]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        self.run(*args, name)

    def remove_network(self, name: str) -> None:
        self.run("network", "rm", name)


def label_args(labels: dict[str, str]) -> list[str]:
    out = []
    for k, v in labels.items():
        out += ["--label", f"{k}={v}"]
    return out


# --------------------------------------------------------------------------
# Routing between the VPC's networks (host netfilter)

NAT_COMMENT_PREFIX = "threetier-vpc:"


class HostNat:
    """One ``iptables -t nat`` RETURN rule per VPC CIDR, first in POSTROUTING,
    so the host does not masquerade packets between the VPC's podman
    networks (podman's own rules would): every container sees its peers'
    real addresses, as in a VPC, and a security group naming another group
    can be enforced by address. Each rule carries a comment naming the
    controller (its container prefix), so stale ones are found and removed."""

    def __init__(self, owner: str, timeout: float = 20) -> None:
        self.owner = owner
        self.timeout = timeout
        self.comment = NAT_COMMENT_PREFIX + owner

    def _rule(self, cidr: str) -> list[str]:
        return ["-s", cidr, "-d", cidr, "-m", "comment", "--comment", self.comment, "-j", "RETURN"]

    def present(self) -> set[str]:
        """The VPC CIDRs that have this controller's rule."""
        out = _run(["iptables", "-t", "nat", "-S", "POSTROUTING"], self.timeout)
        cidrs = set()
        for line in out.splitlines():
            if self.comment not in line or "-j RETURN" not in line:
                continue
            words = line.split()
            if "-s" in words:
                cidrs.add(words[words.index("-s") + 1])
        return cidrs

    def ensure(self, cidr: str) -> bool:
        """True when the rule had to be added."""
        try:
            _run(["iptables", "-t", "nat", "-C", "POSTROUTING", *self._rule(cidr)], self.timeout)
            return False
        except PodmanError:
            pass
        _run(["iptables", "-t", "nat", "-I", "POSTROUTING", "1", *self._rule(cidr)], self.timeout)
        return True

    def remove(self, cidr: str) -> None:
        _run(["iptables", "-t", "nat", "-D", "POSTROUTING", *self._rule(cidr)], self.timeout)
