"""AMIs shared between accounts and copied across them, which moto 5.2.5
keeps each inside its own account.

moto serves several accounts at once (the account of a request is the one
its credentials belong to: an STS AssumeRole of a role in another account
gives credentials of that account), but its EC2 images never leave their
account: an AMI shared with another account (a launch permission) is not
visible there, CopyImage only finds a source AMI of the caller's own
account, takes no TagSpecifications and makes the copy available at once;
DescribeSnapshots ignores who may restore a snapshot; ResetSnapshotAttribute
is not implemented. Patched, as AWS documents them:

- DescribeImages also answers the AMIs of other accounts in the region that
  are shared with the caller (a launch permission for its account, or
  public), by id, owner or filters; without their tags (an account sees the
  tags it put on its own resources only), so a tag filter never matches
  them.
- CopyImage copies such a shared AMI into the caller's account (or one of
  the caller's own, from any region), only when each of its snapshots is
  shared with the caller too (createVolumePermission; otherwise AWS refuses
  to read the AMI's storage). The copy is the caller's, tagged by the
  request's TagSpecifications (image, snapshot), and ``pending`` for
  COPY_SECONDS (``THREETIER_EMULATOR_AMI_COPY_SECONDS``, default 5; AWS takes
  minutes) before it is ``available``.
- DescribeSnapshots by id, or with RestorableByUserIds, also answers the
  snapshots of other accounts shared with the caller (untagged); an id that
  exists but is not shared with the caller is left out of the answer, as on
  AWS.
- ResetSnapshotAttribute (createVolumePermission) makes a snapshot private
  again.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Container, Iterable
from typing import Any

COPY_SECONDS_ENV = "THREETIER_EMULATOR_AMI_COPY_SECONDS"
COPY_SECONDS = float(os.environ.get(COPY_SECONDS_ENV, "5"))

#: (account, region, ami id) -> monotonic time the copy becomes available
_PENDING: dict[tuple[str, str, str], float] = {}


def _settle() -> None:
    """Copies whose time has come are available."""
    from moto.ec2.models import ec2_backends

    now = time.monotonic()
    for key, ready in list(_PENDING.items()):
        if ready > now:
            continue
        del _PENDING[key]
        account, region, ami_id = key
        backend = _backend(ec2_backends, account, region)
        ami = backend.amis.get(ami_id) if backend else None
        if ami is not None and ami.state == "pending":
            ami.state = "available"


def _backend(backends: Any, account: str, region: str) -> Any:
    """An account's EC2 backend of a region, or None; never created here
    (moto creates backends on first access, loading every built-in AMI)."""
    regions = dict.get(backends, account)
    return dict.get(regions, region) if regions is not None else None


def _other_backends(me: str, region: str) -> list[tuple[str, Any]]:
    from moto.ec2.models import ec2_backends

    out = []
    for account in list(dict.keys(ec2_backends)):
        if account == me:
            continue
        backend = _backend(ec2_backends, account, region)
        if backend is not None:
            out.append((account, backend))
    return out


def _untagged(obj: Any) -> Any:
    """Another account's resource as the caller sees it: without tags."""
    base = type(obj)
    view_cls = _VIEWS.get(base)
    if view_cls is None:
        view_cls = type(base.__name__, (base,), {"get_tags": lambda self: []})
        _VIEWS[base] = view_cls
    view = object.__new__(view_cls)
    view.__dict__.update(obj.__dict__)
    return view


_VIEWS: dict[type, type] = {}


def _image_shared_with(ami: Any, account: str, owner: str) -> bool:
    # moto's built-in AMIs live in every account's backend: only the
    # account's own images are shared from it
    if ami.owner_id != owner:
        return False
    return any(
        p.get("UserId") == account or p.get("Group") == "all" for p in ami.launch_permissions
    )


def _snapshot_shared_with(snapshot: Any, account: str, owner: str) -> bool:
    if snapshot.owner_id != owner:
        return False
    return (
        account in snapshot.create_volume_permission_userids
        or "all" in snapshot.create_volume_permission_groups
    )


def shared_images(me: str, region: str) -> dict[str, Any]:
    """id -> another account's AMI shared with `me` in `region`."""
    out = {}
    for account, backend in _other_backends(me, region):
        for ami in list(backend.amis.values()):
            if ami.id not in out and _image_shared_with(ami, me, account):
                out[ami.id] = ami
    return out


def shared_snapshots(me: str, region: str) -> tuple[dict[str, Any], set[str]]:
    """(id -> another account's snapshot shared with `me`, ids of every
    other account's snapshot)."""
    shared, every = {}, set()
    for account, backend in _other_backends(me, region):
        for snap in list(backend.snapshots.values()):
            every.add(snap.id)
            if _snapshot_shared_with(snap, me, account):
                shared[snap.id] = snap
    return shared, every


