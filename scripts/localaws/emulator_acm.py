"""ACM's DNS validation and certificates in use, as AWS does them.

moto 5.2.5 issues every requested certificate 60 seconds after the request
(MOTO_ACM_VALIDATION_WAIT), whether or not anyone wrote its validation
records, and deletes a certificate an ALB's listener still serves. AWS issues
a DNS-validated certificate once the CNAME record ACM names for each of its
domains answers, and refuses DeleteCertificate with ResourceInUseException
while a load balancer uses it. Patched to behave so: a pending certificate is
issued when every validation record is in one of the emulator's Route 53
hosted zones (public ones: ACM resolves from the internet), with no wait,
and a certificate that a listener names is in use (DescribeCertificate's
InUseBy lists the load balancers) and cannot be deleted. Nothing else
changes. (Without the first, a role that never wrote the records would pass
against the emulator; without the second, a teardown that deletes the
certificate before the listener would.)
"""

from __future__ import annotations

from typing import Any


def _name(text: str) -> str:
    return text.lower().rstrip(".")


def zone_for(zones: list[Any], record_name: str) -> Any | None:
    """The public hosted zone that holds ``record_name`` (the longest suffix
    match, as DNS delegation would pick), or None."""
    name = _name(record_name)
    best = None
    for zone in zones:
        if zone.private_zone:
            continue
        zname = _name(zone.name)
        if (name == zname or name.endswith("." + zname)) and (
            best is None or len(zname) > len(_name(best.name))
        ):
            best = zone
    return best


def record_answers(zones: list[Any], record: dict[str, str]) -> bool:
    """Whether a CNAME record of this name with this value is in the zone
    that holds the name."""
    zone = zone_for(zones, record["Name"])
    if zone is None:
        return False
    return any(
        rrset.type == "CNAME"
        and _name(rrset.name) == _name(record["Name"])
        and any(_name(v) == _name(record["Value"]) for v in rrset.records)
        for rrset in zone.rrsets
    )


def users_of(listeners: list[Any], arn: str) -> list[str]:
    """The load balancers whose listeners serve the certificate."""
    return sorted(
        {
            lst.load_balancer_arn
            for lst in listeners
            if arn == lst.certificate or arn in (lst.certificates or [])
        }
    )


def patch() -> None:
    from moto.acm.exceptions import CertificateNotFound
    from moto.acm.models import AWSCertificateManagerBackend, CertBundle
    from moto.core.exceptions import JsonRESTError
    from moto.elbv2.models import elbv2_backends
    from moto.route53.models import route53_backends

    if getattr(CertBundle, "_threetier_patched", False):
        return
    CertBundle._threetier_patched = True  # type: ignore[attr-defined]
    original_check = CertBundle.check
    original_describe = CertBundle.describe
    original_delete = AWSCertificateManagerBackend.delete_certificate

    def listeners(account_id: str, region: str) -> list[Any]:
        backend = elbv2_backends[account_id][region]
        return [lst for lb in backend.load_balancers.values() for lst in lb.listeners.values()]

    def where(arn: str) -> tuple[str, str]:
        # arn:<partition>:acm:<region>:<account>:certificate/<id> (a CertBundle
        # keeps neither its account nor its region)
        parts = arn.split(":")
        return parts[4], parts[3]

    def check(self: Any) -> None:
        if self.type == "AMAZON_ISSUED" and self.status == "PENDING_VALIDATION":
            account, _ = where(self.arn)
            zones = list(route53_backends[account]["aws"].zones.values())
            options = original_describe(self)["Certificate"].get("DomainValidationOptions", [])
            if options and all(record_answers(zones, o["ResourceRecord"]) for o in options):
                self.status = "ISSUED"
            return  # never issued by the clock alone (moto's 60 s)
        original_check(self)

    def describe(self: Any) -> dict[str, Any]:
        result = original_describe(self)
        users = users_of(listeners(*where(self.arn)), self.arn)
        result["Certificate"]["InUseBy"] = users
        return result

    def delete_certificate(self: Any, arn: str) -> None:
        if arn not in self._certificates:
            raise CertificateNotFound(arn=arn, account_id=self.account_id)
        users = users_of(listeners(self.account_id, self.region_name), arn)
        if users:
            raise JsonRESTError(
                "ResourceInUseException", f"Certificate {arn} in use by {', '.join(users)}"
            )
        original_delete(self, arn)

    CertBundle.check = check  # type: ignore[method-assign]
    CertBundle.describe = describe  # type: ignore[method-assign]
    AWSCertificateManagerBackend.delete_certificate = delete_certificate  # type: ignore[method-assign]
