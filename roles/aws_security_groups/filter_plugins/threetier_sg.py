"""Ingress rules of one chain link, in the module's form and in the flat form
the aws_state module reports (so the role can compare before it converges)."""

from __future__ import annotations


def sg_flat_rules(ports, cidrs=None, group_id=None):
    """One dict per (port, source): proto, from_port, to_port, cidr|group_id."""
    out = []
    for p in ports:
        p = int(p)
        if cidrs:
            out.extend({"proto": "tcp", "from_port": p, "to_port": p, "cidr": c} for c in cidrs)
        else:
            out.append({"proto": "tcp", "from_port": p, "to_port": p, "group_id": group_id})
    return out


def sg_same_rules(have, want):
    """True when both lists hold the same rules, in any order."""

    def key(r):
        return tuple(sorted((k, str(v)) for k, v in r.items()))

    return sorted(map(key, have or [])) == sorted(map(key, want or []))


class FilterModule:
    def filters(self):
        return {"threetier_sg_flat_rules": sg_flat_rules, "threetier_sg_same_rules": sg_same_rules}
