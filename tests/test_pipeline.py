"""The delivery pipeline (.github/workflows/delivery.yml): valid against
GitHub's workflow schema, stages in order (lint -> tests -> bake -> dev ->
staging -> production), production behind its approval environment, AWS
access only through OIDC, every make target, playbook and inventory it
calls present in the repository, and one bake promoted: the AMIs are baked
once (in dev, shared with the other environments' accounts) and every
environment releases exactly those AMIs immutably, never in place, staging
and production copying them into their own accounts first when they are
other accounts. Each check is also shown to catch a broken copy of the
workflow."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "delivery.yml"
STAGES = ["lint", "tests", "bake", "release-dev", "release-staging", "release-production"]
ENVIRONMENTS = {
    "release-dev": "dev",
    "release-staging": "staging",
    "release-production": "production",
}
OIDC_ACTION = "aws-actions/configure-aws-credentials@"
BAKED_VERSION = "${{ needs.bake.outputs.version }}"
# environments that may be accounts of their own: they copy the shared AMIs
# from the baking account (dev's) before they release them
PROMOTING = {"release-staging", "release-production"}


def load(path: Path = WORKFLOW) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads a bare `on` as true; the file quotes it, but be sure
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def check_jsonschema() -> str:
    exe = Path(sys.executable).parent / "check-jsonschema"
    found = str(exe) if exe.exists() else shutil.which("check-jsonschema")
    if not found:
        pytest.fail("check-jsonschema is not installed (requirements.txt)")
    return found


def validate_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def needs(job: dict) -> set[str]:
    n = job.get("needs", [])
    return {n} if isinstance(n, str) else set(n)


def upstream(jobs: dict, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(needs(jobs[name]))
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(needs(jobs[j]))
    return seen


def env_name(job: dict) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def order_problems(doc: dict) -> list[str]:
    jobs = doc["jobs"]
    problems = []
    missing = [s for s in STAGES if s not in jobs]
    if missing:
        return [f"stages missing: {missing}"]
    for before, after in itertools.pairwise(STAGES):
        if before not in needs(jobs[after]):
            problems.append(f"{after} does not need {before}")
    for i, stage in enumerate(STAGES):
        if upstream(jobs, stage) & set(STAGES[i:]):
            problems.append(f"{stage} depends on a later stage")
        if not set(STAGES[:i]) <= upstream(jobs, stage):
            problems.append(
                f"{stage} can run before {sorted(set(STAGES[:i]) - upstream(jobs, stage))}"
            )
    for job, env in ENVIRONMENTS.items():
        if env_name(jobs[job]) != env:
            problems.append(f"{job} does not run in the {env} environment")
    return problems


def job_lines(job: dict) -> list[str]:
    lines = []
    for step in job.get("steps", []):
        if "run" in step:
            lines.extend(" ".join(step["run"].split("\n")).split("&&"))
    return lines


def run_lines(doc: dict) -> list[str]:
    return [line for job in doc["jobs"].values() for line in job_lines(job)]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-zA-Z0-9_-]+):(?!=)", text, flags=re.M))


def reference_problems(doc: dict) -> list[str]:
    problems = []
    targets = makefile_targets()
    for line in run_lines(doc):
        for target in re.findall(r"\bmake\s+(?:-\S+\s+)*([a-z][a-z0-9_-]*)", line):
            if target not in targets:
                problems.append(f"`make {target}`: no such Makefile target")
        for env in re.findall(r"\bENV=([a-z0-9_-]+)", line):
            if not (ROOT / "inventories" / env).is_dir():
                problems.append(f"ENV={env}: no inventories/{env}")
        for inv in re.findall(r"-i\s+(inventories/[a-z0-9_-]+)", line):
            if not (ROOT / inv).is_dir():
                problems.append(f"{inv}: no such inventory")
        for pb in re.findall(r"(playbooks/[\w-]+\.ya?ml)", line):
            if not (ROOT / pb).is_file():
                problems.append(f"{pb}: no such playbook")
    return problems


def credential_problems(doc: dict) -> list[str]:
    problems = []
    text = yaml.safe_dump(doc)
    if "secrets." in text:
        problems.append("the workflow reads repository secrets (AWS access is OIDC only)")
    if re.search(r"aws-(access-key-id|secret-access-key)|AWS_SECRET_ACCESS_KEY", text):
        problems.append("static AWS keys in the workflow")
    if doc.get("permissions") != {"contents": "read"}:
        problems.append("top-level permissions are not read-only")
    for name, job in doc["jobs"].items():
        oidc = [s for s in job.get("steps", []) if s.get("uses", "").startswith(OIDC_ACTION)]
        if oidc:
            if (job.get("permissions") or {}).get("id-token") != "write":
                problems.append(f"{name}: OIDC without id-token: write")
            for step in oidc:
                if "role-to-assume" not in step.get("with", {}):
                    problems.append(f"{name}: configure-aws-credentials without role-to-assume")
        elif name in ENVIRONMENTS or name == "bake":
            problems.append(f"{name}: talks to AWS without OIDC credentials")
        elif (job.get("permissions") or {}).get("id-token"):
            problems.append(f"{name}: id-token without need")
    return problems


def test_workflow_matches_github_schema():
    proc = validate_schema(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    doc = load()
    doc["jobs"]["lint"]["runs-on"] = None
    doc["jobs"]["lint"]["steps"] = "make lint"  # steps must be a list
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert validate_schema(broken).returncode != 0


def test_stages_run_in_order_and_production_waits_for_approval():
    doc = load()
    assert order_problems(doc) == []
    production = doc["jobs"]["release-production"]
    assert "release-staging" in needs(production)
    assert env_name(production) == "production"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda j: j["release-production"].update(needs=["bake"]), "does not need release-staging"),
        (lambda j: j["release-production"].pop("environment"), "production environment"),
        (lambda j: j["tests"].pop("needs"), "does not need lint"),
        (lambda j: j["lint"].update(needs=["release-dev"]), "later stage"),
    ],
)
def test_order_check_catches(change, expected):
    doc = copy.deepcopy(load())
    change(doc["jobs"])
    assert any(expected in p for p in order_problems(doc)), order_problems(doc)


def _gen_reference():
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts" / "gen-reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extra_var_problems(doc: dict) -> list[str]:
    """Every `-e name=...` the workflow gives a playbook is a variable that
    playbook takes, or one of the roles'/inventories' variables."""
    gen = _gen_reference()
    known = gen.known_names()
    problems = []
    for line in run_lines(doc):
        pb = re.search(r"ansible-playbook\b.*?(playbooks/[\w-]+\.ya?ml)", line)
        if not pb or not (ROOT / pb.group(1)).is_file():
            continue
        taken, prompts = gen.playbook_inputs(ROOT / pb.group(1), known)
        for name in re.findall(r"-e\s+([A-Za-z_]\w*)=", line):
            if name not in taken | prompts | known:
                problems.append(f"{pb.group(1)}: -e {name} is no variable it reads")
    return problems


def test_extra_vars_are_what_the_playbooks_read():
    doc = load()
    assert any("-e threetier_release=" in line for line in run_lines(doc))
    assert extra_var_problems(doc) == []
    doc["jobs"]["bake"]["steps"].append(
        {"run": "ansible-playbook -i inventories/local playbooks/images.yml -e image_version=1.0.0"}
    )
    assert extra_var_problems(doc) == [
        "playbooks/images.yml: -e image_version is no variable it reads"
    ]


def test_every_make_target_playbook_and_inventory_exists():
    doc = load()
    called = [t for line in run_lines(doc) for t in re.findall(r"\bmake\s+([a-z][\w-]*)", line)]
    assert {"lint", "test-app", "test-kit", "release"} <= set(called)
    assert reference_problems(doc) == []


def test_reference_check_catches_a_missing_target():
    doc = copy.deepcopy(load())
    doc["jobs"]["lint"]["steps"].append({"run": "make lint-everything && make release ENV=qa"})
    problems = reference_problems(doc)
    assert "`make lint-everything`: no such Makefile target" in problems
    assert "ENV=qa: no inventories/qa" in problems


def test_aws_access_is_oidc_only():
    doc = load()
    assert credential_problems(doc) == []
    # the releases use the environment's own role
    for job in ENVIRONMENTS:
        steps = doc["jobs"][job]["steps"]
        oidc = next(s for s in steps if s.get("uses", "").startswith(OIDC_ACTION))
        assert oidc["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


def test_credential_check_catches_stored_keys():
    doc = copy.deepcopy(load())
    step = next(
        s
        for s in doc["jobs"]["release-staging"]["steps"]
        if s.get("uses", "").startswith(OIDC_ACTION)
    )
    step["with"] = {"aws-access-key-id": "${{ secrets.KEY }}", "aws-region": "eu-west-1"}
    doc["jobs"]["release-staging"]["permissions"] = {"contents": "read"}
    problems = credential_problems(doc)
    assert any("secrets" in p for p in problems)
    assert "release-staging: OIDC without id-token: write" in problems
    assert "release-staging: configure-aws-credentials without role-to-assume" in problems


# --- one bake, promoted ------------------------------------------------------


# a value on a command line: a GitHub expression (with its spaces) or a word
VALUE = r"\$\{\{[^}]*\}\}|\S*"


def make_calls(job: dict, target: str) -> list[dict[str, str]]:
    """Each `make <target> VAR=value ...` of a job -> its variables."""
    calls = []
    for line in job_lines(job):
        m = re.search(rf"\bmake\s+(?:-\S+\s+)*{target}\b(.*)", line)
        if m:
            calls.append(dict(re.findall(rf"\b([A-Z_]+)=({VALUE})", m.group(1))))
    return calls


def playbook_calls(job: dict, playbook: str) -> list[str]:
    return [line for line in job_lines(job) if f"playbooks/{playbook}" in line]


def promotion_problems(doc: dict) -> list[str]:
    """The AMIs are baked once, in the bake job, and shared; every release
    job releases exactly the baked release immutably without baking again;
    staging and production promote (copy) the shared AMIs first."""
    jobs = doc["jobs"]
    problems = []
    bakes = {
        name: len(playbook_calls(job, "images.yml"))
        + sum(
            1
            for c in make_calls(job, "release")
            if c.get("STRATEGY") == "immutable" and c.get("BAKE", "yes") != "no"
        )
        for name, job in jobs.items()
    }
    if bakes.get("bake") != 1:
        problems.append(f"bake bakes {bakes.get('bake', 0)} times (once: playbooks/images.yml)")
    for name, count in bakes.items():
        if name != "bake" and count:
            problems.append(f"{name} bakes again")
    bake_lines = playbook_calls(jobs.get("bake", {}), "images.yml")
    if bake_lines and not all(
        "-e aws_image_bake_share_accounts=${{ vars.AMI_SHARE_ACCOUNTS }}" in line
        for line in bake_lines
    ):
        problems.append("bake does not share the AMIs with the accounts of vars.AMI_SHARE_ACCOUNTS")
    for name in ENVIRONMENTS:
        job = jobs[name]
        if playbook_calls(job, "release.yml"):
            problems.append(f"{name} releases in place (playbooks/release.yml)")
        releases = make_calls(job, "release")
        direct = playbook_calls(job, "release_immutable.yml")
        if not releases and not direct:
            problems.append(f"{name} releases nothing")
        for call in releases:
            if call.get("STRATEGY") != "immutable":
                problems.append(
                    f"{name} releases in place (make release without STRATEGY=immutable)"
                )
            if call.get("VERSION") != BAKED_VERSION:
                problems.append(
                    f"{name} releases {call.get('VERSION')}, not the baked {BAKED_VERSION}"
                )
        for line in direct:
            if f"-e release_version={BAKED_VERSION}" not in line:
                problems.append(
                    f"{name} runs release_immutable.yml for another release than the baked one"
                )
        if direct and {t for line in direct for t in re.findall(r"release_tier=(\w+)", line)} != {
            "web",
            "app",
        }:
            problems.append(f"{name} runs release_immutable.yml for one tier only")
        promotes = [c for c in releases if c.get("PROMOTE_FROM")] + playbook_calls(
            job, "ami_promote.yml"
        )
        if name in PROMOTING:
            wanted = "${{ vars.AMI_SOURCE_ACCOUNT }}"
            if not promotes:
                problems.append(f"{name} does not promote the shared AMIs into its account")
            for c in promotes:
                source = (
                    c.get("PROMOTE_FROM")
                    if isinstance(c, dict)
                    else (re.findall(rf"aws_ami_promote_source_account=({VALUE})", c) or [""])[0]
                )
                if source != wanted:
                    problems.append(f"{name} promotes from {source}, not {wanted}")
        elif promotes:
            problems.append(f"{name} promotes, but it is the baking account")
    return problems


def test_every_stage_releases_the_baked_amis_immutably():
    doc = load()
    assert promotion_problems(doc) == []
    for name in ENVIRONMENTS:
        (call,) = make_calls(doc["jobs"][name], "release")
        assert call["STRATEGY"] == "immutable"
        assert call["BAKE"] == "no"
        assert ("PROMOTE_FROM" in call) == (name in PROMOTING)


def _run_step(jobs: dict, job: str, needle: str) -> dict:
    return next(s for s in jobs[job]["steps"] if needle in s.get("run", ""))


def _replace_run(jobs: dict, job: str, needle: str, old: str, new: str) -> None:
    step = _run_step(jobs, job, needle)
    assert old in step["run"], (job, old)
    step["run"] = step["run"].replace(old, new)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda j: _replace_run(j, "release-dev", "make release", " STRATEGY=immutable", ""),
            "release-dev releases in place (make release without STRATEGY=immutable)",
        ),
        (
            lambda j: _run_step(j, "release-dev", "make release").update(
                run="sudo -E .venv/bin/ansible-playbook -i inventories/dev playbooks/release.yml"
                " -e release_version=${{ needs.bake.outputs.version }}"
            ),
            "release-dev releases in place (playbooks/release.yml)",
        ),
        (
            lambda j: _replace_run(j, "release-staging", "make release", " BAKE=no", ""),
            "release-staging bakes again",
        ),
        (
            lambda j: j["release-production"]["steps"].append(
                {"run": "ansible-playbook -i inventories/production playbooks/images.yml"}
            ),
            "release-production bakes again",
        ),
        (
            lambda j: _replace_run(
                j,
                "release-production",
                "make release",
                "PROMOTE_FROM=${{ vars.AMI_SOURCE_ACCOUNT }}",
                "",
            ),
            "release-production does not promote the shared AMIs into its account",
        ),
        (
            lambda j: _replace_run(
                j,
                "release-staging",
                "make release",
                "VERSION=${{ needs.bake.outputs.version }}",
                "VERSION=${{ github.ref_name }}",
            ),
            "release-staging releases ${{ github.ref_name }}, not the baked",
        ),
        (
            lambda j: _replace_run(
                j,
                "bake",
                "images.yml",
                "-e aws_image_bake_share_accounts=${{ vars.AMI_SHARE_ACCOUNTS }}",
                "",
            ),
            "bake does not share the AMIs",
        ),
        (
            lambda j: j["bake"]["steps"].remove(_run_step(j, "bake", "images.yml")),
            "bake bakes 0 times",
        ),
    ],
)
def test_promotion_check_catches(change, expected):
    doc = copy.deepcopy(load())
    change(doc["jobs"])
    problems = promotion_problems(doc)
    assert any(expected in p for p in problems), problems
