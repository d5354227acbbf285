"""EC2 Auto Scaling instance refresh, which moto 5.2.5 does not implement.

StartInstanceRefresh, DescribeInstanceRefreshes, CancelInstanceRefresh and
RollbackInstanceRefresh with AWS's request and response shapes (botocore's
model), errors and status flow::

    Pending -> InProgress -> (Baking ->) Successful
                          -> Failed
                          -> Cancelling -> Cancelled
                          -> RollbackInProgress -> RollbackSuccessful | RollbackFailed

The refresh advances in the background loop (a step per group per tick,
emulator_autoscaling.GROUP_HOOKS), so it behaves the same with or without a
data plane; without one, new instances are healthy in their target groups at
once and only the warm-up paces it.

How it replaces (AWS's documented behaviour, as far as the emulator goes):

- The instances to replace are fixed at the start: every instance of the
  group, less (SkipMatching) those already on the desired configuration (the
  same launch template and version number; without a DesiredConfiguration the
  group's own, resolved).
- MaxHealthyPercentage above 100: a batch of new instances is launched first
  (up to MaxHealthyPercentage of the desired capacity, at least one), and when
  every one of them is healthy in all the group's target groups and warmed up
  (InstanceWarmup, default the health check grace period), as many old ones
  are terminated. Otherwise: old instances are terminated down to
  MinHealthyPercentage (at least one) and their replacements launched at once.
- A new instance that turns unhealthy (in a target group, or set Unhealthy),
  is terminated, or is not healthy within the group's health check grace
  period plus the warm-up fails the refresh, StatusReason naming it and why.
  With AutoRollback the instances on the refresh's configuration are then
  replaced by instances of the configuration before it (RollbackDetails).
- CheckpointPercentages: the refresh pauses CheckpointDelay seconds at each
  checkpoint below 100 %; the last one ends it (below 100 %, after its pause,
  with the rest of the group not replaced); batches never overshoot a
  checkpoint.
- PercentageComplete: the share of the group's instances (skipped ones count
  as done) replaced by a healthy, warmed-up instance; InstancesToUpdate: the
  instances still to replace. Going back down to 0 during a rollback.
- On success a DesiredConfiguration becomes the group's launch template.
- The desired capacity DescribeAutoScalingGroups reports stays the user's;
  the surge is the refresh's own (emulator_autoscaling keeps it).

Not emulated: the ReplaceRootVolume strategy and a MixedInstancesPolicy as
desired configuration (HTTP 501, like any call moto lacks), CloudWatch alarm
specifications (accepted, never evaluated), warm pools.
"""

from __future__ import annotations

import functools
import itertools
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localaws import emulator_autoscaling as asg
from localaws import emulator_elbv2
from localaws.emulator_autoscaling import LaunchSpec
from localaws.emulator_state import log, now

#: Statuses of a refresh still running (at most one per group).
ACTIVE = frozenset({"Pending", "InProgress", "Baking", "Cancelling", "RollbackInProgress"})

#: How long ``Wait`` waits for scale-in protection removed / Standby left (AWS: one hour).
WAIT_LIMIT = 3600

_REFRESHES = "_threetier_refreshes"

IN_PROGRESS_MESSAGE = (
    "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."
)
AUTO_ROLLBACK_WITHOUT_DESIRED = (
    "The request isn't valid. The AutoRollback parameter cannot be set to true when the "
    "DesiredConfiguration parameter is empty. Set AutoRollback to false or specify a desired "
    "configuration and try again."
)
AUTO_ROLLBACK_UNNUMBERED = (
    "The request isn't valid. The AutoRollback parameter cannot be set to true when the Auto "
    "Scaling group uses the launch template's $Latest or $Default version. Specify a launch "
    "template version number for the group or set AutoRollback to false and try again."
)
ACTIVE_FIELDS_MESSAGE = (
    "An active instance refresh with a desired configuration exists. All configuration options "
    "derived from the desired configuration are not available for update while the instance "
    "refresh is active."
)


@dataclass
class NewInstance:
    """An instance the refresh (or its rollback) launched, not yet updated."""

    launched_at: float
    healthy_since: float | None = None


