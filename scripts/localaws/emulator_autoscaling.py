"""EC2 Auto Scaling as AWS runs it: placement, launch versions, capacity,
terminations, health replacement.

What moto 5.2.5 does, and what these patches make of it (docs/local-data-plane.md):

- moto launches every instance of a group into the first subnet of
  VPCZoneIdentifier. AWS balances the group over its Availability Zones; here
  a new instance goes to the AZ with the fewest instances of the group (ties:
  the subnets' order).
- moto launches from the group's template without a version (so from the
  template's *default* version, whatever the group names) and reports, for
  every instance, the template's default version number. AWS launches from
  the version the group names at that moment and reports per instance the
  version it was launched from; here each instance records the template and
  the resolved version number it was launched with (ImageId, user data,
  security groups, instance profile of that version).
- moto scales in by dropping the first instances of its list, terminates at
  once and leaves terminated instances registered in the group's target
  groups. AWS picks by the termination policy (AZ balance first, then
  instances not on the current launch template, then the oldest), deregisters
  the instance from its target groups and, with a load balancer, terminates
  only once draining ended (LifecycleState ``Terminating`` meanwhile).
  With a data plane that is what happens here (the background loop finishes
  the terminations); without one, terminations stay immediate (moto's
  behaviour) but still deregister.
- moto accepts an instance profile the moment it exists. AWS's IAM is
  eventually consistent: for some seconds after it is made, a group whose
  launch template names it is refused ("Invalid IAM Instance Profile name").
  ``THREETIER_EMULATOR_IAM_PROPAGATION=<seconds>`` makes CreateAutoScalingGroup
  refuse so for that long after the profile's creation (unset: moto's
  behaviour), so the kit's retry of that error runs somewhere.
- moto never replaces an unhealthy instance. With a data plane, an instance
  set Unhealthy, not running in EC2, or (health check type ELB) ``unhealthy``
  in one of the group's target groups after its grace period is replaced.

Extra state lives on moto's own objects (attributes prefixed ``_threetier``),
so moto's reset drops it with them. The instance refresh (emulator_refresh)
steers two of them: the surge it may add to the desired capacity and the
launch configuration it wants new instances from while it runs.
"""

from __future__ import annotations

import functools
import math
import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from localaws import emulator_elbv2
from localaws.emulator_state import backends, data_plane, log, now

# attributes on moto's InstanceState (emulator-only)
_SPEC = "_threetier_spec"
_LAUNCHED = "_threetier_launched"
_TERMINATING = "_threetier_terminating"
# attributes on moto's FakeAutoScalingGroup (emulator-only)
_SURGE = "_threetier_surge"
_OVERRIDE = "_threetier_override"
_DELETING = "_threetier_deleting"

#: Lifecycle states that count toward the desired capacity.
COUNTED = frozenset({"InService", "Pending"})

#: Seconds an instance profile stays unusable for a new group after its
#: creation, as AWS's IAM propagation (unset or 0: usable at once).
IAM_PROPAGATION_ENV = "THREETIER_EMULATOR_IAM_PROPAGATION"

#: Run once per group per loop tick before the group's own upkeep (the
#: instance refresh registers its step here).
GROUP_HOOKS: list[Callable[[Any], None]] = []


class NotFoundError(Exception):
    """An instance the Auto Scaling API was asked about is in no group."""


@dataclass(frozen=True)
class LaunchSpec:
    """A launch template and one resolved version number of it."""

    template_id: str
    template_name: str
    version: int

    def as_response(self) -> dict[str, str]:
        return {
            "LaunchTemplateId": self.template_id,
            "LaunchTemplateName": self.template_name,
            "Version": str(self.version),
        }


# ---------------------------------------------------------------- lookups


def resolve_spec(template: Any, version: Any) -> LaunchSpec:
    """``$Default``/``$Latest``/a number of ``template`` -> its number now."""
    number = template.get_version(version if version is not None else "$Default").number
    return LaunchSpec(template.id, template.name, int(number))


def group_spec(group: Any) -> LaunchSpec | None:
    """The launch template version the group names, resolved now (None for a
    launch-configuration group)."""
    template = group.ec2_launch_template
    if template is None:
        return None
    return resolve_spec(template, getattr(group, "launch_template_version", "$Default"))