def _replaces(cls: type, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: cls.<name> is replaced by the decorated function, which is
    given moto's original as its first argument; once (patch() may run more
    than once: a second time finds it patched)."""

    def install(make: Callable[..., Any]) -> Callable[..., Any]:
        original = getattr(cls, name)
        if getattr(original, "_threetier_patched", False):
            return make

        @functools.wraps(original)
        def patched(self: Any) -> Any:
            return make(original, self)

        patched._threetier_patched = True  # type: ignore[attr-defined]
        setattr(cls, name, patched)
        return make

    return install


def _with_shared(
    ids: list[str],
    filters: Any,
    *,
    own: Callable[[list[str] | None], Iterable[Any]],
    is_own: Callable[[str], bool],
    shared: dict[str, Any],
    exists: Container[str],
    not_found: Callable[[list[str]], Exception],
    keep: Callable[[Any], bool] = lambda _: True,
) -> list[Any]:
    """A Describe call's answer that also holds the resources of other
    accounts shared with the caller: the account's own (own(ids of its own),
    or own(None) without ids, as moto answers them), then the shared ones
    (by id, or every one; those `keep` keeps), untagged and filtered as moto
    filters the account's own. An id that neither is the account's own nor
    `exists` elsewhere raises not_found(those ids)."""
    from moto.ec2.utils import generic_filter

    if ids:
        mine = [i for i in ids if is_own(i)]
        missing = [i for i in ids if i not in mine and i not in exists]
        if missing:
            raise not_found(missing)
        found = own(mine) if mine else []
        theirs = [shared[i] for i in ids if i in shared and i not in mine]
    else:
        found = own(None)
        theirs = list(shared.values())
    views = [_untagged(x) for x in theirs if keep(x)]
    if filters:
        views = list(generic_filter(filters, views))
    return list(found) + views


def patch_describe_images() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidAMIIdError
    from moto.ec2.responses.amis import AmisResponse

    @_replaces(AmisResponse, "describe_images")
    def describe_images(original: Callable[[Any], Any], self: Any) -> Any:
        _settle()
        me, region = self.current_account, self.region
        shared = shared_images(me, region)
        owners = self._get_param("Owners", [])
        if not shared or (owners and set(owners) <= {"self", me, "amazon"}):
            return original(self)
        backend = self.ec2_backend
        filters = self._filters_from_querystring()

        def own(ids: list[str] | None) -> Any:
            if ids is not None:
                return backend.describe_images(ami_ids=ids, filters=filters, owners=owners)
            return backend.describe_images(
                filters=filters,
                exec_users=self._get_param("ExecutableUsers", []),
                owners=owners,
            )

        images = _with_shared(
            self._get_param("ImageIds", []),
            filters,
            own=own,
            is_own=lambda i: i in backend.amis or i in backend.deleted_amis,
            shared=shared,
            exists=shared,
            not_found=InvalidAMIIdError,
            keep=lambda a: not owners or a.owner_id in owners,
        )
        return ActionResult({"Images": images})


def patch_copy_image() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.utils import random_ami_id

    @_replaces(AmisResponse, "copy_image")
    def copy_image(_original: Callable[[Any], Any], self: Any) -> Any:
        _settle()
        me, region = self.current_account, self.region
        source_id = self._get_param("SourceImageId")
        source_region = self._get_param("SourceRegion") or region
        self.error_on_dryrun()
        own = _backend(ec2_backends, me, source_region)
        source = own.amis.get(source_id) if own is not None else None
        if source is None:
            source = shared_images(me, source_region).get(source_id)
            if source is None:
                raise InvalidAMIIdError(source_id)
            snapshot = source.ebs_snapshot
            if not _snapshot_shared_with(snapshot, me, source.owner_id):
                raise EC2ClientError(
                    "InvalidRequest",
                    f"You do not have permission to access the storage of this ami: {source_id}'s "
                    f"snapshot {snapshot.id} is not shared with account {me}",
                )
        tags = self._parse_tag_specification()
        backend = self.ec2_backend
        copy = Ami(
            backend,
            random_ami_id(),
            source_ami=source,
            name=self._get_param("Name"),
            description=self._get_param("Description"),
        )
        backend.amis[copy.id] = copy
        if tags.get("image"):
            copy.add_tags(tags["image"])
        if tags.get("snapshot"):
            backend.create_tags([copy.ebs_snapshot.id], tags["snapshot"])
        copy.state = "pending"
        _PENDING[(me, region, copy.id)] = time.monotonic() + COPY_SECONDS
        return ActionResult({"ImageId": copy.id})


def patch_describe_snapshots() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidSnapshotIdError
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    @_replaces(ElasticBlockStore, "describe_snapshots")
    def describe_snapshots(original: Callable[[Any], Any], self: Any) -> Any:
        ids = self._get_param("SnapshotIds", [])
        restorable = self._get_param("RestorableByUserIds", [])
        if not ids and not restorable:
            return original(self)
        backend = self.ec2_backend
        filters = self._filters_from_querystring()
        shared, every = shared_snapshots(self.current_account, self.region)
        snapshots = _with_shared(
            ids,
            filters,
            own=lambda mine: backend.describe_snapshots(snapshot_ids=mine, filters=filters),
            is_own=lambda i: i in backend.snapshots,
            shared=shared,
            exists=every,
            not_found=lambda _missing: InvalidSnapshotIdError(),
        )
        return ActionResult({"Snapshots": snapshots})


def patch_reset_snapshot_attribute() -> None:
    from moto.core.responses import EmptyResult
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    @_replaces(ElasticBlockStore, "reset_snapshot_attribute")
    def reset_snapshot_attribute(_original: Callable[[Any], Any], self: Any) -> Any:
        snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
        if self._get_param("Attribute") != "createVolumePermission":
            raise NotImplementedError(
                "ResetSnapshotAttribute: only createVolumePermission is emulated"
            )
        self.error_on_dryrun()
        snapshot.create_volume_permission_userids.clear()
        snapshot.create_volume_permission_groups.clear()
        return EmptyResult()


def patch() -> None:
    """Apply every patch of this module. Idempotent."""
    patch_describe_images()
    patch_copy_image()
    patch_describe_snapshots()
    patch_reset_snapshot_attribute()
