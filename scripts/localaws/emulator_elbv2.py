"""Elastic Load Balancing v2 target health with a data plane attached.

moto 5.2.5 reports every registered target of a running instance ``healthy``
the moment it is registered, forgets a deregistered target at once, and keeps
a target whose instance was terminated ``draining`` forever (and leaves it out
of a DescribeTargetHealth without ``Targets``). On AWS a registered target is
``initial`` until the load balancer's health checks decide, and a
deregistered one is ``draining`` until its connections end or the target
group's ``deregistration_delay.timeout_seconds`` passes; DescribeTargetHealth
without ``Targets`` lists the draining ones too.

With a data plane (``THREETIER_EMULATOR_DATA_PLANE=1``) the patches below do
what AWS does, the health itself coming from the data plane's reports
(``POST /_threetier/target-health``, see :func:`apply_reports`). Without one,
every patched method is moto's own, so the kit's emulator-only tests keep
their instant answers.

State is kept on moto's own ``FakeTargetGroup`` objects (two extra
attributes), so moto's reset and DeleteTargetGroup drop it with them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from localaws.emulator_state import backends, data_plane, log, now

#: Attribute names on FakeTargetGroup (emulator-only state).
_HEALTH = "_threetier_health"
_DRAINING = "_threetier_draining"

INITIAL = ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
CHECKING = ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")
DRAINING = ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress")
UNHEALTHY_REASON = "Target.FailedHealthChecks"
UNHEALTHY_DESCRIPTION = "Health checks failed"

#: Report states the data plane may send (anything else is ignored).
REPORT_STATES = frozenset({"healthy", "unhealthy", "initial", "drained"})


@dataclass
class Drain:
    """A deregistered target still draining: until the data plane reports it
    drained or ``deadline`` (monotonic) passes."""

    target: dict[str, Any]
    deadline: float


def _health(tg: Any) -> dict[str, tuple[str, str | None, str | None]]:
    table = getattr(tg, _HEALTH, None)
    if table is None:
        table = {}
        setattr(tg, _HEALTH, table)
    return table


def _draining(tg: Any) -> dict[str, Drain]:
    table = getattr(tg, _DRAINING, None)
    if table is None:
        table = {}
        setattr(tg, _DRAINING, table)
    return table


def _port(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- queries
# (used by the Auto Scaling extensions: health checks, terminations, refresh)


def target_state(tg: Any, target_id: str) -> str | None:
    """The target's state as DescribeTargetHealth would say it, or None when
    it is neither registered nor draining."""
    if target_id in tg.targets:
        return tg.health_for({"Id": target_id}, tg.ec2_backend).status
    if target_id in _draining(tg):
        return "draining"
    return None


def is_draining(tg: Any, target_id: str) -> bool:
    return target_id in _draining(tg)


def target_description(tg: Any, target_id: str) -> str:
    """``state (reason: description)`` of a target, for status reasons."""
    if target_id not in tg.targets:
        return "not registered"
    health = tg.health_for({"Id": target_id}, tg.ec2_backend)
    detail = ": ".join(x for x in (health.reason, health.description) if x)
    return f"{health.status} ({detail})" if detail else health.status


# ---------------------------------------------------------------- changes


def _start_draining(tg: Any, target: dict[str, Any]) -> None:
    """AWS: a deregistered target drains for the target group's
    deregistration delay (0: gone at once)."""
    target_id = target["Id"]
    _health(tg).pop(target_id, None)
    delay = _port(tg.attributes.get("deregistration_delay.timeout_seconds", 300)) or 0
    if delay <= 0:
        _finish_draining(tg, target_id, target)
        return
    _draining(tg)[target_id] = Drain(target=dict(target), deadline=now() + delay)


def _finish_draining(tg: Any, target_id: str, target: dict[str, Any] | None = None) -> None:
    drain = _draining(tg).pop(target_id, None)
    if target is None and drain is not None:
        target = drain.target
    if target is not None:
        tg.deregistered_targets[target_id] = target


def expire_draining() -> None:
    """End every draining whose deregistration delay passed (the loop's tick)."""
    from moto.elbv2.models import elbv2_backends

    moment = now()
    for backend in backends(elbv2_backends):
        for tg in list(backend.target_groups.values()):
            for target_id, drain in list(_draining(tg).items()):
                if drain.deadline <= moment:
                    _finish_draining(tg, target_id)
                    log(f"{tg.name}: {target_id} drained (deregistration delay passed)")


def find_target_group(arn: str) -> Any | None:
    from moto.elbv2.models import elbv2_backends

    for backend in backends(elbv2_backends):
        tg = backend.target_groups.get(arn)
        if tg is not None:
            return tg
    return None


def apply_reports(reports: list[Any]) -> tuple[int, int]:
    """The data plane's health reports (the body of ``POST
    /_threetier/target-health``): ``healthy``/``unhealthy``/``initial`` set a
    registered target's health, ``drained`` ends a draining target's draining.
    Anything else (unknown target group, target not registered or not
    draining, another port, an unknown state) is ignored and counted so.

    Returns (accepted, ignored)."""
    accepted = ignored = 0
    for report in reports:
        if not isinstance(report, dict):
            ignored += 1
            continue
        state = report.get("state")
        target_id = report.get("id")
        tg = find_target_group(str(report.get("target_group_arn", "")))
        if tg is None or state not in REPORT_STATES or not isinstance(target_id, str):
            ignored += 1
            continue
        port = _port(report.get("port")) if report.get("port") is not None else None
        if state == "drained":
            drain = _draining(tg).get(target_id)
            if drain is None or (port is not None and port != _port(drain.target.get("Port"))):
                ignored += 1
                continue
            _finish_draining(tg, target_id)
            accepted += 1
            continue
        registered = tg.targets.get(target_id)
        if registered is None or (port is not None and port != _port(registered.get("Port"))):
            ignored += 1
            continue
        if state == "healthy":
            entry: tuple[str, str | None, str | None] = ("healthy", None, None)
        elif state == "unhealthy":
            entry = (
                "unhealthy",
                str(report.get("reason") or UNHEALTHY_REASON),
                str(report.get("description") or UNHEALTHY_DESCRIPTION),
            )
        else:
            entry = (
                "initial",
                str(report.get("reason") or CHECKING[1]),
                str(report.get("description") or CHECKING[2]),
            )
        _health(tg)[target_id] = entry
        accepted += 1
    return accepted, ignored


# ---------------------------------------------------------------- patches


def patch() -> None:
    """Patch moto's FakeTargetGroup and ELBv2Backend (idempotent)."""
    from moto.elbv2.exceptions import InvalidTargetError, TargetGroupNotFoundError, TargetNotRunning
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    if getattr(FakeTargetGroup, "_threetier_patched", False):
        return
    FakeTargetGroup._threetier_patched = True  # type: ignore[attr-defined]

    original_register = FakeTargetGroup.register
    original_deregister = FakeTargetGroup.deregister
    original_terminated = FakeTargetGroup.deregister_terminated_instances
    original_health_for = FakeTargetGroup.health_for
    original_describe = ELBv2Backend.describe_target_health

    @functools.wraps(original_register)
    def register(self: Any, targets: list[dict[str, Any]]) -> None:
        """With a data plane: a new target, or one registered again while
        draining, is ``initial`` until the data plane reports (AWS: until the
        health checks decide). moto: ``healthy`` at once. Checked before any
        change (moto registered the targets before a stopped one, then failed)."""
        if not data_plane():
            return original_register(self, targets)
        for target in targets:
            instance = self.ec2_backend.get_instance_by_id(target["Id"])
            if instance is not None and instance.state != "running":
                raise TargetNotRunning(instance_id=target["Id"])
        for target in targets:
            target_id = target["Id"]
            port = target.get("Port", self.port)
            before = self.targets.get(target_id)
            self.targets[target_id] = {"Id": target_id, "Port": port}
            self.deregistered_targets.pop(target_id, None)
            self.terminated_targets.pop(target_id, None)
            was_draining = _draining(self).pop(target_id, None) is not None
            if before is None or was_draining or _port(before.get("Port")) != _port(port):
                _health(self)[target_id] = INITIAL
        return None

    @functools.wraps(original_deregister)
    def deregister(self: Any, targets: list[dict[str, Any]]) -> None:
        """With a data plane: a deregistered target drains (AWS) instead of
        vanishing (moto); deregistering a draining one again changes nothing."""
        if not data_plane():
            return original_deregister(self, targets)
        for target in targets:
            if target["Id"] not in self.targets and target["Id"] not in _draining(self):
                raise InvalidTargetError()
        for target in targets:
            registered = self.targets.pop(target["Id"], None)
            if registered is not None:
                _start_draining(self, registered)
        return None

    @functools.wraps(original_terminated)
    def deregister_terminated_instances(self: Any, instance_ids: list[str]) -> None:
        """With a data plane: a target whose instance EC2 terminated is
        deregistered and drains, as on AWS (moto: ``draining`` forever)."""
        if not data_plane():
            return original_terminated(self, instance_ids)
        for target_id in list(self.targets):
            if target_id in instance_ids:
                _start_draining(self, self.targets.pop(target_id))
        return None

    @functools.wraps(original_health_for)
    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        """With a data plane: a registered target's state is what the data
        plane last reported (``initial`` before any report), a draining one is
        ``draining``. moto's answers stay for a stopped instance (``unused``,
        Target.InvalidState) and for targets never registered or done
        draining (``unused``, Target.NotRegistered). Same response shape."""
        if not data_plane():
            return original_health_for(self, target, ec2_backend)
        target_id = target["Id"]
        registered = self.targets.get(target_id)
        if registered is None:
            drain = _draining(self).get(target_id)
            if drain is not None:
                return FakeHealthStatus(
                    target_id, drain.target["Port"], self.health_check_port, *DRAINING
                )
            return original_health_for(self, target, ec2_backend)
        if target_id.startswith("i-"):
            instance = ec2_backend.get_instance_by_id(target_id)
            if instance is not None and instance.state == "stopped":
                return original_health_for(self, target, ec2_backend)
        state, reason, description = _health(self).get(target_id, INITIAL)
        return FakeHealthStatus(
            target_id, registered["Port"], self.health_check_port, state, reason, description
        )

    @functools.wraps(original_describe)
    def describe_target_health(
        self: Any, target_group_arn: str, targets: list[dict[str, Any]]
    ) -> list[Any]:
        """With a data plane and no ``Targets``: every registered and every
        draining target (AWS); moto listed the registered ones only."""
        if not data_plane() or targets:
            return original_describe(self, target_group_arn, targets)
        tg = self.target_groups.get(target_group_arn)
        if tg is None:
            raise TargetGroupNotFoundError()
        listing = list(tg.targets.values()) + [d.target for d in _draining(tg).values()]
        return [tg.health_for(t, self.ec2_backend) for t in listing]

    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]