def current_spec(group: Any) -> LaunchSpec | None:
    """What the group launches from now: an active instance refresh's
    configuration (set by emulator_refresh), else the group's own."""
    override = getattr(group, _OVERRIDE, None)
    return override if override is not None else group_spec(group)


def spec_of(state: Any) -> LaunchSpec | None:
    return getattr(state, _SPEC, None)


def launched_at(state: Any) -> float:
    """When the instance was launched (monotonic); attached instances count
    as launched long ago."""
    return getattr(state, _LAUNCHED, float("-inf"))


def counted(group: Any) -> list[Any]:
    return [s for s in group.instance_states if s.lifecycle_state in COUNTED]


def suspended(group: Any, process: str) -> bool:
    return process in getattr(group, "_suspended_processes", [])


def is_deleting(group: Any) -> bool:
    return bool(getattr(group, _DELETING, False))


def grace_period(group: Any) -> int:
    return int(group.health_check_grace_period or 0)


def target_groups(group: Any) -> list[Any]:
    """The group's target groups that exist (one may have been deleted)."""
    elbv2 = group.autoscaling_backend.elbv2_backend
    return [tg for arn in group.target_group_arns if (tg := elbv2.target_groups.get(arn))]


def find_instance(backend: Any, instance_id: str) -> tuple[Any, Any]:
    """(InstanceState, group) of an instance of some group of ``backend``."""
    for group in backend.autoscaling_groups.values():
        for state in group.instance_states:
            if state.instance.id == instance_id:
                return state, group
    raise NotFoundError(instance_id)


def not_found_error(instance_id: str) -> Exception:
    from moto.autoscaling.exceptions import ValidationError

    # AWS's answer for an instance no group manages (moto: StopIteration, HTTP 500)
    return ValidationError(
        f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
    )


# ---------------------------------------------------------------- capacity


def target_instance_count(group: Any) -> int:
    """How many instances the desired capacity asks for: moto's computation
    (a mixed-instances policy's weights included), unchanged."""
    target_capacity = group.desired_capacity or 0
    policy = group.mixed_instances_policy or {}
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", []) if policy else []
    if not overrides:
        return target_capacity
    distribution = policy.get("InstancesDistribution", {})
    on_demand_base = int(distribution.get("OnDemandBaseCapacity", 0))
    percent_above_base = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
    weight_text = overrides[0].get("WeightedCapacity", "1")
    weight = int(weight_text) if weight_text.isdigit() else 1
    weight = weight or 1
    if on_demand_base >= target_capacity:
        on_demand, spot = target_capacity, 0
    else:
        above = target_capacity - on_demand_base
        on_demand_above = int(above * percent_above_base) / 100.0
        spot = int(above - on_demand_above)
        on_demand = int(on_demand_base + on_demand_above)
    return math.ceil(on_demand / weight) + math.ceil(spot / weight)


def capacity_target(group: Any) -> int:
    """Instances to keep: the desired capacity plus an instance refresh's
    surge (its new instances launched before old ones go)."""
    if is_deleting(group):
        return 0
    return target_instance_count(group) + int(getattr(group, _SURGE, 0) or 0)


def reconcile(group: Any) -> None:
    """Launch or terminate until the group has ``capacity_target`` instances
    that count (Terminating and Standby ones do not)."""
    have = counted(group)
    delta = capacity_target(group) - len(have)
    if delta > 0 and not suspended(group, "Launch"):
        launch(group, delta)
    elif delta < 0 and not suspended(group, "Terminate"):
        victims = scale_in_order(group, have)[:-delta]
        if victims:
            terminate(group, victims, "scale-in")


def scale_in_order(group: Any, candidates: Iterable[Any]) -> list[Any]:
    """``candidates`` in the order AWS's default termination policy picks them,
    protected instances left out: the AZ with the most instances of the group
    first, then instances not on the current launch template version, then
    the oldest."""
    pool = [s for s in candidates if not s.protected_from_scale_in]
    per_az = Counter(s.availability_zone for s in counted(group))
    current = current_spec(group)
    position = {id(s): i for i, s in enumerate(group.instance_states)}
    order: list[Any] = []
    while pool:
        pool.sort(
            key=lambda s: (
                -per_az[s.availability_zone],
                spec_of(s) == current,
                launched_at(s),
                position.get(id(s), 0),
            )
        )
        victim = pool.pop(0)
        per_az[victim.availability_zone] -= 1
        order.append(victim)
    return order