@dataclass
class Refresh:
    """One instance refresh of a group (its record in DescribeInstanceRefreshes)."""

    id: str
    group_name: str
    strategy: str
    preferences: dict[str, Any]
    desired_configuration: dict[str, Any] | None
    target: LaunchSpec | None
    original: LaunchSpec | None
    #: why a rollback is impossible (None: possible)
    irreversible: str | None
    min_healthy: int
    max_healthy: int | None
    warmup: int
    checkpoints: list[int]
    checkpoint_delay: int
    auto_rollback: bool
    protected_policy: str
    standby_policy: str
    bake_time: int
    start_time: datetime
    #: monotonic start: the rollback replaces instances launched since
    started_at: float
    to_replace: list[str]
    skipped: int
    status: str = "Pending"
    status_reason: str | None = None
    end_time: datetime | None = None
    phase: str = "refresh"
    new: dict[str, NewInstance] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    retired: set[str] = field(default_factory=set)
    batch_old: list[str] = field(default_factory=list)
    surge: int = 0
    next_checkpoint: int = 0
    paused_until: float | None = None
    bake_until: float | None = None
    waiting_since: float | None = None
    cancel_wait: bool = True
    rollback: dict[str, Any] | None = None
    rollback_total: int | None = None
    percentage: int = 0
    instances_to_update: int = 0

    # ------------------------------------------------------------ progress

    @property
    def total(self) -> int:
        return self.skipped + len(self.to_replace)

    @property
    def done(self) -> int:
        return min(len(self.to_replace), len(self.ready) + len(self.gone))

    def update_progress(self, group: Any) -> None:
        if self.phase == "refresh":
            self.instances_to_update = len(self.to_replace) - self.done
            self.percentage = (
                100 if self.total == 0 else (100 * (self.skipped + self.done)) // self.total
            )
            return
        assert self.rollback is not None
        before = int(self.rollback["PercentageCompleteOnRollback"])
        total = self.rollback_total or 0
        left = min(total, len(_rollback_remaining(group, self)) + len(self.new))
        self.percentage = 0 if total == 0 else (before * left) // total

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group_name,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": self.percentage,
            "InstancesToUpdate": self.instances_to_update,
            "ProgressDetails": {
                "LivePoolProgress": {
                    "PercentageComplete": self.percentage,
                    "InstancesToUpdate": self.instances_to_update,
                }
            },
            "Preferences": self.preferences,
            "Strategy": self.strategy,
        }
        if self.status_reason:
            out["StatusReason"] = self.status_reason[:1023]
        if self.end_time is not None:
            out["EndTime"] = self.end_time
        if self.desired_configuration:
            out["DesiredConfiguration"] = self.desired_configuration
        if self.rollback is not None:
            out["RollbackDetails"] = self.rollback
        return out


# ---------------------------------------------------------------- lookups


def refreshes(group: Any) -> list[Refresh]:
    """The group's refreshes, oldest first (kept on the group object)."""
    items = getattr(group, _REFRESHES, None)
    if items is None:
        items = []
        setattr(group, _REFRESHES, items)
    return items


def active(group: Any) -> Refresh | None:
    return next((r for r in refreshes(group) if r.status in ACTIVE), None)


def _group(backend: Any, name: str) -> Any:
    from moto.autoscaling.exceptions import ValidationError

    group = backend.autoscaling_groups.get(name)
    if group is None or asg.is_deleting(group):
        raise ValidationError(
            f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"
        )
    return group


def _states(group: Any) -> dict[str, Any]:
    return {s.instance.id: s for s in group.instance_states}


# ---------------------------------------------------------------- start


def _constraint(field_name: str, value: Any, rule: str) -> Exception:
    from moto.autoscaling.exceptions import ValidationError

    # AWS's wording for a value outside a modelled range
    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy "
        f"constraint: {rule}"
    )


