"""CIDR checks for the pre-flight play (stdlib ipaddress; no netaddr needed)."""

from __future__ import annotations

import ipaddress


def cidr_problems(subnets, vpc_cidr, vpc_var="vpc_cidr"):
    """Return one message per invalid, out-of-VPC or overlapping subnet.

    subnets: mapping of variable name -> CIDR string.
    """
    problems = []
    try:
        vpc = ipaddress.ip_network(str(vpc_cidr), strict=True)
    except ValueError as err:
        return [f"{vpc_var}: {vpc_cidr!r} is not a network CIDR ({err})"]
    nets = {}
    for var, cidr in subnets.items():
        try:
            net = ipaddress.ip_network(str(cidr), strict=True)
        except ValueError as err:
            problems.append(f"{var}: {cidr!r} is not a network CIDR ({err})")
            continue
        if not net.subnet_of(vpc):
            problems.append(f"{var}: {cidr} is outside the VPC's {vpc} ({vpc_var})")
        nets[var] = net
    names = list(nets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if nets[a].overlaps(nets[b]):
                problems.append(f"{a}: {nets[a]} overlaps {b}: {nets[b]}")
    return problems


def size_problems(sizes):
    """sizes: mapping tier -> {min: (var, value), desired: (var, value), max: (var, value)}.

    Tiers whose variables are not loaded in this play (value '') are skipped.
    """
    problems = []
    for tier, s in sizes.items():
        (vmin, lo), (vdes, des), (vmax, hi) = s["min"], s["desired"], s["max"]
        if "" in (lo, des, hi) or None in (lo, des, hi):
            continue
        try:
            lo, des, hi = int(lo), int(des), int(hi)
        except (TypeError, ValueError):
            problems.append(f"{vmin}/{vdes}/{vmax}: {tier} sizes must be integers")
            continue
        if lo < 0:
            problems.append(f"{vmin}: must be >= 0, got {lo}")
        if lo > des:
            problems.append(f"{vmin} ({lo}) must not exceed {vdes} ({des})")
        if des > hi:
            problems.append(f"{vdes} ({des}) must not exceed {vmax} ({hi})")
        if hi < 1:
            problems.append(f"{vmax}: must be >= 1, got {hi}")
    return problems


class FilterModule:
    def filters(self):
        return {
            "threetier_cidr_problems": cidr_problems,
            "threetier_size_problems": size_problems,
        }
