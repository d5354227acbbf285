"""CloudFront's local stand-in (scripts/localaws/dataplane_cdn.py): the
distribution read from its configuration, its origin resolved through the
site's Route 53 records, and the HAProxy configuration made of them. Pure:
the fleet's tests (tests/local/test_cdn.py) run it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from localaws import dataplane_cdn as cdn

ALL = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]


def config(oac: str = "E2OAC", enabled: bool = True) -> dict:
    """A distribution as roles/aws_cdn makes it (its template's shape)."""
    alb = {
        "TargetOriginId": "alb",
        "ViewerProtocolPolicy": "https-only",
        "AllowedMethods": {"Quantity": 7, "Items": ALL},
        "CachePolicyId": cdn.CACHING_DISABLED,
    }
    return {
        "Enabled": enabled,
        "Aliases": {"Quantity": 1, "Items": ["www.threetier.test"]},
        "DefaultRootObject": "index.html",
        "Origins": {
            "Quantity": 2,
            "Items": [
                {
                    "Id": "page",
                    "DomainName": "threetier-local-artifacts.s3.us-east-1.amazonaws.com",
                    "OriginPath": "/site",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                    "OriginAccessControlId": oac,
                    "CustomHeaders": {"Quantity": 0},
                },
                {
                    "Id": "alb",
                    "DomainName": "local-origin.threetier.test",
                    "OriginPath": "",
                    "CustomHeaders": {
                        "Quantity": 1,
                        "Items": [{"HeaderName": "X-Origin-Verify", "HeaderValue": "k3y%val"}],
                    },
                    "CustomOriginConfig": {
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": "https-only",
                        "OriginReadTimeout": 25,
                        "OriginKeepaliveTimeout": 5,
                    },
                },
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "page",
            "ViewerProtocolPolicy": "redirect-to-https",
            "AllowedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]},
            "CachePolicyId": cdn.CACHING_OPTIMIZED,
        },
        "CacheBehaviors": {
            "Quantity": 2,
            "Items": [{"PathPattern": "/api/*", **alb}, {"PathPattern": "/health?", **alb}],
        },
        "ViewerCertificate": {
            "ACMCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "MinimumProtocolVersion": "TLSv1.2_2021",
        },
    }


def lines_of(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines()]


def test_the_distribution_is_read_from_its_configuration() -> None:
    d = cdn.distribution_from("E1ABC", config(), ["I2", "I1"])
    assert d.enabled
    assert d.aliases == ("www.threetier.test",)
    assert d.root_object == "index.html"
    page, alb = d.origins
    assert (page.bucket, page.path, page.signed, page.headers) == (
        "threetier-local-artifacts",
        "/site",
        True,
        (),
    )
    assert (alb.bucket, alb.domain, alb.headers, alb.read_timeout) == (
        "",
        "local-origin.threetier.test",
        (("X-Origin-Verify", "k3y%val"),),
        25,
    )
    assert [(b.pattern, b.origin_id, b.cached) for b in d.behaviours] == [
        ("/api/*", "alb", False),
        ("/health?", "alb", False),
        ("", "page", True),
    ]
    assert d.invalidations == ("I1", "I2")
    assert d.certificate_arn.endswith("certificate/abc")
    assert not cdn.distribution_from("E1", config(oac=""), []).origins[0].signed


def test_an_origin_resolves_through_the_zones_alias_records() -> None:
    zones = {
        "threetier.test": [
            {"Name": "threetier.test.", "Type": "SOA"},
            {
                "Name": "local-origin.threetier.test.",
                "Type": "A",
                "AliasTarget": {
                    "DNSName": "dualstack.Threetier-Local-Ext-1.us-east-1.elb.amazonaws.com."
                },
            },
        ],
        "other.test": [],
    }
    assert (
        cdn.alias_target(zones, "LOCAL-origin.threetier.test")
        == "threetier-local-ext-1.us-east-1.elb.amazonaws.com"
    )
    assert cdn.alias_target(zones, "www.threetier.test") == ""
    assert cdn.alias_target(zones, "local-origin.elsewhere.test") == ""


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/api/*", "/api/tasks", True),
        ("api/*", "/api/tasks/3", True),
        ("/api/*", "/apix", False),
        ("/health?", "/healthz", True),
        ("/health?", "/healthzz", False),
        ("/a.b", "/aXb", False),
    ],
)
def test_path_patterns_are_cloudfronts_wildcards(pattern: str, path: str, matches: bool) -> None:
    import re

    assert bool(re.match(cdn.pattern_regex(pattern), path)) is matches


def test_the_configuration_routes_behaviours_in_order_to_their_origins() -> None:
    d = cdn.distribution_from("E1ABC", config(), [])
    text = cdn.render_config(
        d, "certs/v.pem", 9443, 9080, "127.0.0.1:4566", {"alb": "127.0.0.1:8443"}
    )
    lines = lines_of(text)
    assert (
        "bind 127.0.0.1:9443 ssl crt /etc/haproxy/local/certs/v.pem ssl-min-ver TLSv1.2"
        " alpn h2,http/1.1" in lines
    )
    viewer = lines[lines.index("frontend viewer") : lines.index("backend origin-page")]
    chosen = [x for x in viewer if "set-var(txn.behaviour)" in x]
    assert chosen == [
        "http-request set-var(txn.behaviour) int(0) if !{ var(txn.behaviour) -m found }"
        " { path -m reg '^/api/.*$' }",
        "http-request set-var(txn.behaviour) int(1) if !{ var(txn.behaviour) -m found }"
        " { path -m reg '^/health.$' }",
        "http-request set-var(txn.behaviour) int(2) if !{ var(txn.behaviour) -m found }",
    ]
    # methods a behaviour does not allow: 403, as CloudFront answers
    assert (
        "http-request return status 403 if { var(txn.behaviour) -m int 2 } !{ method GET HEAD }"
        in viewer
    )
    # only the page is cached
    assert [x for x in viewer if "cache-" in x] == [
        "http-request cache-use edge if { var(txn.behaviour) -m int 2 }",
        "http-response cache-store edge if { var(txn.behaviour) -m int 2 }",
    ]
    page = lines[lines.index("backend origin-page") : lines.index("backend origin-alb")]
    assert "http-request set-path /index.html if { path / }" in page
    assert "http-request set-uri /threetier-local-artifacts/site%[path]" in page
    assert f"http-request set-header Authorization '{cdn.UNCHECKED_SIGNATURE}'" in page
    assert page[-2:] == ["server s3 127.0.0.1:4566", ""]
    alb = lines[lines.index("backend origin-alb") :]
    assert "http-request set-header Host local-origin.threetier.test" in alb
    assert "http-request set-header X-Origin-Verify 'k3y%%val'" in alb
    assert (
        "server origin 127.0.0.1:8443 ssl verify required ca-file /etc/haproxy/local/ca.crt"
        " sni str(local-origin.threetier.test) verifyhost local-origin.threetier.test"
        " alpn http/1.1 pool-purge-delay 5s"
    ) in alb
    # plain HTTP: the API refused (https-only), the page redirected
    http = lines[lines.index("frontend viewer-http") : lines.index("frontend viewer")]
    assert http[2:] == [
        "http-request return status 403 if { path -m reg '^/api/.*$' }",
        "http-request return status 403 if { path -m reg '^/health.$' }",
        "http-request redirect location https://%[req.hdr(host),field(1,:)]:9443"
        "%[capture.req.uri] code 301",
        "",
    ]


def test_without_oac_the_page_is_asked_anonymously_and_an_unresolved_origin_is_502() -> None:
    d = cdn.distribution_from("E1ABC", config(oac=""), [])
    lines = lines_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}))
    assert not [x for x in lines if "set-header Authorization" in x]
    assert "# no viewer certificate yet: HTTPS stays closed" in lines
    alb = lines[lines.index("backend origin-alb") :]
    assert "http-request return status 502" in alb
    assert not [x for x in alb if x.startswith("server ")]


def test_an_invalidation_changes_the_structure() -> None:
    def structure(invalidations: list[str]) -> str:
        d = cdn.distribution_from("E1ABC", config(), invalidations)
        return cdn.structure_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}))

    assert structure(["I1"]) == structure(["I1"])
    assert structure(["I1"]) != structure(["I1", "I2"])
    assert structure(["I2", "I1"]) == structure(["I1", "I2"])


ACL_ARN = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/threetier-local-cdn/a1b2"


def web_acl(limit: int = 2000, forwarded: bool = False, custom: int = 0) -> dict:
    """A CLOUDFRONT web ACL as roles/aws_waf makes it (GetWebACL's WebACL)."""
    rate = {"Limit": limit, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
    if forwarded:
        rate |= {
            "AggregateKeyType": "FORWARDED_IP",
            "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH"},
        }
    block = {"CustomResponse": {"ResponseCode": custom}} if custom else {}
    return {
        "Name": "threetier-local-cdn",
        "Rules": [
            {
                "Name": "AWSManagedRulesCommonRuleSet",
                "Priority": 20,
                "OverrideAction": {"None": {}},
                "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "x"}},
            },
            {
                "Name": "rate-limit-per-address",
                "Priority": 0,
                "Action": {"Block": block},
                "Statement": {"RateBasedStatement": rate},
            },
        ],
    }


def test_the_web_acls_rate_rule_is_enforced_per_address_before_anything_else() -> None:
    acl = cdn.web_acl_from(web_acl(limit=150))
    assert acl.others == ("AWSManagedRulesCommonRuleSet",)
    assert cdn.web_acl_id(ACL_ARN) == ("threetier-local-cdn", "a1b2")
    c = config() | {"WebACLId": ACL_ARN}
    d = cdn.distribution_from("E1ABC", c, [])
    lines = lines_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}, acl))
    viewer = lines[lines.index("frontend viewer") :]
    waf = viewer[2 : viewer.index("option forwardfor")]
    assert waf == [
        "# web ACL threetier-local-cdn",
        "# rule AWSManagedRulesCommonRuleSet: no local stand-in (AWS's alone)",
        "# rule rate-limit-per-address: at most 150 requests per 300 s per address",
        "http-request track-sc0 src table waf-0",
        "http-request deny deny_status 403 if { sc_http_req_rate(0,waf-0) gt 150 }",
    ]
    assert lines[lines.index("backend waf-0") + 1] == (
        "stick-table type ipv6 size 100k expire 300s store http_req_rate(300s)"
    )
    # behind something that forwards the address, a custom response code
    forwarded = cdn.web_acl_from(web_acl(forwarded=True, custom=429))
    lines = lines_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}, forwarded))
    assert "http-request track-sc0 req.hdr_ip(X-Forwarded-For,1) table waf-0" in lines
    assert "http-request deny deny_status 429 if { sc_http_req_rate(0,waf-0) gt 2000 }" in lines
    # a web ACL the emulator did not give: said, nothing enforced
    lines = lines_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}, None))
    assert f"# web ACL {ACL_ARN}: not readable yet, nothing enforced" in lines
    assert not [x for x in lines if "track-sc" in x]


def test_a_change_of_the_web_acl_changes_the_structure() -> None:
    d = cdn.distribution_from("E1ABC", config() | {"WebACLId": ACL_ARN}, [])

    def structure(limit: int) -> str:
        acl = cdn.web_acl_from(web_acl(limit=limit))
        return cdn.structure_of(cdn.render_config(d, "", 9443, 9080, "127.0.0.1:4566", {}, acl))

    assert structure(100) == structure(100)
    assert structure(100) != structure(2000)