# ---------------------------------------------------------------- launching


def _placement(group: Any) -> tuple[str | None, str | None]:
    """(subnet id, AZ) for the next instance: the AZ with the fewest counted
    instances of the group, then the subnet with the fewest, ties by the
    subnets' order in VPCZoneIdentifier."""
    ec2 = group.autoscaling_backend.ec2_backend
    have = counted(group)
    per_az = Counter(s.availability_zone for s in have)
    per_subnet = Counter(s.instance.subnet_id for s in have)
    if group.vpc_zone_identifier:
        choices = []
        for index, subnet_id in enumerate(x.strip() for x in group.vpc_zone_identifier.split(",")):
            if not subnet_id:
                continue
            zone = ec2.get_subnet(subnet_id).availability_zone
            choices.append((per_az[zone], per_subnet[subnet_id], index, subnet_id, zone))
        if choices:
            _, _, _, subnet_id, zone = min(choices)
            return subnet_id, zone
    zones = list(group.availability_zones or [])
    if not zones:
        return None, None
    zone = min(zones, key=lambda z: (per_az[z], zones.index(z)))
    return None, zone


def _run_one(group: Any, spec: LaunchSpec | None, subnet_id: str | None, zone: str | None) -> Any:
    """One instance from ``spec`` (a launch-configuration group: its launch
    configuration), as moto's ASG launched, but from that version's data."""
    from moto.autoscaling.models import ASG_NAME_TAG

    ec2 = group.autoscaling_backend.ec2_backend
    tags = group.get_propagated_tags()
    tags[ASG_NAME_TAG] = group.name
    launch_template = None
    profile: dict[str, str] = {}
    if spec is not None:
        version = ec2.get_launch_template(spec.template_id).get_version(spec.version)
        tags.update(version.instance_tags)
        image_id, user_data = version.image_id, version.user_data
        security_groups, instance_type = version.security_groups, version.instance_type
        launch_template = {"LaunchTemplateId": spec.template_id, "Version": str(spec.version)}
        profile = version.data.get("IamInstanceProfile") or {}
    else:
        config = group.launch_config
        image_id, user_data = config.image_id, config.user_data
        security_groups, instance_type = config.security_groups, config.instance_type
    associate_public_ip = (
        group.launch_config.associate_public_ip_address if group.launch_config else None
    )
    reservation = ec2.run_instances(
        image_id,
        1,
        user_data,
        security_groups,
        instance_type=instance_type,
        tags={"instance": tags},
        placement=zone,
        launch_config=group.launch_config,
        launch_template=launch_template,
        is_instance_type_default=False,
        associate_public_ip=associate_public_ip,
        subnet_id=subnet_id,
    )
    instance = reservation.instances[0]
    if profile.get("Name") or profile.get("Arn"):
        # moto's ASG ignored the template's instance profile; AWS attaches it
        try:
            ec2.associate_iam_instance_profile(
                instance_id=instance.id,
                iam_instance_profile_name=profile.get("Name"),
                iam_instance_profile_arn=profile.get("Arn"),
            )
        except Exception as exc:  # emulator: a missing profile logs, the launch stands
            log(f"{group.name}: {instance.id}: instance profile {profile} not attached: {exc}")
    return instance


def launch(group: Any, count: int, spec: LaunchSpec | None = None) -> list[Any]:
    """Launch ``count`` instances into the group, one by one so each goes to
    the least populated AZ, from ``spec`` (default: what the group launches
    from now), and register them in the group's target groups."""
    from moto.autoscaling.models import InstanceState

    if count <= 0:
        return []
    spec = spec if spec is not None else current_spec(group)
    new = []
    for _ in range(count):
        subnet_id, zone = _placement(group)
        instance = _run_one(group, spec, subnet_id, zone)
        instance.autoscaling_group = group
        state = InstanceState(
            instance, protected_from_scale_in=group.new_instances_protected_from_scale_in
        )
        setattr(state, _SPEC, spec)
        setattr(state, _LAUNCHED, now())
        group.instance_states.append(state)
        new.append(state)
    register_targets(group, new)
    return new


