"""The site over HTTPS, as make up provisions it with the production
profile's edge: the kit's ACM certificate for the site's name, validated by
DNS through the site's zone in the emulator's Route 53 (aws_certificate),
the external balancer's HTTPS listener naming it with the redirect on port 80
(aws_load_balancers), and the name's alias records (to CloudFront, and the
origin name to the balancer) and health check (aws_dns). The controller
stands the certificate in with one from the local CA for ACM's names and
127.0.0.1 (docs/local-data-plane.md, "HTTPS listeners"); HAProxy
terminates TLS on the published 443.

A client that trusts the local CA gets the site and the API, nginx sees the
request as HTTPS (it sends Strict-Transport-Security only then), a client
without that CA is refused the handshake, and plain HTTP answers with a
permanent redirect to the same path on HTTPS."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import pytest
import requests
from fleetlib import CA, emulator, fleet, skip_unless_asked

pytestmark = skip_unless_asked

ZONE = "threetier.test"  # inventories/local: threetier_site_zone
NAME = f"www.{ZONE}"  # threetier_site_name
LB = "threetier-local-ext"


def peer_certificate(port: int) -> tuple[dict, str]:
    context = ssl.create_default_context(cafile=str(CA))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.getpeercert(), tls.version()


def https_listener() -> dict:
    elb = emulator("elbv2")
    (lb,) = elb.describe_load_balancers(Names=[LB])["LoadBalancers"]
    found = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    listeners = {x["Port"]: x for x in found}
    assert set(listeners) == {80, 443}, listeners
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect", listeners[80]
    assert listeners[443]["Protocol"] == "HTTPS"
    return listeners[443] | {"lb": lb}


def test_the_site_is_served_over_https_with_the_kits_acm_certificate():
    url = fleet()["url"]
    assert url.startswith("https://127.0.0.1:"), url
    listener = https_listener()
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-"), listener["SslPolicy"]
    (named,) = listener["Certificates"]
    described = emulator("acm").describe_certificate(CertificateArn=named["CertificateArn"])
    certificate = described["Certificate"]
    assert certificate["DomainName"] == NAME
    assert certificate["Status"] == "ISSUED", "validated through the zone's CNAME"
    assert listener["lb"]["LoadBalancerArn"] in certificate.get("InUseBy", [])

    cert, version = peer_certificate(urlsplit(url).port)
    names = {value for kind, value in cert["subjectAltName"] if kind == "DNS"}
    addresses = {value for kind, value in cert["subjectAltName"] if kind == "IP Address"}
    assert NAME in names, cert
    assert "127.0.0.1" in addresses, cert
    assert version in ("TLSv1.2", "TLSv1.3")

    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    # nginx saw X-Forwarded-Proto: https (it sends HSTS only then)
    assert "max-age=" in page.headers.get("Strict-Transport-Security", ""), page.headers
    api = requests.get(url + "/api/tasks?limit=1", timeout=10)
    assert api.status_code == 200, api.text


def test_a_client_without_the_local_ca_is_refused():
    port = urlsplit(fleet()["url"]).port
    context = ssl.create_default_context()  # the system's CAs only
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()


def test_plain_http_answers_a_permanent_redirect_to_the_same_path_on_https():
    url, http = fleet()["url"], fleet()["http"]
    for method in ("GET", "HEAD", "POST"):
        answer = requests.request(
            method, http + "/api/tasks?limit=2&offset=1", allow_redirects=False, timeout=10
        )
        assert answer.status_code == 301, (method, answer.status_code, answer.text)
        assert answer.headers["Location"] == url + "/api/tasks?limit=2&offset=1", answer.headers


def test_the_sites_name_points_at_cloudfront_its_origin_at_the_balancer_with_a_health_check():
    r53 = emulator("route53")
    (zone,) = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == ZONE + "."]
    records = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]

    def alias_of(name: str, kind: str) -> str:
        (found,) = [r for r in records if r["Name"] == name + "." and r["Type"] == kind]
        return found["AliasTarget"]["DNSName"].rstrip(".").lower()

    (distribution,) = emulator("cloudfront").list_distributions()["DistributionList"]["Items"]
    assert alias_of(NAME, "A") == distribution["DomainName"].lower()
    assert alias_of(NAME, "AAAA") == distribution["DomainName"].lower()
    lb = https_listener()["lb"]
    assert alias_of(f"local-origin.{ZONE}", "A").endswith(lb["DNSName"].lower())
    checks = r53.list_health_checks()["HealthChecks"]
    config = [
        c["HealthCheckConfig"]
        for c in checks
        if c["HealthCheckConfig"].get("FullyQualifiedDomainName") == NAME
    ]
    assert config, checks
    assert config[0]["Type"] == "HTTPS"
    assert config[0]["ResourcePath"] == "/healthz"
