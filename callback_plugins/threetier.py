"""threetier's stdout callback: ansible-core's default output, plus two things.

- A task that retries (until/retries/delay) says what it waits for and how
  long is left, on one line, instead of "FAILED - RETRYING":
      waiting [app-1]: Gate on /readyz: try 3 of 11, about 18 s left
  and a task still running after a few seconds shows its banner then, not
  when its first result comes (ansible.cfg hides skipped hosts, which makes
  the default callback hold banners back): a long single wait is named
  while it waits ("Create or update the RDS instance, then wait up to...").
- After the PLAY RECAP, a SUMMARY: per host, how many tasks changed something
  and which (or that nothing changed), where a run stopped, and where the
  service answers (the `threetier_endpoints` custom stat the playbooks set
  with ansible.builtin.set_stats; `threetier_notes` for anything else).

Everything else is the default callback's, byte for byte (tests and
scripts/up.sh read the recap lines); no line of ours looks like a recap line.
ansible.cfg selects it (stdout_callback = threetier).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
import threading
from collections.abc import Iterable, Mapping

from ansible import constants
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: threetier
    type: stdout
    short_description: the default output, plus waits that say how long is left and a summary
    description:
      - ansible-core's default stdout callback, unchanged, with two additions.
      - A retrying task (until/retries/delay) prints one line per retry naming the task,
        the next try, the number of tries and the seconds of retry delays left
        (retries left x delay; the tries' own run time is not counted).
      - After the PLAY RECAP, a SUMMARY block - per host the number and the names of
        the tasks that changed something (or that nothing changed), the task a failed
        host stopped at and why (the failure's message on one line, with the last line
        a failed command wrote; nothing of a no_log task), the custom stat
        C(threetier_endpoints) (a dict label -> URL or endpoint, set by the playbooks
        with ansible.builtin.set_stats) under "where it answers", and the custom stat
        C(threetier_notes) (a list of lines).
      - A task still running after O(banner_after) seconds shows its banner then (with
        O(display_skipped_hosts=false) the default callback prints it with the first result).
    options:
      banner_after:
        description: Seconds after which a task still running shows its banner (0 - not early).
        type: float
        default: 5
        env:
          - name: THREETIER_CALLBACK_BANNER_AFTER
        ini:
          - section: callback_threetier
            key: banner_after
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout callback in ansible.cfg (stdout_callback = threetier)
"""

ENDPOINTS_STAT = "threetier_endpoints"
NOTES_STAT = "threetier_notes"
# how many names a summary line lists before "and N more"
MAX_NAMES = 8
# "(...)" in a task name: an aside, left out of the summary
_ASIDE = re.compile(r"\s*\([^()]*\)")


