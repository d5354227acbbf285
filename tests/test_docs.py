"""docs/reference.md is generated from the argument specs and the playbooks:
the committed file must be what scripts/gen-reference.py writes now, and the
generator must notice a change (and name it) when something moves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "scripts" / "gen-reference.py"


def run_gen(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen-reference.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reference_is_up_to_date():
    proc = run_gen(ROOT, "--check")
    assert proc.returncode == 0, f"docs/reference.md is stale: run `make reference`\n{proc.stderr}"


def test_reference_lists_every_role_option_and_playbook():
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parent.parent.name
        specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))["argument_specs"]
        for entry, spec in specs.items():
            assert f"#### {role}: entry point `{entry}`" in text
            for option in (spec or {}).get("options") or {}:
                assert f"| `{option}` |" in text, f"{role}/{entry}: {option} missing"
    for playbook in sorted(ROOT.glob("playbooks/*.yml")):
        assert f"### playbooks/{playbook.name}" in text
    # the operator inputs the playbooks' own comments promise
    for var in ("release_version", "release_serial", "aws_teardown_confirm"):
        assert f"| `{var}` | `-e` |" in text


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the generator reads, to change without touching the repo."""
    for sub in ("roles", "playbooks", "inventories", "docs"):
        shutil.copytree(
            ROOT / sub,
            tmp_path / sub,
            ignore=shutil.ignore_patterns("molecule", "files", "templates"),
        )
    (tmp_path / "scripts").mkdir()
    shutil.copy2(GEN, tmp_path / "scripts" / GEN.name)
    # a fresh baseline of the copy (the repo's own staleness is the first test's)
    assert run_gen(tmp_path).returncode == 0
    assert run_gen(tmp_path, "--check").returncode == 0
    return tmp_path


def test_check_names_a_changed_role_option(tree: Path):
    spec_file = tree / "roles" / "aws_network" / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    specs["argument_specs"]["main"]["options"]["aws_network_vpc_cidr"]["default"] = "10.9.0.0/16"
    spec_file.write_text(yaml.safe_dump(specs), encoding="utf-8")
    proc = run_gen(tree, "--check")
    assert proc.returncode == 1
    assert "aws_network: entry point `main` (changed)" in proc.stderr
    assert "10.9.0.0/16" in proc.stderr
    # regenerating makes it current again
    assert run_gen(tree).returncode == 0
    assert run_gen(tree, "--check").returncode == 0


def test_check_names_a_new_role(tree: Path):
    shutil.copytree(tree / "roles" / "aws_outputs", tree / "roles" / "aws_extra")
    proc = run_gen(tree, "--check")
    assert proc.returncode == 1
    assert "aws_extra (missing)" in proc.stderr


def test_undescribed_playbook_input_is_an_error(tree: Path):
    playbook = tree / "playbooks" / "outputs.yml"
    plays = yaml.safe_load(playbook.read_text(encoding="utf-8"))
    plays[0].setdefault("tasks", []).append(
        {
            "name": "Use an operator input",
            "ansible.builtin.debug": {"msg": "{{ outputs_only_tier | default('web') }}"},
        }
    )
    playbook.write_text(yaml.safe_dump(plays), encoding="utf-8")
    proc = run_gen(tree, "--check")
    assert proc.returncode == 2
    assert "playbooks/outputs.yml takes `outputs_only_tier`" in proc.stderr


def test_description_of_a_variable_no_playbook_takes_is_an_error(tree: Path):
    descriptions = tree / "docs" / "playbook-vars.toml"
    descriptions.write_text(
        descriptions.read_text(encoding="utf-8")
        + "release_nothing = 'Not read by any playbook.'\n",
        encoding="utf-8",
    )
    proc = run_gen(tree, "--check")
    assert proc.returncode == 2
    assert "`release_nothing`, which no playbook takes" in proc.stderr
