"""An HTTPS listener on the running fleet's external balancer, as the
controller stands it in (docs/local-data-plane.md, "HTTPS listeners"): an
ACM certificate for a name in a zone of the emulator (requested and
validated by DNS, as aws_certificate does), a listener on 443 that names it;
the controller issues that certificate from the local CA and HAProxy
terminates TLS with it on 127.0.0.1's TLS port. A client that trusts the
local CA only gets the site, nginx sees the request as HTTPS (it sends
Strict-Transport-Security only then), and once the listener is gone the port
is closed and the fleet serves as before.

Runs last of the fleet's tests (it re-creates the external balancer twice:
the published ports change), and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import ssl
import time

import requests
from fleetlib import ROOT, emulator, fleet, skip_unless_asked, target_group_arn, wait_fleet

pytestmark = skip_unless_asked

ZONE = "tls-test.threetier.test"
NAME = f"www.{ZONE}"
TLS_PORT = int(os.environ.get("THREETIER_LOCAL_TLS_PORT", "8443"))
CA = ROOT / ".local" / "ca" / "ca.crt"


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, requests.RequestException) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {seconds} s (last: {last!r})")


def peer_certificate() -> tuple[dict, str]:
    context = ssl.create_default_context(cafile=str(CA))
    with (
        socket.create_connection(("127.0.0.1", TLS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.getpeercert(), tls.version()


def test_an_https_listener_serves_acms_names_with_the_local_cas_certificate():
    url = fleet()["url"]
    r53, acm, elb = emulator("route53"), emulator("acm"), emulator("elbv2")
    zone_id = r53.create_hosted_zone(Name=ZONE, CallerReference=f"tls-test-{time.time()}")[
        "HostedZone"
    ]["Id"]
    arn = acm.request_certificate(DomainName=NAME, ValidationMethod="DNS")["CertificateArn"]
    record = acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"][
        0
    ]["ResourceRecord"]
    change = {
        "Name": record["Name"],
        "Type": "CNAME",
        "TTL": 300,
        "ResourceRecords": [{"Value": record["Value"]}],
    }
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": change}]},
    )
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED"
    (lb,) = elb.describe_load_balancers(Names=["threetier-local-ext"])["LoadBalancers"]
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
        Certificates=[{"CertificateArn": arn}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group_arn("web")}],
    )["Listeners"][0]
    try:
        cert, version = wait_for(peer_certificate, 60, "TLS on 127.0.0.1's TLS port")
        names = {value for kind, value in cert["subjectAltName"] if kind == "DNS"}
        assert NAME in names, cert
        assert dict(x[0] for x in cert["subject"])["commonName"] == NAME
        assert version in ("TLSv1.2", "TLSv1.3")
        wait_fleet("web", timeout=60)
        page = wait_for(
            lambda: requests.get(f"https://127.0.0.1:{TLS_PORT}/healthz", verify=CA, timeout=10),
            60,
            "/healthz over HTTPS",
        )
        assert page.status_code == 200, page.text
        # nginx saw X-Forwarded-Proto: https (it sends HSTS only then)
        assert "max-age=" in page.headers.get("Strict-Transport-Security", ""), page.headers
        api = requests.get(f"https://127.0.0.1:{TLS_PORT}/api/tasks?limit=1", verify=CA, timeout=10)
        assert api.status_code == 200, api.text
        # a client that does not trust the local CA is refused the handshake
        try:
            requests.get(f"https://127.0.0.1:{TLS_PORT}/healthz", timeout=10)
        except requests.exceptions.SSLError:
            pass
        else:
            raise AssertionError("a client without the local CA got through")
        # plain HTTP on 80 still serves (this listener forwards; a redirect
        # is the kit's choice in production, unit-tested in the controller)
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        elb.delete_listener(ListenerArn=listener["ListenerArn"])
        acm.delete_certificate(CertificateArn=arn)
        r53.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": change}]},
        )
        r53.delete_hosted_zone(Id=zone_id)

    def closed() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", TLS_PORT), timeout=2):
                return False
        except OSError:
            return True

    wait_for(closed, 60, "the TLS port closed once the listener is gone")
    wait_fleet("web", timeout=120)
    wait_for(
        lambda: requests.get(url + "/api/tasks?limit=1", timeout=10).status_code == 200,
        60,
        "the site over HTTP again",
    )