def _seconds(value) -> float | None:
    """The task's delay in seconds, or None when unknown (an untemplated
    string, nothing). A negative delay is 1 s, as the task executor has it."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return 1.0 if seconds < 0 else seconds


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{math.ceil(seconds)} s"
    return f"{math.ceil(seconds / 60)} min"


def _names(names: Iterable[str], limit: int = MAX_NAMES) -> str:
    names = list(names)
    shown = "; ".join(names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def _task_names(names: Iterable[str], limit: int = MAX_NAMES) -> str:
    """Changed tasks for the summary: asides in parentheses left out, a role
    named once for its tasks in a row ("aws_network : A; B; aws_database : C")."""
    parts, role = [], None
    names = list(names)
    for name in names[:limit]:
        owner, sep, task = name.partition(" : ")
        if not sep:
            owner, task = None, name
        task = " ".join(_ASIDE.sub("", task).split()) or task
        parts.append(task if owner is None or owner == role else f"{owner} : {task}")
        role = owner
    shown = "; ".join(parts)
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def _one_line(text) -> str:
    return " ".join(str(text).split())


MAX_REASON = 300  # characters of a failure's reason in the summary


def _failure_reason(res: Mapping) -> str:
    """A failed result's reason on one line: its message, and the last line a
    command wrote to stderr (or stdout) when the message is only the exit
    code; for a loop, its first failed item's. The summary is what a log's
    tail shows (CI prints the end of make up's log): without the reason, the
    failure itself had scrolled out of it."""
    if not isinstance(res, Mapping):
        return ""
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            # (ansible-core 2.21 hands callbacks the items without their
            # "failed": a failed module's item has its "exception" key, a
            # failed command its exit code)
            if isinstance(item, Mapping) and (
                item.get("failed")
                or item.get("unreachable")
                or "exception" in item
                or item.get("rc") not in (None, 0)
            ):
                reason = _failure_reason(item)
                if reason:
                    return reason
    msg = _one_line(res.get("msg") or "")
    if "non-zero return code" in msg and isinstance(res.get("rc"), int):
        msg = f"exit code {res['rc']}"
    out = ""
    for key in ("stderr", "stdout"):
        lines = [line for line in str(res.get(key) or "").splitlines() if line.strip()]
        if lines:
            out = _one_line(lines[-1])
            break
    if out and out not in msg and (not msg or msg.startswith("exit code") or len(msg) < 40):
        msg = f"{msg}: {out}" if msg else out
    if len(msg) > MAX_REASON:
        msg = msg[: MAX_REASON - 3] + "..."
    return msg


def _flush() -> None:
    """Out now: a wait's lines are for the one watching it, and ansible's
    display leaves stdout's flushing to the system (block-buffered into a
    pipe or a log: the lines would come with the task's result)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()


def _locked(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._threetier_lock:
            return method(self, *args, **kwargs)

    return locked


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "threetier"

    def __init__(self):
        super().__init__()
        # host -> names of the tasks that changed something, in order, once each
        self._threetier_changed: dict[str, dict[str, None]] = {}
        # host -> the task it failed at (not ignored, not necessarily final:
        # the recap's counters decide whether it is reported)
        self._threetier_failed: dict[str, str] = {}
        # Retries arrive on the strategy's results thread, results on its main
        # thread, late banners on a timer's: one at a time, so that a banner
        # is printed once.
        self._threetier_lock = threading.RLock()
        self._threetier_timer: threading.Timer | None = None
        # hosts of the current task without a result yet
        self._threetier_running: set[str] = set()

    # --- banners of tasks that take a while ---------------------------------
    # A timer runs while a host of the current task has no result yet; when it
    # fires before any result printed the banner, it prints the banner.

    def _threetier_arm(self, task) -> None:
        if self._threetier_timer is not None or self._last_task_banner == task._uuid:
            return
        try:
            after = float(self.get_option("banner_after"))
        except (KeyError, TypeError, ValueError):
            after = 5.0
        if after <= 0:
            return
        timer = threading.Timer(after, self._threetier_late_banner, args=(task,))
        timer.daemon = True
        self._threetier_timer = timer
        timer.start()

    def _threetier_disarm(self) -> None:
        if self._threetier_timer is not None:
            self._threetier_timer.cancel()
            self._threetier_timer = None

    def _threetier_late_banner(self, task) -> None:
        with self._threetier_lock:
            if self._threetier_timer is not threading.current_thread():
                return  # disarmed meanwhile, or another task's timer
            self._threetier_timer = None
            if self._last_task_banner != task._uuid:
                self._print_task_banner(task)
                _flush()

    def _threetier_host_done(self, result) -> None:
        self._threetier_running.discard(result.host.get_name())
        if not self._threetier_running:
            self._threetier_disarm()

    def _threetier_new_task(self) -> None:
        self._threetier_disarm()
        self._threetier_running = set()

    @_locked
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._threetier_new_task()
        super().v2_playbook_on_task_start(task, is_conditional)

    @_locked
    def v2_playbook_on_handler_task_start(self, task):
        self._threetier_new_task()
        super().v2_playbook_on_handler_task_start(task)

    @_locked
    def v2_runner_on_start(self, host, task):
        self._threetier_running.add(host.get_name())
        self._threetier_arm(task)
        super().v2_runner_on_start(host, task)

    @_locked
    def v2_playbook_on_play_start(self, play):
        self._threetier_new_task()
        super().v2_playbook_on_play_start(play)

    @_locked
    def v2_playbook_on_no_hosts_remaining(self):
        self._threetier_new_task()
        super().v2_playbook_on_no_hosts_remaining()

    # the default's other printing callbacks, one at a time with the above
    @_locked
    def v2_runner_on_skipped(self, result) -> None:
        super().v2_runner_on_skipped(result)
        self._threetier_host_done(result)

    @_locked
    def v2_runner_item_on_ok(self, result) -> None:
        super().v2_runner_item_on_ok(result)

    @_locked
    def v2_runner_item_on_failed(self, result) -> None:
        super().v2_runner_item_on_failed(result)

    @_locked
    def v2_runner_item_on_skipped(self, result) -> None:
        super().v2_runner_item_on_skipped(result)

    @_locked
    def v2_on_file_diff(self, result) -> None:
        super().v2_on_file_diff(result)

    @_locked
    def v2_playbook_on_include(self, included_file) -> None:
        super().v2_playbook_on_include(included_file)

    # --- what changed, what failed ---------------------------------------

    def _threetier_task_name(self, result) -> str:
        name = _one_line(result.task_name or result.task)
        return name or "(unnamed task)"

    def _threetier_note_changed(self, result) -> None:
        if result.result.get("changed", False):
            host = result.host.get_name()
            self._threetier_changed.setdefault(host, {})[self._threetier_task_name(result)] = None

    def _threetier_note_stopped(self, result) -> None:
        """The task a host stopped at, and why."""
        where = self._threetier_task_name(result)
        reason = _failure_reason(result.result)
        self._threetier_failed[result.host.get_name()] = f"{where}: {reason}" if reason else where

    @_locked
    def v2_runner_on_ok(self, result) -> None:
        self._threetier_note_changed(result)
        super().v2_runner_on_ok(result)
        self._threetier_host_done(result)

    @_locked
    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if ignore_errors:
            self._threetier_note_changed(result)
        else:
            self._threetier_note_stopped(result)
        super().v2_runner_on_failed(result, ignore_errors=ignore_errors)
        self._threetier_host_done(result)

    @_locked
    def v2_runner_on_unreachable(self, result) -> None:
        self._threetier_note_stopped(result)
        super().v2_runner_on_unreachable(result)
        self._threetier_host_done(result)

    # --- waits -------------------------------------------------------------

    @_locked
    def v2_runner_retry(self, result) -> None:
        res = result.result
        # the executor's counters: `retries` is the number of tries in all
        # (the first run plus the task's retries), `attempts` the next try
        total, following = res.get("retries"), res.get("attempts")
        if not isinstance(total, int) or not isinstance(following, int):
            super().v2_runner_retry(result)
            return
        # the banner first: ansible.cfg hides skipped hosts, which defers the
        # default callback's banner until the task's first result
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        label = ""
        if result.task.loop is not None and "item" in res:
            label = f" (item={_one_line(self._get_item_label(res))})"
        msg = (
            f"waiting [{self.host_label(result)}]{label}: {self._threetier_task_name(result)}: "
            f"try {following} of {total}"
        )
        delay = _seconds(getattr(result.task, "delay", None))
        if delay:
            # one delay before each try still to come
            msg += f", about {_duration((total - following + 1) * delay)} left"
        if self._run_is_verbose(result, verbosity=2):
            msg += f" Result was: {self._dump_results(res)}"
        self._display.display(msg, color=constants.COLOR_DEBUG)
        _flush()

    # --- the end of the run ------------------------------------------------

    @_locked
    def v2_playbook_on_stats(self, stats) -> None:
        self._threetier_new_task()
        super().v2_playbook_on_stats(stats)
        lines = self._threetier_summary(stats)
        if not lines:
            return
        self._display.banner("SUMMARY", cows=False)
        for text, color in lines:
            self._display.display(text, color=color)
        self._display.display("", screen_only=True)

    def _threetier_summary(self, stats) -> list[tuple[str, str | None]]:
        lines: list[tuple[str, str | None]] = []
        hosts = sorted(stats.processed.keys())
        unchanged, stopped = [], []
        for host in hosts:
            counts = stats.summarize(host)
            changed = counts.get("changed", 0)
            if changed:
                names = list(self._threetier_changed.get(host, {}))
                what = f": {_task_names(names)}" if names else ""
                lines.append((f"  {host}: {changed} changed{what}", constants.COLOR_CHANGED))
            else:
                unchanged.append(host)
            if counts.get("failures", 0) or counts.get("unreachable", 0):
                where = self._threetier_failed.get(host)
                stopped.append(f"  {host}: stopped at: {where}" if where else f"  {host}: failed")
        if hosts and len(unchanged) == len(hosts):
            lines.append(("  nothing changed", constants.COLOR_OK))
        elif unchanged:
            lines.append((f"  nothing changed on: {_names(unchanged)}", constants.COLOR_OK))
        lines.extend((text, constants.COLOR_ERROR) for text in stopped)

        endpoints = self._threetier_custom(stats, ENDPOINTS_STAT)
        shown = {
            _one_line(k): _one_line(v)
            for k, v in (endpoints.items() if isinstance(endpoints, Mapping) else [])
            if v not in (None, "", [], {})
        }
        if shown:
            lines.append(("where it answers:", None))
            lines.extend((f"  {k}: {v}", None) for k, v in shown.items())

        notes = self._threetier_custom(stats, NOTES_STAT)
        if isinstance(notes, str):
            notes = [notes]
        if not isinstance(notes, list):
            notes = []
        notes = [_one_line(n) for n in notes if _one_line(n)]
        if notes:
            lines.append(("notes:", None))
            lines.extend((f"  {n}", None) for n in dict.fromkeys(notes))
        return lines

    @staticmethod
    def _threetier_custom(stats, key: str):
        """A custom stat of the whole run (set_stats, per_host: false) merged
        with the same stat of every host (per_host: true)."""
        merged = None
        custom = getattr(stats, "custom", None) or {}
        for owner in ["_run", *sorted(k for k in custom if k != "_run")]:
            value = (custom.get(owner) or {}).get(key)
            if value is None:
                continue
            if merged is None:
                merged = dict(value) if isinstance(value, Mapping) else value
            elif isinstance(merged, dict) and isinstance(value, Mapping):
                merged.update(value)
            elif isinstance(merged, list) and isinstance(value, list):
                merged = merged + value
        return merged