def register_targets(group: Any, states: Iterable[Any]) -> None:
    """Register counted, running instances in the group's target groups where
    they are neither registered nor draining (AWS registers an instance when
    it launches, or all of them when a target group is attached)."""
    if suspended(group, "AddToLoadBalancer"):
        return
    states = [s for s in states if s.lifecycle_state in COUNTED and s.instance.state == "running"]
    for tg in target_groups(group):
        targets = [
            {"Id": s.instance.id, "Port": tg.port}
            for s in states
            if s.instance.id not in tg.targets and not emulator_elbv2.is_draining(tg, s.instance.id)
        ]
        if targets:
            tg.register(targets)


# ---------------------------------------------------------------- terminating


def deregister_targets(group: Any, instance_id: str) -> None:
    """Deregister from the group's target groups (with a data plane: draining)."""
    for tg in target_groups(group):
        if instance_id in tg.targets:
            tg.deregister([{"Id": instance_id}])


def terminate(group: Any, states: Iterable[Any], cause: str) -> None:
    """The group terminates these instances: deregistered from its target
    groups, then, with a data plane, ``Terminating`` until no longer draining
    (the loop ends them); without one, terminated at once."""
    for state in list(states):
        if state.lifecycle_state == "Terminating" or state not in group.instance_states:
            continue
        deregister_targets(group, state.instance.id)
        if data_plane():
            state.lifecycle_state = "Terminating"
            setattr(state, _TERMINATING, now())
            log(f"{group.name}: {state.instance.id} Terminating ({cause})")
        else:
            _terminate_now(group, state)


def _terminate_now(group: Any, state: Any) -> None:
    """Out of the group and terminated in EC2. The group's termination ignores
    EC2's termination protection (as AWS does), hence the instance's own
    terminate() rather than the backend's."""
    if state in group.instance_states:
        group.instance_states.remove(state)
    instance = state.instance
    if instance.state != "terminated":
        instance.terminate()
    group.autoscaling_backend.elbv2_backend.notify_terminate_instances([instance.id])


def finish_terminations(group: Any) -> None:
    """Terminate in EC2 the Terminating instances no target group of the
    group drains any more (the loop's tick, with a data plane)."""
    for state in [s for s in group.instance_states if s.lifecycle_state == "Terminating"]:
        instance_id = state.instance.id
        waiting = False
        for tg in target_groups(group):
            if instance_id in tg.targets:  # registered again meanwhile: drain it
                tg.deregister([{"Id": instance_id}])
            if emulator_elbv2.is_draining(tg, instance_id):
                waiting = True
        if not waiting or state.instance.state == "terminated":
            _terminate_now(group, state)
            log(f"{group.name}: {instance_id} terminated")


# ---------------------------------------------------------------- health


def health_check(group: Any) -> None:
    """With a data plane, AWS's health checks: an InService instance not
    running in EC2, or (type ELB, past its grace period) ``unhealthy`` in one
    of the group's target groups, is Unhealthy; Unhealthy instances are
    replaced (terminated, then the capacity upkeep launches)."""
    moment = now()
    in_service = [s for s in group.instance_states if s.lifecycle_state == "InService"]
    if not suspended(group, "HealthCheck"):
        for state in in_service:
            if state.health_status == "Unhealthy":
                continue
            why = None
            if state.instance.state != "running":
                why = f"EC2 instance state {state.instance.state}"
            elif group.health_check_type == "ELB" and moment - launched_at(state) >= grace_period(
                group
            ):
                for tg in target_groups(group):
                    if emulator_elbv2.target_state(tg, state.instance.id) == "unhealthy":
                        why = f"unhealthy in target group {tg.name}"
                        break
            if why:
                state.health_status = "Unhealthy"
                log(f"{group.name}: {state.instance.id} Unhealthy ({why})")
    if not suspended(group, "ReplaceUnhealthy") and not suspended(group, "Terminate"):
        unhealthy = [s for s in in_service if s.health_status == "Unhealthy"]
        if unhealthy:
            terminate(group, unhealthy, "unhealthy, replaced")


# ---------------------------------------------------------------- loop


def tick() -> None:
    """One pass of the background loop over every group (under the lock)."""
    from moto.autoscaling.models import autoscaling_backends

    for backend in backends(autoscaling_backends):
        for name, group in list(backend.autoscaling_groups.items()):
            try:
                maintain(backend, name, group)
            except Exception:  # one broken group must not stop the loop
                log(f"{name}: upkeep failed:\n{traceback.format_exc()}")


