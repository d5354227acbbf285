"""Every API call of every kit playbook run in this session against moto is
granted by the operator's IAM policy (iam/operator-policy*.json), judged with
what the call acts on: the EC2 resources it names and their Project tag
before and after the run, the tags it creates them with (tag on create,
ec2:CreateTags with ec2:CreateAction), the region, an image's owner, an IAM
role's permissions boundary and the managed policy attached.

The runs are the other tests' own (conftest's Kit records each: site.yml in
test_provision and test_diagram, teardown.yml in test_provision, images.yml
in test_images, release_immutable.yml and launch_templates.yml in
test_immutable, ...), so this module runs last (conftest orders it) and
skips a playbook no test of the session ran. tests/test_diagram.py checks
the production site.yml run the same way. playbooks/release.yml (rolling)
runs only in the local fleet's tests (tests/local, against make up's
emulator): tests/local/test_release.py records its good release there and
judges the calls Ansible made (recorder.operator_calls) the same way.

Runs outside the policy's regions (the dev stack of tests/aws_stack.py is in
us-west-2, the local inventory in us-east-1) are judged as if they were in
the policy's region; the production runs are in eu-west-1 and judged as they
are. Where the kit takes another path under the emulator (aws_emulator), the
calls that path makes instead of AWS's are excused (EMULATOR_ONLY in
tests/iam_policies.py), each naming the role file whose emulator branch makes
them."""

from __future__ import annotations

import pytest
from iam_policies import EMULATOR_ONLY, POLICY_REGIONS, ROOT, judge
from recorder import RUNS

CHECKED = ["site.yml", "teardown.yml", "images.yml", "release_immutable.yml"]
USED_EXCUSES: set[tuple[str, str]] = set()


def test_the_policy_is_scoped_to_regions():
    assert POLICY_REGIONS, "no aws:RequestedRegion condition in the operator's policy"


@pytest.mark.parametrize("playbook", CHECKED)
def test_every_call_is_granted(playbook):
    runs = [r for r in RUNS if r.playbook == playbook]
    if not runs:
        pytest.skip(f"no test of this session ran {playbook} (see the module's docstring)")
    problems, judged = judge(runs, USED_EXCUSES)
    assert judged, f"nothing recorded in {len(runs)} run(s) of {playbook}"
    assert not problems, "\n".join(sorted(set(problems)))


def test_every_call_of_the_other_kit_playbooks_is_granted():
    runs = [r for r in RUNS if r.playbook not in CHECKED]
    if not runs:
        pytest.skip("no other kit playbook ran in this session")
    problems, judged = judge(runs, USED_EXCUSES)
    assert judged, "nothing recorded"
    assert not problems, "\n".join(sorted(set(problems)))


def test_every_emulator_excuse_is_still_needed():
    """Each excuse names the role file whose emulator branch needs it: the
    file still has that branch (aws_emulator, or a file of the emulator's
    alone, marked "Emulator:"), and, when the session ran every playbook,
    some call used the excuse."""
    for (action, kind), (path, _) in EMULATOR_ONLY.items():
        text = (ROOT / path).read_text(encoding="utf-8")
        assert "aws_emulator" in text or "Emulator:" in text, (action, kind, path)
    ran = {r.playbook for r in RUNS if r.emulator}
    if not {"site.yml", "images.yml", "release_immutable.yml"} <= ran:
        pytest.skip("the session did not run site.yml, images.yml and release_immutable.yml")
    judge([r for r in RUNS if r.emulator], USED_EXCUSES)
    assert set(EMULATOR_ONLY) == USED_EXCUSES, sorted(set(EMULATOR_ONLY) - USED_EXCUSES)
