#!/usr/bin/env python3
"""Write docs/reference.md: every variable of every role and playbook.

Roles: read from roles/*/meta/argument_specs.yml (every entry point, every
option with its type, default, choices, whether it is required, and its
description; suboptions as `parent.child`).

Playbooks: the variables a playbook takes from the operator (-e, or
vars_prompt) are found by reading the playbook itself: every variable its
templates and conditions use, minus what roles, inventories, play/task vars,
register and set_fact define, minus Ansible's own. Their descriptions live in
docs/playbook-vars.toml; a variable a playbook takes without a description
there (or a description of a variable no playbook takes) is an error, so the
reference cannot silently lose one. A key `playbook.yml:name` there describes
the variable for that playbook only (when it means something else there).

    python scripts/gen-reference.py          # (re)write docs/reference.md
    python scripts/gen-reference.py --check  # exit 1, naming what is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tomllib
import warnings
from pathlib import Path

import jinja2
import jinja2.nodes
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "reference.md"
PLAYBOOK_VARS = ROOT / "docs" / "playbook-vars.toml"

# keys whose value is a bare Jinja expression (no {{ }})
BARE_KEYS = {"when", "that", "until", "changed_when", "failed_when"}
# names Ansible itself provides, or Jinja's own
MAGIC = {
    "groups",
    "hostvars",
    "group_names",
    "inventory_hostname",
    "inventory_hostname_short",
    "inventory_dir",
    "inventory_file",
    "playbook_dir",
    "play_hosts",
    "ansible_play_hosts",
    "ansible_play_batch",
    "ansible_play_hosts_all",
    "role_path",
    "role_name",
    "item",
    "omit",
    "environment",
    "lookup",
    "query",
    "q",
    "now",
    "undef",
    "range",
    "dict",
    "lipsum",
    "cycler",
    "joiner",
    "namespace",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
    "ansible_loop",
}

# host variables the amazon.aws.aws_ec2 inventory plugin gives every instance
INVENTORY_HOSTVARS = {"instance_id", "private_ip_address", "placement", "tags", "image_id"}


class StaleInputError(Exception):
    pass


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# ---------------------------------------------------------------- roles


def md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def fmt_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value) if not isinstance(value, str) else value
        if text == "":
            text = '""'
    else:
        text = json.dumps(value, sort_keys=False, default=str)
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def fmt_type(spec: dict) -> str:
    typ = spec.get("type", "str")
    if spec.get("elements"):
        typ = f"{typ} of {spec['elements']}"
    return typ


def description(spec: dict) -> str:
    desc = spec.get("description", "")
    if isinstance(desc, list):
        desc = " ".join(str(x) for x in desc)
    return md_escape(desc)


def option_rows(options: dict, prefix: str = "") -> list[str]:
    rows = []
    for name, spec in options.items():
        spec = spec or {}
        full = f"{prefix}{name}"
        required = "yes" if spec.get("required") else ""
        default = fmt_value(spec["default"]) if "default" in spec else ""
        choices = ", ".join(fmt_value(c) for c in spec.get("choices", []) or [])
        rows.append(
            f"| `{full}` | {fmt_type(spec)} | {required} | {default} | {choices} "
            f"| {description(spec)} |"
        )
        if spec.get("options"):
            rows.extend(
                option_rows(
                    spec["options"],
                    prefix=f"{full}[]." if spec.get("type") == "list" else f"{full}.",
                )
            )
    return rows


def role_section(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    specs = (load_yaml(spec_file) or {}).get("argument_specs") or {}
    if not specs:
        raise StaleInputError(f"{spec_file.relative_to(ROOT)}: no argument_specs")
    lines = [f"### {role.name}", ""]
    entry_points = sorted(specs, key=lambda e: (e != "main", e))
    for entry in entry_points:
        spec = specs[entry] or {}
        short = md_escape(spec.get("short_description", ""))
        title = (
            "entry point `main`"
            if entry == "main"
            else f"entry point `{entry}` (tasks_from: {entry}.yml)"
        )
        lines.append(f"#### {role.name}: {title}")
        lines.append("")
        if short:
            lines.append(short)
            lines.append("")
        options = spec.get("options") or {}
        if not options:
            lines.append("No options.")
            lines.append("")
            continue
        lines.append("| Variable | Type | Required | Default | Choices | Description |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        lines.extend(option_rows(options))
        lines.append("")
    return lines


# ---------------------------------------------------------------- playbooks

_env = jinja2.Environment()  # noqa: S701 (parsing only, nothing rendered)
_jinja_ext = re.compile(r"\{\{|\{%")


def jinja_names(text: str, bare: bool) -> set[str]:
    if bare:
        text = "{{ " + text + " }}"
    elif not _jinja_ext.search(text):
        return set()
    try:
        with warnings.catch_warnings():
            # regexes in string literals ('\\s') are Ansible's business, not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = _env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise StaleInputError(f"cannot parse {text!r}: {exc}") from exc
    # the AST, not jinja2.meta: that one compiles, and fails on Ansible's filters
    names = list(tree.find_all(jinja2.nodes.Name))
    stored = {n.name for n in names if n.ctx in ("store", "param")}
    return {n.name for n in names if n.ctx == "load"} - stored


def walk(
    node, used: set[str], defined: set[str], facts: set[str] | None = None, key: str | None = None
) -> None:
    """Collect the variables a YAML tree uses, the ones it defines for its own
    scope (vars, loop_var) and the facts it leaves to later plays (register,
    set_fact; into `facts`, or `defined` when not given)."""
    facts = defined if facts is None else facts
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "vars" and isinstance(v, dict):
                defined.update(v)
            if k in ("set_fact", "ansible.builtin.set_fact") and isinstance(v, dict):
                facts.update(x for x in v if x != "cacheable")
            if k == "vars_prompt" and isinstance(v, list):
                continue  # handled as operator input
            if k == "register" and isinstance(v, str):
                facts.add(v)
            if k == "loop_control" and isinstance(v, dict) and v.get("loop_var"):
                defined.add(v["loop_var"])
            walk(v, used, defined, facts, key=k)
    elif isinstance(node, list):
        for v in node:
            walk(v, used, defined, facts, key=key)
    elif isinstance(node, str):
        used.update(jinja_names(node, bare=key in BARE_KEYS))


def known_names(playbook_inputs_described: set[str] = frozenset()) -> set[str]:
    """Every variable roles and inventories define (an inventory's setting of
    a described playbook input does not count: the playbook still takes it)."""
    names: set[str] = set()
    inventory: set[str] = set()
    for role in (ROOT / "roles").iterdir():
        for sub in ("defaults", "vars"):
            for f in sorted((role / sub).glob("*.yml")) if (role / sub).is_dir() else []:
                names.update((load_yaml(f) or {}).keys())
        spec_file = role / "meta" / "argument_specs.yml"
        if spec_file.exists():
            for spec in ((load_yaml(spec_file) or {}).get("argument_specs") or {}).values():
                names.update(((spec or {}).get("options") or {}).keys())
        # facts the roles set for the plays after them
        for f in (role / "tasks").rglob("*.yml") if (role / "tasks").is_dir() else []:
            used: set[str] = set()
            walk(load_yaml(f), used, names)
    for f in (ROOT / "inventories").rglob("*.yml"):
        if "group_vars" in f.parts or "host_vars" in f.parts:
            inventory.update((load_yaml(f) or {}).keys())
        else:
            data = load_yaml(f) or {}
            walk_inventory_vars(data, inventory)
    return names | (inventory - (playbook_inputs_described - names))


def walk_inventory_vars(node, names: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "vars" and isinstance(v, dict):
                names.update(v)
            elif k == "hosts" and isinstance(v, dict):
                for hv in v.values():
                    if isinstance(hv, dict):
                        names.update(hv)
            walk_inventory_vars(v, names)
    elif isinstance(node, list):
        for v in node:
            walk_inventory_vars(v, names)


def playbook_inputs(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(variables the playbook takes with -e, variables it prompts for)."""
    data = load_yaml(path) or []
    prompts: set[str] = set()
    taken: set[str] = set()
    facts: set[str] = set()  # set by earlier plays: they persist
    for play in data if isinstance(data, list) else []:
        play = play or {}
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:
            sub_taken, sub_prompts = playbook_inputs(path.parent / imported, known)
            taken |= sub_taken - set(play.get("vars") or {})
            prompts |= sub_prompts
            continue
        for prompt in play.get("vars_prompt", []) or []:
            prompts.add(prompt["name"])
        used: set[str] = set()
        scoped: set[str] = set()
        play_facts: set[str] = set()
        walk(play, used, scoped, play_facts)
        # task files the play includes from playbooks/tasks/
        for inc in re.findall(r"tasks/([\w.-]+\.ya?ml)", yaml.safe_dump(play)):
            inc_path = path.parent / "tasks" / inc
            if inc_path.exists():
                walk(load_yaml(inc_path), used, scoped, play_facts)
        taken |= used - scoped - play_facts - facts
        facts |= play_facts
    taken = {
        n
        for n in taken - known - MAGIC - INVENTORY_HOSTVARS - prompts
        if not n.startswith("_") and not n.startswith("ansible_")
    }
    return taken, prompts