def _preferences(group: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Validated preferences, AWS's defaults filled in."""
    from moto.autoscaling.exceptions import ValidationError

    prefs = dict(given or {})
    min_healthy = prefs.get("MinHealthyPercentage")
    max_healthy = prefs.get("MaxHealthyPercentage")
    if min_healthy is not None and not 0 <= int(min_healthy) <= 100:
        rule = "Member must have value " + (
            "less than or equal to 100" if int(min_healthy) > 100 else "greater than or equal to 0"
        )
        raise _constraint("preferences.minHealthyPercentage", min_healthy, rule)
    if max_healthy is not None:
        if not 100 <= int(max_healthy) <= 200:
            rule = "Member must have value " + (
                "less than or equal to 200"
                if int(max_healthy) > 200
                else "greater than or equal to 100"
            )
            raise _constraint("preferences.maxHealthyPercentage", max_healthy, rule)
        if min_healthy is None:
            raise ValidationError(
                "The request isn't valid. If you specify MaxHealthyPercentage, you must also "
                "specify MinHealthyPercentage."
            )
        if int(max_healthy) - int(min_healthy) > 100:
            raise ValidationError(
                "The request isn't valid. The difference between MaxHealthyPercentage and "
                "MinHealthyPercentage can't be greater than 100."
            )
    checkpoints = [int(x) for x in prefs.get("CheckpointPercentages") or []]
    if prefs.get("CheckpointDelay") is not None and not checkpoints:
        raise ValidationError(
            "The request isn't valid. CheckpointPercentages must be specified when "
            "CheckpointDelay is specified."
        )
    if any(not 1 <= c <= 100 for c in checkpoints) or any(
        b <= a for a, b in itertools.pairwise(checkpoints)
    ):
        raise ValidationError(
            "The request isn't valid. CheckpointPercentages must be unique values between 1 and "
            "100 in ascending order."
        )
    for key, allowed in (
        ("ScaleInProtectedInstances", ("Refresh", "Ignore", "Wait")),
        ("StandbyInstances", ("Terminate", "Ignore", "Wait")),
    ):
        if prefs.get(key) is not None and prefs[key] not in allowed:
            raise _constraint(
                f"preferences.{key[0].lower()}{key[1:]}",
                prefs[key],
                f"Member must satisfy enum value set: [{', '.join(allowed)}]",
            )
    prefs.setdefault("MinHealthyPercentage", 90)
    prefs.setdefault("SkipMatching", False)
    prefs.setdefault("AutoRollback", False)
    prefs.setdefault("ScaleInProtectedInstances", "Wait")
    prefs.setdefault("StandbyInstances", "Wait")
    if checkpoints:
        prefs.setdefault("CheckpointDelay", 3600)
    return prefs


def _desired_spec(group: Any, desired: dict[str, Any] | None) -> LaunchSpec | None:
    """The DesiredConfiguration's launch template, resolved now."""
    from moto.autoscaling.exceptions import ValidationError

    if not desired:
        return None
    if desired.get("MixedInstancesPolicy"):
        raise NotImplementedError(
            "StartInstanceRefresh with a MixedInstancesPolicy desired configuration is not "
            "implemented by the emulator"
        )
    spec = desired.get("LaunchTemplate") or {}
    template_id, template_name = spec.get("LaunchTemplateId"), spec.get("LaunchTemplateName")
    if bool(template_id) == bool(template_name):
        raise ValidationError(
            "Valid requests must contain either launchTemplateId or LaunchTemplateName"
        )
    ec2 = group.autoscaling_backend.ec2_backend
    try:
        template = (
            ec2.get_launch_template(template_id)
            if template_id
            else ec2.get_launch_template_by_name(template_name)
        )
    except Exception:  # moto's EC2 error; AWS answers a ValidationError here
        raise ValidationError(
            "You must use a valid fully-formed launch template. The specified launch template "
            f"{template_id or template_name} does not exist."
        ) from None
    try:
        return asg.resolve_spec(template, spec.get("Version") or "$Default")
    except Exception:  # moto's EC2 error; AWS answers a ValidationError here
        raise ValidationError(
            "You must use a valid fully-formed launch template. The specified launch template "
            f"version {spec.get('Version')} of {template.name} does not exist."
        ) from None


def start(
    backend: Any,
    name: str,
    strategy: str | None,
    desired: dict[str, Any] | None,
    given: dict[str, Any] | None,
) -> Refresh:
    """StartInstanceRefresh: validated, recorded ``Pending``; the loop runs it."""
    from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
    from moto.core.utils import utcnow

    group = _group(backend, name)
    strategy = strategy or "Rolling"
    if strategy == "ReplaceRootVolume":
        raise NotImplementedError(
            "StartInstanceRefresh with Strategy ReplaceRootVolume is not implemented by the "
            "emulator"
        )
    if strategy != "Rolling":
        raise _constraint(
            "strategy", strategy, "Member must satisfy enum value set: [Rolling, ReplaceRootVolume]"
        )
    prefs = _preferences(group, given or {})
    target = _desired_spec(group, desired)
    group_version = getattr(group, "provided_launch_template_version", None)
    numbered = group.ec2_launch_template is not None and str(group_version or "").isdigit()
    irreversible = None
    if not desired:
        irreversible = "no desired configuration was specified for the instance refresh"
    elif not numbered:
        irreversible = (
            "the Auto Scaling group uses the launch template's $Latest or $Default version"
        )
    if prefs["AutoRollback"]:
        if not desired:
            raise ValidationError(AUTO_ROLLBACK_WITHOUT_DESIRED)
        if not numbered:
            raise ValidationError(AUTO_ROLLBACK_UNNUMBERED)
    if active(group) is not None:
        raise AutoscalingClientError("InstanceRefreshInProgress", IN_PROGRESS_MESSAGE)

    original = asg.group_spec(group)
    if target is None:
        target = original
    members = [s for s in group.instance_states if s.lifecycle_state != "Terminating"]
    to_replace = [
        s.instance.id
        for s in members
        if not (prefs["SkipMatching"] and target is not None and asg.spec_of(s) == target)
    ]
    grace = asg.grace_period(group)
    warmup = prefs.get("InstanceWarmup")
    refresh = Refresh(
        id=str(uuid.uuid4()),
        group_name=group.name,
        strategy=strategy,
        preferences=prefs,
        desired_configuration=desired or None,
        target=target,
        original=original,
        irreversible=irreversible,
        min_healthy=int(prefs["MinHealthyPercentage"]),
        max_healthy=(
            int(prefs["MaxHealthyPercentage"])
            if prefs.get("MaxHealthyPercentage") is not None
            else None
        ),
        warmup=int(warmup) if warmup is not None else grace,
        checkpoints=[int(x) for x in prefs.get("CheckpointPercentages") or []],
        checkpoint_delay=int(prefs.get("CheckpointDelay") or 0),
        auto_rollback=bool(prefs["AutoRollback"]),
        protected_policy=str(prefs["ScaleInProtectedInstances"]),
        standby_policy=str(prefs["StandbyInstances"]),
        bake_time=int(prefs.get("BakeTime") or 0),
        start_time=utcnow(),
        started_at=now(),
        to_replace=to_replace,
        skipped=len(members) - len(to_replace),
    )
    refresh.update_progress(group)
    refreshes(group).append(refresh)
    log(f"{group.name}: instance refresh {refresh.id} Pending, {len(to_replace)} to replace")
    return refresh


# ---------------------------------------------------------------- other calls


def describe(
    backend: Any,
    name: str,
    ids: list[str] | None,
    max_records: int | None,
    next_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """DescribeInstanceRefreshes: newest first, filtered by ids, paged."""
    from moto.autoscaling.exceptions import AutoscalingClientError

    group = _group(backend, name)
    items = list(reversed(refreshes(group)))
    if ids:
        items = [r for r in items if r.id in ids]
    limit = max(1, min(int(max_records or 50), 100))
    try:
        first = int(next_token) if next_token else 0
    except ValueError:
        raise AutoscalingClientError("InvalidNextToken", "The token is not valid.") from None
    page = items[first : first + limit]
    token = str(first + limit) if first + limit < len(items) else None
    return [r.response() for r in page], token


def _active_or_fail(group: Any, name: str) -> Refresh:
    from moto.autoscaling.exceptions import AutoscalingClientError

    refresh = active(group)
    if refresh is None:
        raise AutoscalingClientError(
            "ActiveInstanceRefreshNotFound",
            f"No in progress or pending Instance Refresh found for Auto Scaling group {name}",
        )
    return refresh


def cancel(backend: Any, name: str, wait_for_transitioning: bool) -> Refresh:
    """CancelInstanceRefresh: ``Cancelling`` now, ``Cancelled`` at the next
    step (after the refresh's in-flight terminations, unless told not to wait)."""
    group = _group(backend, name)
    refresh = _active_or_fail(group, name)
    if refresh.status != "Cancelling":
        _drop_surge(group, refresh)
        refresh.status = "Cancelling"
        refresh.cancel_wait = wait_for_transitioning
        _publish(group)
    return refresh


def rollback(backend: Any, name: str) -> Refresh:
    """RollbackInstanceRefresh: refused (IrreversibleInstanceRefresh) without
    a desired configuration or when the group named $Latest/$Default."""
    from moto.autoscaling.exceptions import AutoscalingClientError

    group = _group(backend, name)
    refresh = _active_or_fail(group, name)
    if refresh.status in ("Cancelling", "RollbackInProgress"):
        raise AutoscalingClientError(
            "ActiveInstanceRefreshNotFound",
            f"No in progress or pending Instance Refresh found for Auto Scaling group {name}",
        )
    if refresh.irreversible:
        raise AutoscalingClientError(
            "IrreversibleInstanceRefresh",
            f"The instance refresh can't be rolled back: {refresh.irreversible}.",
        )
    _start_rollback(group, refresh, "Rollback started by a RollbackInstanceRefresh request.")
    _publish(group)
    return refresh


# ---------------------------------------------------------------- the step


def _publish(group: Any) -> None:
    """Tell the capacity upkeep the refresh's surge and the configuration
    new instances are launched from while it runs."""
    refresh = active(group)
    surge, override = 0, None
    if refresh is not None:
        if refresh.status in ("InProgress", "RollbackInProgress"):
            surge = refresh.surge
        if refresh.status in ("InProgress", "Baking"):
            override = refresh.target
        elif refresh.status == "RollbackInProgress":
            override = refresh.original
    setattr(group, asg._SURGE, surge)
    setattr(group, asg._OVERRIDE, override)


def step(group: Any) -> None:
    """Advance the group's active refresh (the loop's tick, under the lock)."""
    refresh = active(group)
    if refresh is None:
        _publish(group)
        return
    if asg.suspended(group, "InstanceRefresh"):
        return
    try:
        for _ in range(50):
            changed = _advance(group, refresh)
            _publish(group)
            if not changed or refresh.status not in ACTIVE:
                break
    finally:
        if refresh.status in ACTIVE or refresh.status in ("Successful", "RollbackSuccessful"):
            refresh.update_progress(group)
        _publish(group)


def _end(refresh: Refresh, status: str, reason: str | None) -> None:
    from moto.core.utils import utcnow

    refresh.status = status
    refresh.status_reason = reason
    refresh.end_time = utcnow()
    refresh.surge = 0
    refresh.batch_old = []
    refresh.new.clear()
    refresh.paused_until = refresh.bake_until = None
    log(
        f"{refresh.group_name}: instance refresh {refresh.id} {status}"
        + (f": {reason}" if reason else "")
    )


def _drop_surge(group: Any, refresh: Refresh) -> None:
    """A surge batch that fails: its new instances have replaced nothing yet
    (the old ones they were launched for still serve), so they are what goes.
    Left to the capacity upkeep, the surge's end would scale in by the
    termination policy, which may pick a healthy old instance and keep the
    failed new one, for the rollback to replace later: capacity would dip."""
    if not refresh.batch_old:
        return
    states = _states(group)
    asg.terminate(
        group,
        [states[i] for i in refresh.new if i in states],
        f"instance refresh {refresh.id} failed before its old instances went",
    )


def _fail(group: Any, refresh: Refresh, reason: str) -> bool:
    _drop_surge(group, refresh)
    if refresh.phase == "refresh" and refresh.auto_rollback and not refresh.irreversible:
        refresh.update_progress(group)
        _start_rollback(group, refresh, f"Instance refresh failed, rolling back: {reason}")
        return False  # the capacity upkeep removes the surge before the rollback counts
    _end(refresh, "Failed" if refresh.phase == "refresh" else "RollbackFailed", reason)
    return False


def _start_rollback(group: Any, refresh: Refresh, reason: str) -> None:
    from moto.core.utils import utcnow

    _drop_surge(group, refresh)

    refresh.rollback = {
        "RollbackReason": reason,
        "RollbackStartTime": utcnow(),
        "PercentageCompleteOnRollback": refresh.percentage,
        "InstancesToUpdateOnRollback": refresh.instances_to_update,
        "ProgressDetailsOnRollback": {
            "LivePoolProgress": {
                "PercentageComplete": refresh.percentage,
                "InstancesToUpdate": refresh.instances_to_update,
            }
        },
    }
    refresh.phase = "rollback"
    refresh.status = "RollbackInProgress"
    refresh.status_reason = reason
    refresh.surge = 0
    refresh.batch_old = []
    refresh.new.clear()
    refresh.paused_until = refresh.bake_until = refresh.waiting_since = None
    refresh.rollback_total = None
    log(f"{group.name}: instance refresh {refresh.id} RollbackInProgress: {reason}")


def _rollback_remaining(group: Any, refresh: Refresh) -> list[Any]:
    """Instances the refresh brought (launched since it started, on its
    configuration) that the rollback replaces."""
    if refresh.target is None or refresh.target == refresh.original:
        return []
    return [
        s
        for s in group.instance_states
        if s.lifecycle_state in asg.COUNTED
        and asg.spec_of(s) == refresh.target
        and asg.launched_at(s) >= refresh.started_at
        and s.instance.id not in refresh.batch_old
    ]


def _health(group: Any, state: Any) -> tuple[bool, str | None, str]:
    """(healthy everywhere, why it failed, what it waits for) of a new instance.

    It fails on what Auto Scaling itself acts on: the instance set Unhealthy,
    or unhealthy in a target group once its health-check grace period is
    over. Within the grace period an unhealthy target is a booting instance
    (AWS's grace period exists for this): the refresh waits, as AWS's does.
    There is no other deadline: AWS has none; the caller's time limit (and
    a rollback) covers an instance that never becomes healthy."""
    instance_id = state.instance.id
    if state.health_status == "Unhealthy":
        return False, f"{instance_id} was set Unhealthy", ""
    within_grace = now() - asg.launched_at(state) < asg.grace_period(group)
    waiting = []
    for tg in asg.target_groups(group):
        target = emulator_elbv2.target_state(tg, instance_id)
        if target == "unhealthy" and not within_grace:
            why = emulator_elbv2.target_description(tg, instance_id)
            return False, f"{instance_id} is {why} in target group {tg.name}", ""
        if target == "unhealthy":
            waiting.append(f"unhealthy in target group {tg.name} (health-check grace period)")
        elif target != "healthy":
            waiting.append(f"{target or 'not registered'} in target group {tg.name}")
    if state.lifecycle_state != "InService":
        waiting.append(state.lifecycle_state)
    return not waiting, None, ", ".join(waiting)


def _healthy_now(group: Any, state: Any) -> bool:
    return state.health_status == "Healthy" and _health(group, state)[0]


def _advance(group: Any, refresh: Refresh) -> bool:
    """One move of the refresh; True when something changed that may allow
    the next at once."""
    moment = now()
    if refresh.status == "Pending":
        refresh.status = "InProgress"
        log(f"{group.name}: instance refresh {refresh.id} InProgress")
        return True
    states = _states(group)
    if refresh.status == "Cancelling":
        in_flight = [i for i in refresh.retired if i in states]
        if refresh.cancel_wait and in_flight:
            return False
        _end(refresh, "Cancelled", "The instance refresh was cancelled.")
        return False
    if refresh.status == "Baking":
        if refresh.bake_until is not None and moment >= refresh.bake_until:
            return _succeed(group, refresh)
        return False

    waiting = _watch_new(group, refresh, states, moment)
    if waiting is not None:
        return waiting
    if refresh.batch_old:  # a surge batch is healthy: its old instances go
        victims = [
            states[i]
            for i in refresh.batch_old
            if i in states and states[i].lifecycle_state != "Terminating"
        ]
        asg.terminate(group, victims, f"instance refresh {refresh.id}")
        if refresh.phase == "refresh":
            refresh.retired.update(refresh.batch_old)
        refresh.batch_old = []
        refresh.surge = 0
        return True
    # nothing to wait for: during a rollback the reason stays why it rolls back
    refresh.status_reason = _rollback_reason(refresh) if refresh.phase == "rollback" else None

    if refresh.phase == "rollback":
        remaining = _rollback_remaining(group, refresh)
        if refresh.rollback_total is None:
            refresh.rollback_total = len(remaining)
        if not remaining:
            _end(refresh, "RollbackSuccessful", _rollback_reason(refresh))
            return False
        return _replace(group, refresh, remaining, None, refresh.original)

    # old instances that left by other means count as done
    for instance_id in refresh.to_replace:
        state = states.get(instance_id)
        if instance_id not in refresh.retired and (
            state is None or state.lifecycle_state == "Terminating"
        ):
            refresh.gone.add(instance_id)
    paused, cap = _checkpoint(group, refresh, moment)
    if paused is not None:
        return paused
    eligible, waiting_for = _left_to_replace(group, refresh, states)
    if not eligible:
        # done only once the old instances are gone, as AWS's refresh ends
        # after its terminations (an old instance still draining is listed)
        draining = sorted(i for i in refresh.retired if i in states)
        if not waiting_for and draining:
            refresh.status_reason = (
                f"Waiting for instances to terminate. For example: {draining[0]} is terminating."
            )
            return False
        if waiting_for:
            if refresh.waiting_since is None:
                refresh.waiting_since = moment
            if moment - refresh.waiting_since >= WAIT_LIMIT:
                return _fail(group, refresh, "still waiting for " + ", ".join(waiting_for))
            refresh.status_reason = "Waiting for " + ", ".join(waiting_for)
            return False
        return _finish(group, refresh)
    refresh.waiting_since = None
    return _replace(group, refresh, eligible, cap, refresh.target)


def _watch_new(group: Any, refresh: Refresh, states: dict[str, Any], moment: float) -> bool | None:
    """The instances the refresh launched: failed (the refresh fails), warming
    up (it waits: False), or updated. None when none is left to wait for."""
    details: dict[str, str] = {}
    for instance_id, new in list(refresh.new.items()):
        state = states.get(instance_id)
        if state is None or state.lifecycle_state == "Terminating":
            return _fail(group, refresh, f"{instance_id} was terminated before it was healthy")
        healthy, failure, waiting = _health(group, state)
        if failure:
            return _fail(group, refresh, failure)
        if healthy:
            if new.healthy_since is None:
                new.healthy_since = moment
            if moment - new.healthy_since >= refresh.warmup:
                del refresh.new[instance_id]
                if refresh.phase == "refresh":
                    refresh.ready.add(instance_id)
            continue
        new.healthy_since = None
        details[instance_id] = waiting
    if refresh.new:
        example = next(iter(refresh.new))
        refresh.status_reason = (
            "Waiting for instances to warm up before continuing. For example: "
            f"{example} is warming up"
            + (f" ({details[example]})." if details.get(example) else ".")
        )
        return False
    return None


def _checkpoint(group: Any, refresh: Refresh, moment: float) -> tuple[bool | None, int | None]:
    """(what to return, or None to go on; how many more the next batch may
    replace to not overshoot the next checkpoint, or None)."""
    if not refresh.checkpoints or refresh.next_checkpoint >= len(refresh.checkpoints):
        return None, None
    checkpoint = refresh.checkpoints[refresh.next_checkpoint]
    needed = math.ceil(checkpoint * refresh.total / 100)
    have = refresh.skipped + refresh.done
    if have < needed:
        return None, needed - have
    if checkpoint >= 100:  # the 100 % checkpoint is the end, no pause (AWS)
        return _finish(group, refresh), None
    if refresh.paused_until is None:
        refresh.paused_until = moment + refresh.checkpoint_delay
    if moment < refresh.paused_until:
        refresh.status_reason = (
            f"Waiting at checkpoint {refresh.next_checkpoint + 1} of "
            f"{len(refresh.checkpoints)} ({checkpoint}% of the instances replaced) for "
            f"the checkpoint delay of {refresh.checkpoint_delay} s."
        )
        return False, None
    refresh.paused_until = None
    refresh.next_checkpoint += 1
    if refresh.next_checkpoint == len(refresh.checkpoints):
        # a last checkpoint below 100 %: the refresh replaces no more
        return _finish(group, refresh), None
    return True, None


def _left_to_replace(
    group: Any, refresh: Refresh, states: dict[str, Any]
) -> tuple[list[Any], list[str]]:
    """(old instances to replace now, those waited for: Standby or protected
    from scale in, by the refresh's preferences)."""
    eligible, waiting_for = [], []
    for instance_id in refresh.to_replace:
        if instance_id in refresh.retired or instance_id in refresh.gone:
            continue
        state = states[instance_id]
        if state.lifecycle_state == "Standby":
            if refresh.standby_policy == "Ignore":
                refresh.gone.add(instance_id)
            elif refresh.standby_policy == "Terminate":
                asg.terminate(group, [state], f"instance refresh {refresh.id} (Standby)")
                refresh.retired.add(instance_id)
                refresh.gone.add(instance_id)
            else:
                waiting_for.append(f"{instance_id} (Standby)")
            continue
        if state.protected_from_scale_in and refresh.protected_policy != "Refresh":
            if refresh.protected_policy == "Ignore":
                refresh.gone.add(instance_id)
            else:
                waiting_for.append(f"{instance_id} (protected from scale in)")
            continue
        if state.lifecycle_state in asg.COUNTED:
            eligible.append(state)
    return eligible, waiting_for


def _rollback_reason(refresh: Refresh) -> str | None:
    return refresh.rollback["RollbackReason"] if refresh.rollback else None


def _replace(
    group: Any, refresh: Refresh, old: list[Any], cap: int | None, spec: LaunchSpec | None
) -> bool:
    """Start a batch: surge (launch first) above 100 % max healthy, else
    terminate old ones down to min healthy and launch their replacements."""
    desired = group.desired_capacity or 0
    have = asg.counted(group)
    if refresh.max_healthy is not None and refresh.max_healthy > 100:
        room = math.floor(desired * refresh.max_healthy / 100) - len(have)
        batch = max(1, room)
    else:
        floor = math.ceil(desired * refresh.min_healthy / 100)
        healthy = sum(1 for s in have if _healthy_now(group, s))
        batch = max(1, healthy - floor)
    batch = min(batch, len(old), cap if cap is not None else len(old))
    victims = asg.scale_in_order(group, old)[:batch] if old else []
    if (
        len(victims) < batch
    ):  # protected ones left out of the order: they go anyway (policy Refresh)
        victims += [s for s in old if s not in victims][: batch - len(victims)]
    if refresh.max_healthy is not None and refresh.max_healthy > 100:
        launched = asg.launch(group, batch, spec)
        refresh.surge = batch
        refresh.batch_old = [s.instance.id for s in victims]
    else:
        asg.terminate(group, victims, f"instance refresh {refresh.id}")
        if refresh.phase == "refresh":
            refresh.retired.update(s.instance.id for s in victims)
        launched = asg.launch(group, batch, spec)
    for state in launched:
        refresh.new[state.instance.id] = NewInstance(launched_at=asg.launched_at(state))
    log(
        f"{group.name}: instance refresh {refresh.id} ({refresh.phase}) replaces "
        f"{', '.join(s.instance.id for s in victims)} with "
        f"{', '.join(s.instance.id for s in launched)}"
    )
    return True


def _finish(group: Any, refresh: Refresh) -> bool:
    if refresh.bake_time > 0:
        refresh.status = "Baking"
        refresh.bake_until = now() + refresh.bake_time
        return False
    return _succeed(group, refresh)


def _succeed(group: Any, refresh: Refresh) -> bool:
    """Successful; a DesiredConfiguration becomes the group's launch template."""
    if refresh.desired_configuration and refresh.desired_configuration.get("LaunchTemplate"):
        group._set_launch_configuration(
            None, dict(refresh.desired_configuration["LaunchTemplate"]), None
        )
    refresh.update_progress(group)
    if refresh.instances_to_update == 0:
        refresh.percentage = 100
    _end(refresh, "Successful", None)
    return False


# ---------------------------------------------------------------- patches


def patch() -> None:
    """Add the instance refresh actions to moto's AutoScalingResponse, its
    step to the loop, and AWS's guard on UpdateAutoScalingGroup (idempotent)."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    if getattr(AutoScalingResponse, "_threetier_refresh_patched", False):
        return
    AutoScalingResponse._threetier_refresh_patched = True  # type: ignore[attr-defined]
    asg.GROUP_HOOKS.append(step)

    def start_instance_refresh(self: Any) -> ActionResult:
        refresh = start(
            self.autoscaling_backend,
            self._get_param("AutoScalingGroupName"),
            self._get_param("Strategy"),
            self._get_param("DesiredConfiguration"),
            self._get_param("Preferences"),
        )
        return ActionResult({"InstanceRefreshId": refresh.id})

    def describe_instance_refreshes(self: Any) -> ActionResult:
        items, token = describe(
            self.autoscaling_backend,
            self._get_param("AutoScalingGroupName"),
            self._get_param("InstanceRefreshIds", []),
            self._get_param("MaxRecords"),
            self._get_param("NextToken"),
        )
        result: dict[str, Any] = {"InstanceRefreshes": items}
        if token:
            result["NextToken"] = token
        return ActionResult(result)

    def cancel_instance_refresh(self: Any) -> ActionResult:
        wait = self._get_param("WaitForTransitioningInstances")
        refresh = cancel(
            self.autoscaling_backend, self._get_param("AutoScalingGroupName"), wait is not False
        )
        return ActionResult({"InstanceRefreshId": refresh.id})

    def rollback_instance_refresh(self: Any) -> ActionResult:
        refresh = rollback(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
        return ActionResult({"InstanceRefreshId": refresh.id})

    AutoScalingResponse.start_instance_refresh = start_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes  # type: ignore[attr-defined]
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.rollback_instance_refresh = rollback_instance_refresh  # type: ignore[attr-defined]

    original_update = AutoScalingBackend.update_auto_scaling_group

    @functools.wraps(original_update)
    def update_auto_scaling_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        """AWS refuses to change the launch template, launch configuration or
        mixed instances policy while a refresh with a desired configuration
        is active (moto has no refresh to guard)."""
        group = self.autoscaling_groups.get(kwargs.get("name"))
        refresh = active(group) if group is not None else None
        if refresh is not None and refresh.desired_configuration and _changes_launch(group, kwargs):
            raise ValidationError(ACTIVE_FIELDS_MESSAGE)
        return original_update(self, *args, **kwargs)

    AutoScalingBackend.update_auto_scaling_group = update_auto_scaling_group  # type: ignore[method-assign]


def _changes_launch(group: Any, kwargs: dict[str, Any]) -> bool:
    if kwargs.get("launch_config_name") or kwargs.get("mixed_instances_policy"):
        return True
    spec = kwargs.get("launch_template") or {}
    if not spec:
        return False
    template = group.ec2_launch_template
    if template is None:
        return True
    if spec.get("LaunchTemplateId") and spec["LaunchTemplateId"] != template.id:
        return True
    if spec.get("LaunchTemplateName") and spec["LaunchTemplateName"] != template.name:
        return True
    return (spec.get("Version") or "$Default") != (
        getattr(group, "launch_template_version", None) or "$Default"
    )