def maintain(backend: Any, name: str, group: Any) -> None:
    if not is_deleting(group):
        for hook in GROUP_HOOKS:
            hook(group)
    if data_plane():
        if not is_deleting(group):
            health_check(group)
        finish_terminations(group)
    if is_deleting(group):
        terminate(group, list(group.instance_states), "group deleted")
        if not group.instance_states and backend.autoscaling_groups.get(name) is group:
            del backend.autoscaling_groups[name]
            log(f"{name}: deleted")
        return
    reconcile(group)


# ---------------------------------------------------------------- patches


def propagation_seconds(environ: dict[str, str] | None = None) -> float:
    """The IAM propagation window of IAM_PROPAGATION_ENV (0 when unset)."""
    value = (environ if environ is not None else os.environ).get(IAM_PROPAGATION_ENV, "")
    return float(value) if value.strip() else 0.0


def refuse_propagating_profile(backend: Any, launch_template: dict[str, Any]) -> None:
    """AWS's ValidationError for a launch template whose instance profile was
    made less than propagation_seconds() ago (nothing when the window is 0,
    the group has no template, or the template no profile)."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.core.utils import utcnow
    from moto.iam.models import iam_backends

    window = propagation_seconds()
    if not window or not launch_template:
        return
    ec2 = backend.ec2_backend
    template = (
        ec2.get_launch_template(launch_template["LaunchTemplateId"])
        if launch_template.get("LaunchTemplateId")
        else ec2.get_launch_template_by_name(launch_template.get("LaunchTemplateName"))
    )
    version = template.get_version(launch_template.get("Version") or "$Default")
    profile = version.data.get("IamInstanceProfile") or {}
    name = profile.get("Name") or str(profile.get("Arn") or "").rsplit("/", 1)[-1]
    if not name:
        return
    iam = iam_backends[backend.account_id][backend.partition]
    found = [p for p in iam.instance_profiles.values() if p.name == name]
    if found and (utcnow() - found[0].create_date).total_seconds() < window:
        log(f"refused a group: instance profile {name} still propagating ({window:.0f} s)")
        raise ValidationError(
            "You must use a valid fully-formed launch template. Value "
            f"({name}) for parameter iamInstanceProfile.name is invalid. "
            "Invalid IAM Instance Profile name"
        )


def patch() -> None:
    """Patch moto's Auto Scaling models and responses (idempotent)."""
    from moto.autoscaling.exceptions import ResourceContentionError, ValidationError
    from moto.autoscaling.models import (
        ASG_NAME_TAG,
        AutoScalingBackend,
        FakeAutoScalingGroup,
        InstanceState,
        TerminateInstanceActivity,
    )
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import EmptyResult
    from moto.elbv2.exceptions import TargetGroupNotFoundError

    if getattr(FakeAutoScalingGroup, "_threetier_patched", False):
        return
    FakeAutoScalingGroup._threetier_patched = True  # type: ignore[attr-defined]

    original_launch_template = InstanceState.launch_template

    def instance_launch_template(self: Any) -> dict[str, Any] | None:
        """The template and version this instance was launched from (AWS);
        moto answered the group's template's default version for all."""
        spec = spec_of(self)
        if spec is not None:
            return spec.as_response()
        return original_launch_template.fget(self)  # type: ignore[union-attr]

    InstanceState.launch_template = property(instance_launch_template)  # type: ignore[method-assign,assignment]

    def set_desired_capacity(self: Any, new_capacity: int | None) -> None:
        """moto's, with AWS's placement, launch versions, scale-in choice and
        (with a data plane) Terminating; target registration only for the
        instances launched (moto registered every instance again)."""
        self.desired_capacity = self.min_size if new_capacity is None else new_capacity
        reconcile(self)
        if self.name in self.autoscaling_backend.autoscaling_groups:
            self.autoscaling_backend.update_attached_elbs(self.name)

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        """moto's launcher (all in the first subnet, template's default
        version) replaced by :func:`launch`."""
        launch(self, count_needed)

    FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity  # type: ignore[method-assign]
    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances  # type: ignore[method-assign]

    original_update_tgs = AutoScalingBackend.update_attached_target_groups
    original_terminate_instance = AutoScalingBackend.terminate_instance
    original_detach = AutoScalingBackend.detach_instances
    original_delete = AutoScalingBackend.delete_auto_scaling_group

    @functools.wraps(original_update_tgs)
    def update_attached_target_groups(self: Any, group_name: str) -> None:
        """Register the group's counted, running instances not yet registered
        (moto registered every instance state, Terminating ones and stopped
        ones included, the latter failing the whole call). Unknown target
        group ARNs still fail as in moto."""
        group = self.autoscaling_groups[group_name]
        if not group.target_group_arns:
            return
        self.elbv2_backend.describe_target_groups(
            target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
        )
        register_targets(group, group.instance_states)

    @functools.wraps(original_terminate_instance)
    def terminate_instance(
        self: Any, instance_id: str, should_decrement: bool
    ) -> TerminateInstanceActivity:
        """TerminateInstanceInAutoScalingGroup: with a data plane the
        instance goes Terminating (deregistered, terminated once drained);
        a replacement is launched unless the desired capacity is decremented,
        which AWS refuses below the minimum size. An unknown instance is
        AWS's ValidationError (moto: HTTP 500)."""
        try:
            state, group = find_instance(self, instance_id)
        except NotFoundError:
            raise not_found_error(instance_id) from None
        original_size = group.desired_capacity
        if state.lifecycle_state != "Terminating":
            if should_decrement:
                if (group.desired_capacity or 0) - 1 < (group.min_size or 0):
                    raise ValidationError(
                        f"Currently, desiredSize equals minSize ({group.min_size}). Terminating "
                        "instance without replacement will violate group's min size constraint. "
                        "Either set shouldDecrementDesiredCapacity flag to false or lower group's "
                        "min size."
                    )
                group.desired_capacity -= 1
            terminate(group, [state], "TerminateInstanceInAutoScalingGroup")
            reconcile(group)
            self.update_attached_elbs(group.name)
        return TerminateInstanceActivity(state.instance, original_size)

    @functools.wraps(original_detach)
    def detach_instances(
        self: Any, group_name: str, instance_ids: list[str], should_decrement: bool
    ) -> list[Any]:
        """moto's, plus what AWS does first: the detached instances leave the
        group's target groups (with a data plane: they drain)."""
        group = self.autoscaling_groups[group_name]
        for state in group.instance_states:
            if state.instance.id in instance_ids:
                deregister_targets(group, state.instance.id)
        return original_detach(self, group_name, instance_ids, should_decrement)

    @functools.wraps(original_delete)
    def delete_auto_scaling_group(self: Any, group_name: str) -> None:
        """With a data plane, AWS's force delete: the group shows ``Delete in
        progress`` (desired 0) while its instances go through Terminating;
        the loop removes it when the last one is terminated. Without one,
        moto's (all at once)."""
        if not data_plane() or group_name not in self.autoscaling_groups:
            return original_delete(self, group_name)
        group = self.autoscaling_groups[group_name]
        if is_deleting(group):
            return None
        setattr(group, _DELETING, True)
        group.status = "Delete in progress"
        group.min_size = group.max_size = group.desired_capacity = 0
        terminate(group, list(group.instance_states), "group deleted")
        if not group.instance_states:
            del self.autoscaling_groups[group_name]
        return None

    def set_instance_health(
        self: Any, instance_id: str, health_status: str, should_respect_grace_period: bool = True
    ) -> None:
        """SetInstanceHealth with ShouldRespectGracePeriod (moto ignored it):
        within the group's grace period, Unhealthy is ignored unless the
        caller says not to respect it. With a data plane the loop replaces an
        Unhealthy instance. Unknown instance: AWS's ValidationError."""
        try:
            state, group = find_instance(self, instance_id)
        except NotFoundError:
            raise not_found_error(instance_id) from None
        if (
            health_status == "Unhealthy"
            and should_respect_grace_period
            and now() - launched_at(state) < grace_period(group)
        ):
            log(f"{group.name}: {instance_id} Unhealthy ignored (within the grace period)")
            return
        state.health_status = health_status

    original_notify = AutoScalingBackend.notify_terminate_instances

    @functools.wraps(original_notify)
    def notify_terminate_instances(self: Any, instance_ids: list[str]) -> None:
        """EC2 TerminateInstances on group instances: out of their group, the
        group launches replacements (moto's, with :func:`reconcile`)."""
        for name, group in list(self.autoscaling_groups.items()):
            gone = [s for s in group.instance_states if s.instance.id in instance_ids]
            if not gone:
                continue
            for state in gone:
                group.instance_states.remove(state)
            if not is_deleting(group):
                reconcile(group)
                self.update_attached_elbs(name)

    def attach_instances(self: Any, group_name: str, instance_ids: list[str]) -> None:
        """moto's, with the desired capacity raised by the number attached
        (AWS; moto set it to all the group's instance states plus those,
        Terminating ones included)."""
        group = self.autoscaling_groups[group_name]
        if len(counted(group)) + len(instance_ids) > (group.max_size or 0):
            raise ResourceContentionError
        group.desired_capacity = (group.desired_capacity or 0) + len(instance_ids)
        for instance_id in instance_ids:
            state = InstanceState(
                self.ec2_backend.get_instance(instance_id),
                protected_from_scale_in=group.new_instances_protected_from_scale_in,
                autoscaling_group=group,
            )
            self.ec2_backend.create_tags([instance_id], {ASG_NAME_TAG: group.name})
            group.instance_states.append(state)
        self.update_attached_elbs(group.name)
        self.update_attached_target_groups(group.name)

    def detach_load_balancer_target_groups(
        self: Any, group_name: str, target_group_arns: list[str]
    ) -> None:
        """moto's deregistered every instance state, failing on any not
        registered (a Terminating one already drained); AWS deregisters the
        group's registered instances."""
        group = self.autoscaling_groups[group_name]
        group.target_group_arns = [x for x in group.target_group_arns if x not in target_group_arns]
        for arn in target_group_arns:
            tg = self.elbv2_backend.target_groups.get(arn)
            if tg is None:
                raise TargetGroupNotFoundError()
            ids = [s.instance.id for s in group.instance_states if s.instance.id in tg.targets]
            if ids:
                tg.deregister([{"Id": i} for i in ids])

    original_create = AutoScalingBackend.create_auto_scaling_group

    @functools.wraps(original_create)
    def create_auto_scaling_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        """HealthCheckGracePeriod=0 stays 0 (AWS); moto made it 300
        (``health_check_period or 300``), which delays health replacement
        and the refresh's default warm-up by five minutes. An instance
        profile still propagating is refused as AWS does (IAM_PROPAGATION_ENV)."""
        refuse_propagating_profile(self, kwargs.get("launch_template") or {})
        group = original_create(self, *args, **kwargs)
        period = kwargs.get("health_check_period")
        if period is not None and int(period) == 0:
            group.health_check_grace_period = 0
        return group

    AutoScalingBackend.create_auto_scaling_group = create_auto_scaling_group  # type: ignore[method-assign]
    AutoScalingBackend.attach_instances = attach_instances  # type: ignore[method-assign]
    AutoScalingBackend.detach_load_balancer_target_groups = detach_load_balancer_target_groups  # type: ignore[method-assign]
    AutoScalingBackend.update_attached_target_groups = update_attached_target_groups  # type: ignore[method-assign]
    AutoScalingBackend.terminate_instance = terminate_instance  # type: ignore[method-assign]
    AutoScalingBackend.detach_instances = detach_instances  # type: ignore[method-assign]
    AutoScalingBackend.delete_auto_scaling_group = delete_auto_scaling_group  # type: ignore[method-assign]
    AutoScalingBackend.set_instance_health = set_instance_health  # type: ignore[method-assign]
    AutoScalingBackend.notify_terminate_instances = notify_terminate_instances  # type: ignore[method-assign]

    def set_instance_health_response(self: Any) -> Any:
        """SetInstanceHealth: ShouldRespectGracePeriod passed on; a bad
        HealthStatus is AWS's ValidationError (moto: ValueError, HTTP 500)."""
        health_status = self._get_param("HealthStatus")
        if health_status not in ("Healthy", "Unhealthy"):
            raise ValidationError("Valid instance health states are: [Healthy, Unhealthy]")
        respect = self._get_param("ShouldRespectGracePeriod")
        self.autoscaling_backend.set_instance_health(
            self._get_param("InstanceId"), health_status, respect is not False
        )
        return EmptyResult()

    AutoScalingResponse.set_instance_health = set_instance_health_response  # type: ignore[method-assign]
