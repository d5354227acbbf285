"""The kit's stdout callback (callback_plugins/threetier.py, chosen by
ansible.cfg): a retrying task says what it waits for and how long is left,
the run ends with a SUMMARY of what changed and where the service answers,
and everything else is the default callback's output, unchanged. Small
playbooks of tests/playbooks/ on localhost, through the kit's runner
(conftest.Kit: the repository's ansible.cfg, no colour); a few seconds."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import time
from types import SimpleNamespace

import pytest
from conftest import ROOT, Kit, Run

WAIT = "../tests/playbooks/callback_wait.yml"
QUIET = "../tests/playbooks/callback_quiet.yml"
SLOW = "tests/playbooks/callback_slow.yml"
# how scripts/up.sh and the tests find recap lines
RECAP_RE = re.compile(r" : ok=[0-9]+ ")


def _plugin():
    spec = importlib.util.spec_from_file_location(
        "threetier_callback", ROOT / "callback_plugins" / "threetier.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(kit: Kit, playbook: str, *extra: str) -> Run:
    return kit.playbook(playbook, *extra, inventory="localhost,", timeout=120)


def _summary(run: Run) -> list[str]:
    """The lines of the SUMMARY block (up to the next blank line)."""
    lines = run.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SUMMARY *"))
    block = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        block.append(line)
    return block


def _before_timer(output: str) -> str:
    # ansible.posix.timer's block (the kit's runner enables it) holds a duration
    return output.split("\nPLAYBOOK RECAP *")[0]


@pytest.fixture(scope="module")
def timed(moto) -> Kit:
    kit = Kit(moto)
    # the timing callbacks make TIMING=1 offers, beside the stdout callback
    kit.env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.timer,ansible.posix.profile_tasks"
    return kit


@pytest.fixture(scope="module")
def waited(timed) -> Run:
    run = _run(timed, WAIT)
    assert run.rc == 0, run.output[-3000:]
    return run


@pytest.fixture(scope="module")
def plain(kit) -> Kit:
    """The same runner with ansible-core's own default stdout callback."""
    other = Kit(kit.moto)
    other.env.update(kit.env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return other


def test_a_wait_says_its_try_and_the_time_left(waited):
    out = waited.output
    task = "Wait up to 5 s for the third try"
    # retries: 5 -> 6 tries in all; delay "{{ tt_delay }}" = 1 s before each try to come
    assert f"waiting [localhost]: {task}: try 2 of 6, about 5 s left\n" in out, out
    assert f"waiting [localhost]: {task}: try 3 of 6, about 4 s left\n" in out, out
    assert "try 4 of 6" not in out
    assert "RETRYING" not in out
    # under its task's banner
    assert out.index(f"TASK [{task}]") < out.index("waiting [localhost]")


def test_the_summary_names_the_changes_and_where_it_answers(waited):
    assert _summary(waited) == [
        # the same task name in both plays, once
        "  localhost: 2 changed: Change one thing",
        "where it answers:",
        "  page: http://127.0.0.1:18080/",
        "  database: db.example.internal:5432",
        "notes:",
        "  two plays, one summary",
    ]
    out = waited.output
    assert out.index("PLAY RECAP *") < out.index("SUMMARY *")


def test_the_recap_stays_and_nothing_else_looks_like_it(waited):
    recap = [line for line in waited.output.splitlines() if RECAP_RE.search(line)]
    assert len(recap) == 1, waited.output
    assert re.match(r"^localhost\s+: ok=5 +changed=2 +unreachable=0 +failed=0 ", recap[0])
    assert waited.recap()["changed"] == 2


def test_timing_callbacks_still_print_beside_it(waited):
    out = waited.output
    assert "Playbook run took" in out
    # profile_tasks' line per task
    assert re.search(r"^Wait up to 5 s for the third try -+ \d+\.\d+s$", out, re.M), out
    assert "\x1b[" not in out  # ANSIBLE_NOCOLOR=1


def test_a_run_that_changes_nothing_says_so(kit):
    run = _run(kit, QUIET)
    assert run.rc == 0, run.output[-3000:]
    assert _summary(run) == ["  nothing changed"]
    assert run.recap()["changed"] == 0


def test_a_failed_run_names_where_it_stopped(kit):
    run = _run(kit, QUIET, "-e", "tt_fail=true")
    assert run.rc == 2, run.output[-3000:]
    assert _summary(run) == [
        "  nothing changed",
        "  localhost: stopped at: Stop here when asked: stopped as asked",
    ]
    # callback_result_format = yaml (ansible.cfg) still shapes the failure
    assert "fatal: [localhost]: FAILED! => \n    changed: false\n    msg: stopped as asked" in (
        run.output
    )


def test_a_failed_command_says_its_last_words_and_a_secret_nothing(kit):
    """The summary is what a log's tail shows: it carries the failure's
    reason (a command's exit and the last line it wrote), never what a no_log
    task hid."""
    run = _run(kit, QUIET, "-e", "tt_fail=command")
    assert run.rc == 2, run.output[-3000:]
    assert _summary(run) == [
        "  nothing changed",
        "  localhost: stopped at: Fail a command when asked: exit code 3: the last words",
    ]
    run = _run(kit, QUIET, "-e", "tt_fail=loop")
    assert run.rc == 2, run.output[-3000:]
    assert _summary(run) == [
        "  nothing changed",
        "  localhost: stopped at: Fail a loop's item when asked: exit code 4: item two broke",
    ]
    run = _run(kit, QUIET, "-e", "tt_fail=secret")
    assert run.rc == 2, run.output[-3000:]
    assert _summary(run) == [
        "  nothing changed",
        "  localhost: stopped at: Fail in secret when asked",
    ]
    assert "hunter2" not in run.output


@pytest.mark.parametrize("extra", [[], ["-e", "tt_fail=true"]], ids=["ok", "failed"])
def test_everything_before_the_summary_is_the_default_output(kit, plain, extra):
    ours, theirs = _run(kit, QUIET, *extra), _run(plain, QUIET, *extra)
    assert "SUMMARY *" not in theirs.output
    assert _before_timer(ours.output).split("\nSUMMARY *")[0] == _before_timer(theirs.output)


def test_a_long_task_shows_its_banner_while_it_runs(kit):
    """ansible.cfg hides skipped hosts, so the default callback prints a
    banner with the task's first result; a long single wait is named while
    it waits instead."""
    env = {**kit.env, "THREETIER_CALLBACK_BANNER_AFTER": "0.5"}
    proc = subprocess.Popen(
        ["ansible-playbook", "-i", "localhost,", SLOW],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[str, float] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        seen.setdefault(line.split(" *")[0].strip(), time.monotonic())
    assert proc.wait(timeout=60) == 0, "".join(lines)
    banner, done = seen["TASK [Wait up to 3 s for nothing]"], seen["ok: [localhost]"]
    # sleep 3: the banner about 0.5 s in, the result about 3 s in
    assert done - banner > 1.5, "".join(lines)
    # a task skipped everywhere still shows no banner
    assert "Skip this one" not in "".join(lines)


class _Screen:
    verbosity = 0

    def __init__(self):
        self.lines: list[str] = []

    def display(self, msg, color=None, **_):
        self.lines.append(msg)


def _retry_line(delay) -> str:
    """What the callback prints for a retry of a task with this delay."""
    callback = _plugin().CallbackModule()
    screen = callback._display = _Screen()
    task = SimpleNamespace(
        delay=delay, loop=None, _uuid="t1", delegate_to=None, get_name=lambda: "Wait for it"
    )
    callback._last_task_banner = task._uuid  # its banner is out already
    callback.v2_runner_retry(
        SimpleNamespace(
            result={"retries": 21, "attempts": 4},
            task=task,
            task_name="Wait for it",
            host=SimpleNamespace(get_name=lambda: "app-1"),
        )
    )
    assert len(screen.lines) == 1
    return screen.lines[0]


def test_a_delay_it_cannot_read_leaves_the_seconds_out():
    assert _retry_line(15) == "waiting [app-1]: Wait for it: try 4 of 21, about 5 min left"
    assert _retry_line("2") == "waiting [app-1]: Wait for it: try 4 of 21, about 36 s left"
    for unknown in ("{{ release_gate_delay }}", None, "", 0):
        assert _retry_line(unknown) == "waiting [app-1]: Wait for it: try 4 of 21"


def test_long_lists_are_cut():
    names = _plugin()._names([f"t{i}" for i in range(11)])
    assert names == "t0; t1; t2; t3; t4; t5; t6; t7 and 3 more"


def test_changed_tasks_read_short():
    names = _plugin()._task_names(
        [
            "aws_network : Create or update the VPC",
            "aws_network : Create the NAT gateways (up to 320 s each)",
            "aws_database : Create or update the RDS instance",
            "Change one thing",
            "aws_network : Tag the NAT gateways (emulator only)",
            *[f"t{i}" for i in range(5)],
        ]
    )
    assert names == (
        "aws_network : Create or update the VPC; Create the NAT gateways; "
        "aws_database : Create or update the RDS instance; Change one thing; "
        "aws_network : Tag the NAT gateways; t0; t1; t2 and 2 more"
    )