def header_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() == "---":
            continue
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines).strip()


def playbook_roles(path: Path) -> list[str]:
    data = load_yaml(path) or []
    roles: list[str] = []
    for play in data if isinstance(data, list) else []:
        for r in (play or {}).get("roles", []) or []:
            name = r if isinstance(r, str) else r.get("role") or r.get("name")
            tags = [] if isinstance(r, str) else r.get("tags", [])
            if "never" in (tags or []):
                continue
            if name not in roles:
                roles.append(name)
        for task in (play or {}).get("tasks", []) or []:
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                if isinstance(task, dict) and isinstance(task.get(key), dict):
                    name = task[key].get("name")
                    if name and name not in roles:
                        roles.append(name)
    return roles


def playbook_sections(descriptions: dict) -> tuple[list[str], list[str]]:
    # a variable described as a playbook's input stays one when an inventory
    # sets it for its environment (the local inventory's shorter waits)
    described = {key.rpartition(":")[2] for key in descriptions}
    known = known_names(playbook_inputs_described=described)
    lines: list[str] = []
    errors: list[str] = []
    seen: set[str] = set()
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        taken, prompts = playbook_inputs(path, known)
        rel = path.relative_to(ROOT).as_posix()
        lines.append(f"### {rel}")
        lines.append("")
        head = header_comment(path)
        if head:
            lines.append("```text")
            lines.append(head)
            lines.append("```")
            lines.append("")
        roles = playbook_roles(path)
        if roles:
            lines.append("Roles it runs: " + ", ".join(f"[{r}](#{r})" for r in roles) + ".")
            lines.append("")
        inputs = sorted(taken | prompts)
        if not inputs:
            lines.append(
                "Operator variables: none (everything comes from the inventory"
                " and the roles' defaults)."
            )
            lines.append("")
            continue
        lines.append("| Variable | How | Description |")
        lines.append("| --- | --- | --- |")
        for name in inputs:
            seen.add(name)
            how = "vars_prompt" if name in prompts else "`-e`"
            entry = descriptions.get(f"{path.name}:{name}") or descriptions.get(name)
            seen.add(f"{path.name}:{name}")
            if not entry:
                errors.append(
                    f"{rel} takes `{name}` but "
                    f"{PLAYBOOK_VARS.relative_to(ROOT)} does not describe it"
                )
                continue
            lines.append(f"| `{name}` | {how} | {md_escape(entry)} |")
        lines.append("")
    for name in sorted(set(descriptions) - seen):
        errors.append(
            f"{PLAYBOOK_VARS.relative_to(ROOT)} describes `{name}`, which no playbook takes"
        )
    return lines, errors


