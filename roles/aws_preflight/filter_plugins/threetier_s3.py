"""S3 bucket-name checks for the pre-flight play: the naming rules of general
purpose buckets (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html),
so that a name S3 refuses stops the run before anything changes."""

from __future__ import annotations

import re

# prefixes and suffixes S3 keeps for itself (access points, Object Lambda,
# Multi-Region Access Points, directory and table buckets, its own examples)
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
PLACEHOLDER = "CHANGE-ME"


def bucket_name_rules(name: str) -> list[str]:
    """The rules `name` breaks, in words (empty: a valid bucket name)."""
    broken = []
    if not 3 <= len(name) <= 63:
        broken.append(f"3 to 63 characters (it has {len(name)})")
    bad = sorted(set(re.sub(r"[a-z0-9.-]", "", name)))
    if bad:
        shown = " ".join(c if c.isprintable() and not c.isspace() else repr(c) for c in bad)
        broken.append(f"only lowercase letters, digits, hyphens and dots, not {shown}")
    if not re.match(r"[a-z0-9]", name[:1]):
        broken.append("it must start with a lowercase letter or a digit")
    if not re.match(r"[a-z0-9]", name[-1:]):
        broken.append("it must end with a lowercase letter or a digit")
    if ".." in name:
        broken.append("no two adjacent dots")
    if re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", name):
        broken.append("it must not look like an IP address")
    broken += [f"the prefix {p} is reserved" for p in RESERVED_PREFIXES if name.startswith(p)]
    broken += [f"the suffix {s} is reserved" for s in RESERVED_SUFFIXES if name.endswith(s)]
    return broken


def bucket_problems(names):
    """names: mapping variable -> bucket name, or (variable, name) pairs.
    One message per invalid name, naming the variable and the rules it
    breaks; a name given by several variables (one defaults to the other) is
    reported once, under the first; empty names are left to the check of
    required variables."""
    problems = []
    seen = set()
    pairs = names.items() if isinstance(names, dict) else (names or [])
    for var, name in pairs:
        name = "" if name is None else str(name)
        if not name or name in seen:
            continue
        seen.add(name)
        broken = bucket_name_rules(name)
        if not broken:
            continue
        hint = (
            f". It still holds the shipped placeholder {PLACEHOLDER}: bucket names are global"
            " in S3, replace it with something of your own in lowercase (e.g. the account id)"
            if PLACEHOLDER.lower() in name.lower()
            else ""
        )
        problems.append(
            f'{var}: "{name}" is not a valid S3 bucket name ({"; ".join(broken)}){hint}'
        )
    return problems


class FilterModule:
    def filters(self):
        return {"threetier_bucket_problems": bucket_problems}
