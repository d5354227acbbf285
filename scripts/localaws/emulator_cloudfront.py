"""CloudFront origins as AWS keeps them.

moto 5.2.5 drops two fields of a distribution's origin when it stores it:
``OriginAccessControlId`` (the origin access control that signs CloudFront's
requests to an S3 origin) and ``S3OriginConfig`` (kept only as an internal
attribute that GetDistributionConfig never returns). AWS returns both as
they were given. Without them an origin access control could never be seen
on a distribution in the emulator (so a role that forgot it would pass), and
a role that compares what it wants with what is there would find a
difference on every run. Patched: both are kept and returned; nothing else
changes.
"""

from __future__ import annotations

import functools
from typing import Any


def patch() -> None:
    from moto.cloudfront.models import Origin

    if getattr(Origin.__init__, "_threetier_patched", False):
        return
    original = Origin.__init__

    @functools.wraps(original)
    def init(self: Any, origin: dict[str, Any]) -> None:
        original(self, origin)
        if "S3OriginConfig" in origin:
            s3 = origin["S3OriginConfig"] or {}
            self.s3_origin_config = {"OriginAccessIdentity": s3.get("OriginAccessIdentity") or ""}
        self.origin_access_control_id = origin.get("OriginAccessControlId") or ""

    init._threetier_patched = True  # type: ignore[attr-defined]
    Origin.__init__ = init  # type: ignore[method-assign]