# ---------------------------------------------------------------- document


def render() -> str:
    descriptions = (
        tomllib.loads(PLAYBOOK_VARS.read_text(encoding="utf-8")) if PLAYBOOK_VARS.exists() else {}
    )
    out = [
        "# threetier variable reference",
        "",
        "<!-- Generated by scripts/gen-reference.py from roles/*/meta/argument_specs.yml,",
        "     playbooks/*.yml and docs/playbook-vars.toml. Do not edit: run `make reference`. -->",
        "",
        "Every input of every role (from its argument specs: the role checks them before it does",
        "anything) and every variable a playbook takes from the operator (`-e name=value`).",
        "Inventories (`inventories/<env>/group_vars/`) set the roles' variables per environment.",
        "",
        "## Playbooks",
        "",
    ]
    pb_lines, errors = playbook_sections(descriptions or {})
    if errors:
        raise StaleInputError("\n".join(errors))
    out.extend(pb_lines)
    out.append("## Roles")
    out.append("")
    roles = sorted(
        p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists()
    )
    missing = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir() and p not in roles)
    if missing:
        raise StaleInputError("roles without meta/argument_specs.yml: " + ", ".join(missing))
    out.append("Roles: " + ", ".join(f"[{r.name}](#{r.name})" for r in roles) + ".")
    out.append("")
    for role in roles:
        out.extend(role_section(role))
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/reference.md is stale")
    args = parser.parse_args()
    try:
        text = render()
    except (StaleInputError, OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        print(f"gen-reference: {exc}", file=sys.stderr)
        return 2
    rel = OUTPUT.relative_to(ROOT)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current == text:
            print(f"{rel} is up to date")
            return 0
        stale = stale_sections(current, text)
        print(f"{rel} is stale (run `make reference`); sections that differ:", file=sys.stderr)
        for s in stale:
            print(f"  {s}", file=sys.stderr)
        diff = list(
            difflib.unified_diff(
                current.splitlines(), text.splitlines(), str(rel), "generated", lineterm=""
            )
        )
        print("\n".join(diff[:40]), file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {rel}")
    return 0


def sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = "(preamble)"
    for line in text.splitlines():
        if line.startswith("### ") or line.startswith("#### "):
            current = line.lstrip("#").strip()
        out.setdefault(current, []).append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def stale_sections(current: str, wanted: str) -> list[str]:
    have, want = sections(current), sections(wanted)
    names = []
    for name in list(want) + [n for n in have if n not in want]:
        if have.get(name) != want.get(name):
            state = "missing" if name not in have else "obsolete" if name not in want else "changed"
            names.append(f"{name} ({state})")
    return names


if __name__ == "__main__":
    sys.exit(main())
