"""Security groups as nftables tables inside the containers' network namespaces.

Why nftables in each container's own namespace, applied from the host with
``nsenter``: on AWS a security group is enforced outside the instance (the
hypervisor), so nothing in the instance can change it. The containers run
without CAP_NET_ADMIN (podman's default capability set), so they cannot touch
a table put in from the host either; and the images carry nothing for it: the
host's nft runs in the container's network namespace only.

Semantics copied from AWS: stateful (replies of an allowed flow pass both
ways), everything not allowed is dropped (AWS drops; it never rejects), the
loopback interface is not filtered, and a security group's rules only add
(allow lists, no deny).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable

from .controller_world import Rule

TABLE = "threetier_sg"

_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


def _protocol(value: str) -> str:
    p = value.strip().lower()
    return _PROTOCOL_NAMES.get(p, p)


def _ports(from_port: int | None, to_port: int | None) -> str:
    """ "" for all ports, "80" or "5000-5010" otherwise."""
    if from_port is None or to_port is None or from_port < 0 or to_port < 0:
        return ""
    if from_port <= 0 and to_port >= 65535:
        return ""
    return str(from_port) if from_port == to_port else f"{from_port}-{to_port}"


def _address_matches(sources: tuple[str, ...], direction: str) -> list[str]:
    """One nft match per address family: "ip saddr {...}", "ip6 saddr {...}";
    a /0 means the whole family."""
    key = "saddr" if direction == "ingress" else "daddr"
    out = []
    for family, sep in (("ip", "."), ("ip6", ":")):
        nets = [s for s in sources if sep in s.split("/")[0]]
        if not nets:
            continue
        if any(n.endswith("/0") for n in nets):
            out.append("meta nfproto " + ("ipv4" if family == "ip" else "ipv6"))
        elif len(nets) == 1:
            out.append(f"{family} {key} {nets[0]}")
        else:
            out.append(f"{family} {key} {{ {', '.join(nets)} }}")
    return out


def rule_lines(rule: Rule, direction: str) -> list[str]:
    """The nft statements of one resolved permission (one per address family)."""
    protocol = _protocol(rule.protocol)
    if protocol in ("-1", "all"):
        match = ""
    elif protocol in ("tcp", "udp"):
        ports = _ports(rule.from_port, rule.to_port)
        match = f"{protocol} dport {ports}" if ports else f"meta l4proto {protocol}"
    elif protocol in ("icmp", "icmpv6"):
        # FromPort is the ICMP type, ToPort the code; -1 means any
        match = f"meta l4proto {protocol}"
        if rule.from_port is not None and rule.from_port >= 0:
            match = f"{protocol} type {rule.from_port}"
            if rule.to_port is not None and rule.to_port >= 0:
                match += f" {protocol} code {rule.to_port}"
    elif protocol.isdigit():
        match = f"meta l4proto {protocol}"
    else:
        return [f"# unsupported protocol {rule.protocol!r} (group {rule.group_id})"]
    if direction == "egress" and not match and "0.0.0.0/0" in rule.sources:
        # AWS's default egress rule (all traffic to 0.0.0.0/0): accept all
        return [f"accept{_tail(rule)}"]
    return [
        " ".join(x for x in (address, match, "accept") if x) + _tail(rule)
        for address in _address_matches(rule.sources, direction)
    ]


def _tail(rule: Rule) -> str:
    """The group a rule comes from, as its nft comment (what `nft list` shows)."""
    return ' comment "' + (rule.group_id or "rule").replace('"', "") + '"'


def render_ruleset(ingress: Iterable[Rule], egress: Iterable[Rule], label: str = "") -> str:
    """The whole table, replacing the previous one in one transaction (the
    create/delete/create idiom: ``nft -f`` applies the file atomically, so
    there is no instant without rules)."""
    lines = [
        f"# threetier security groups{': ' + label if label else ''}",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "    chain ingress {",
        "        type filter hook input priority filter; policy drop;",
        "        ct state established,related accept",
        '        iifname "lo" accept',
    ]
    lines += [f"        {x}" for r in ingress for x in rule_lines(r, "ingress")]
    lines += [
        "    }",
        "    chain egress {",
        "        type filter hook output priority filter; policy drop;",
        "        ct state established,related accept",
        '        oifname "lo" accept',
        # AWS never filters an instance's queries to the VPC's DNS resolver;
        # locally the resolver is the host's, wherever it is
        '        meta l4proto { tcp, udp } th dport 53 accept comment "VPC DNS"',
    ]
    lines += [f"        {x}" for r in egress for x in rule_lines(r, "egress")]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def apply(pid: int, text: str, timeout: float = 10) -> None:
    """Put the table into the network namespace of process ``pid`` (the
    container's), from the host."""
    result = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "nft", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nft in pid {pid}: {result.stderr.strip() or result.stdout.strip()}")
