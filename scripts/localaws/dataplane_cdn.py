"""HAProxy standing in for a CloudFront distribution.

One container per enabled distribution the emulator has, on the host's
network (CloudFront is outside the VPC: it reaches the internet-facing ALB
where the internet does, at the port the host publishes it on, and the
bucket at the emulator's S3 endpoint). Everything comes from the
distribution's configuration (GetDistributionConfig):

- viewers: HTTPS on 127.0.0.1 (the cdn port) with a certificate the local CA
  issues for the names ACM gives the viewer certificate (dataplane_tls), the
  oldest TLS version from MinimumProtocolVersion; plain HTTP answers a
  redirect (redirect-to-https) or 403 (https-only), as CloudFront does;
- the cache behaviours, tried in order (their path patterns, CloudFront's
  wildcards), then the default one; a method a behaviour does not allow is
  refused with 403;
- an S3 origin: the object at the origin path in the bucket (the default
  root object for "/"), read from the emulator's S3. With an origin access
  control CloudFront signs its request (SigV4); HAProxy cannot, so the
  stand-in sends an Authorization header of CloudFront's shape whose
  signature the emulator does not check (moto checks none: it takes a
  request with the header as authenticated, one without as anonymous, which
  a private object refuses with 403, as without OAC on AWS). What only AWS
  proves, the bucket policy letting only this distribution read, is in the
  README;
- a custom origin: its domain name resolved as CloudFront resolves it, by
  the site's Route 53 records (an alias to a load balancer), over HTTPS with
  the origin name as SNI and the certificate verified against the local CA,
  with the origin's custom headers (the ALB's origin check);
- the distribution's web ACL (WebACLId: a CLOUDFRONT-scoped wafv2 web ACL):
  its rate-based rules that block are enforced per viewer address, counted
  over the rule's window (HAProxy's sliding request rate), answered with
  WAF's 403 (or the rule's custom response code); a change of the web ACL
  reloads HAProxy, which starts counting afresh. Other statements (AWS's
  managed rule groups) have no local stand-in: the configuration names them;
- CachingOptimized behaviours are cached (HAProxy's cache honours the
  object's Cache-Control; without one, the policy's default TTL), and an
  invalidation empties the cache: the invalidation's id is part of the
  configuration's structure, so a new one reloads HAProxy with a new cache.
  CachingDisabled behaviours are never cached.

The configuration holds the origin's secret header: it is written 0600 and
never logged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import dataplane_haproxy as hap

# the same paths inside the container as an ALB's (the lb image's)
CONFIG_DIR = hap.CONFIG_DIR
RUN_DIR = hap.RUN_DIR
SOCKET = hap.SOCKET

# AWS's managed cache policies (their ids are the same in every account)
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
DEFAULT_TTL = 86400  # CachingOptimized's default TTL

# The origin access control's request, as far as the emulator looks at it
# (the credential scope names the service; the signature is never checked).
UNCHECKED_SIGNATURE = (
    "AWS4-HMAC-SHA256 Credential=CLOUDFRONTLOCAL/20260101/us-east-1/s3/aws4_request,"
    " SignedHeaders=host, Signature=0"
)

_S3_DOMAIN = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]+)\.s3(\.[a-z0-9-]+)?\.amazonaws\.com$")


@dataclass(frozen=True)
class Origin:
    id: str
    domain: str
    path: str  # OriginPath: "" or "/folder"
    headers: tuple[tuple[str, str], ...]  # custom headers (name, value)
    bucket: str  # an S3 origin's bucket; "" for a custom origin
    signed: bool = False  # an S3 origin with an origin access control
    read_timeout: int = 30
    keepalive_timeout: int = 5


@dataclass(frozen=True)
class Behaviour:
    pattern: str  # "" for the default behaviour
    origin_id: str
    viewer_policy: str  # allow-all | redirect-to-https | https-only
    methods: tuple[str, ...]
    cached: bool


@dataclass(frozen=True)
class RateRule:
    """A rate-based rule of the web ACL that blocks: at most ``limit``
    requests per ``window`` seconds from one address."""

    name: str
    limit: int
    window: int
    forwarded_header: str = ""  # FORWARDED_IP: the header holding the address
    status: int = 403


@dataclass(frozen=True)
class WebAcl:
    name: str
    rate_rules: tuple[RateRule, ...]
    others: tuple[str, ...]  # rules with no local stand-in, by name


def web_acl_from(raw: Mapping[str, Any]) -> WebAcl:
    """A web ACL from GetWebACL's WebACL: its blocking rate-based rules, in
    priority order, and the names of the rules left to AWS."""
    rates, others = [], []
    for rule in sorted(raw.get("Rules") or [], key=lambda r: r.get("Priority", 0)):
        rate = (rule.get("Statement") or {}).get("RateBasedStatement")
        block = (rule.get("Action") or {}).get("Block")
        if rate is None or block is None:
            others.append(rule.get("Name", ""))
            continue
        forwarded = ""
        if rate.get("AggregateKeyType") == "FORWARDED_IP":
            forwarded = (rate.get("ForwardedIPConfig") or {}).get("HeaderName", "X-Forwarded-For")
        custom = block.get("CustomResponse") or {}
        rates.append(
            RateRule(
                name=rule.get("Name", ""),
                limit=int(rate.get("Limit", 0)),
                window=int(rate.get("EvaluationWindowSec", 300)),
                forwarded_header=forwarded,
                status=int(custom.get("ResponseCode", 403)),
            )
        )
    return WebAcl(name=raw.get("Name", ""), rate_rules=tuple(rates), others=tuple(others))


def web_acl_id(arn: str) -> tuple[str, str] | None:
    """(name, id) of a CLOUDFRONT web ACL's ARN (…:global/webacl/<name>/<id>)."""
    m = re.match(r"^arn:[^:]+:wafv2:[^:]*:[^:]*:global/webacl/([^/]+)/([^/]+)$", arn)
    return (m.group(1), m.group(2)) if m else None


@dataclass(frozen=True)
class Distribution:
    id: str
    enabled: bool
    aliases: tuple[str, ...]
    root_object: str
    origins: tuple[Origin, ...]
    behaviours: tuple[Behaviour, ...]  # in order, the default one last
    certificate_arn: str
    minimum_protocol: str
    invalidations: tuple[str, ...]  # ids (sorted: any new one changes them)
    web_acl_arn: str = ""


def _items(raw: Mapping[str, Any] | None) -> list[Any]:
    return list((raw or {}).get("Items") or [])


def _behaviour(raw: Mapping[str, Any], pattern: str) -> Behaviour:
    return Behaviour(
        pattern=pattern,
        origin_id=raw.get("TargetOriginId", ""),
        viewer_policy=raw.get("ViewerProtocolPolicy", "allow-all"),
        methods=tuple(_items(raw.get("AllowedMethods")) or ["GET", "HEAD"]),
        cached=raw.get("CachePolicyId", "") != CACHING_DISABLED,
    )


def distribution_from(
    distribution_id: str, config: Mapping[str, Any], invalidations: list[str]
) -> Distribution:
    """A distribution from its configuration (GetDistributionConfig's
    DistributionConfig) and its invalidations' ids."""
    origins = []
    for o in _items(config.get("Origins")):
        match = _S3_DOMAIN.match(o.get("DomainName", "")) if "S3OriginConfig" in o else None
        custom = o.get("CustomOriginConfig") or {}
        origins.append(
            Origin(
                id=o.get("Id", ""),
                domain=o.get("DomainName", "").lower().rstrip("."),
                path=(o.get("OriginPath") or "").rstrip("/"),
                headers=tuple(
                    (h["HeaderName"], h.get("HeaderValue", ""))
                    for h in _items(o.get("CustomHeaders"))
                ),
                bucket=match.group("bucket") if match else "",
                signed=bool(o.get("OriginAccessControlId")),
                read_timeout=int(custom.get("OriginReadTimeout", 30)),
                keepalive_timeout=int(custom.get("OriginKeepaliveTimeout", 5)),
            )
        )
    behaviours = [
        _behaviour(b, b.get("PathPattern", "")) for b in _items(config.get("CacheBehaviors"))
    ]
    behaviours.append(_behaviour(config.get("DefaultCacheBehavior") or {}, ""))
    viewer = config.get("ViewerCertificate") or {}
    return Distribution(
        id=distribution_id,
        enabled=bool(config.get("Enabled")),
        aliases=tuple(_items(config.get("Aliases"))),
        root_object=config.get("DefaultRootObject") or "",
        origins=tuple(origins),
        behaviours=tuple(behaviours),
        certificate_arn=viewer.get("ACMCertificateArn") or viewer.get("Certificate") or "",
        minimum_protocol=viewer.get("MinimumProtocolVersion", "TLSv1"),
        invalidations=tuple(sorted(invalidations)),
        web_acl_arn=config.get("WebACLId") or "",
    )


def alias_target(zones: Mapping[str, list[Mapping[str, Any]]], name: str) -> str:
    """The DNS name an A alias record of ``name`` points at, from the
    records of the hosted zones (zone name -> ResourceRecordSets), the
    longest zone that holds the name first ("" when there is none)."""
    name = name.lower().rstrip(".")
    for zone in sorted(zones, key=len, reverse=True):
        z = zone.lower().rstrip(".")
        if name != z and not name.endswith("." + z):
            continue
        for record in zones[zone]:
            if record.get("Type") == "A" and record.get("Name", "").lower().rstrip(".") == name:
                target = (record.get("AliasTarget") or {}).get("DNSName", "")
                return target.lower().rstrip(".").removeprefix("dualstack.")
        return ""
    return ""


def pattern_regex(pattern: str) -> str:
    """A cache behaviour's path pattern (* any characters, ? one; the
    leading slash optional) as an anchored regex."""
    return hap.wildcard_regex("/" + pattern.lstrip("/"))


def ssl_min_version(policy: str) -> str:
    """CloudFront's MinimumProtocolVersion -> the lowest TLS version HAProxy
    accepts (TLSv1.2_2021 and the like: 1.2; TLSv1.3_2025: 1.3)."""
    for version in ("1.3", "1.2", "1.1"):
        if policy.startswith(f"TLSv{version}"):
            return f"TLSv{version}"
    return "TLSv1.0"


def _q(text: str) -> str:
    """Single-quoted for HAProxy (taken as it is; no quote inside)."""
    if "'" in text or "\n" in text:
        raise ValueError("a value HAProxy cannot take quoted")
    return f"'{text}'"


def render_config(
    d: Distribution,
    certificate: str,
    tls_port: int,
    http_port: int,
    s3_endpoint: str,
    custom_origins: Mapping[str, str],
    web_acl: WebAcl | None = None,
) -> str:
    """The stand-in's haproxy.cfg. ``certificate``: the viewer certificate's
    file in CONFIG_DIR ("" while there is none: HTTPS then stays closed);
    ``s3_endpoint``: host:port of the emulator's S3; ``custom_origins``:
    origin id -> host:port where its domain name resolves (an origin that
    does not resolve answers 502, as CloudFront does); ``web_acl``: the
    distribution's web ACL as the emulator has it (None: none, or not
    readable)."""
    lines = _config_lines(d, certificate, tls_port, http_port, s3_endpoint, custom_origins, web_acl)
    body = "\n".join(lines) + "\n"
    return (
        "# threetier local controller: HAProxy standing in for CloudFront\n"
        f"# distribution {d.id}\n"
        f"# structure {hap.structure_digest(body)}\n\n" + body
    )


# the digest line is the ALBs' (the controller reloads when it differs)
structure_of = hap.structure_of


def _waf_lines(arn: str, acl: WebAcl | None) -> list[str]:
    """The web ACL's blocking rate-based rules, each a stick table of its
    own (the rule's window) tracking the viewer's address, checked before
    anything else of the request."""
    if not arn:
        return []
    if acl is None:
        return [f"    # web ACL {arn}: not readable yet, nothing enforced"]
    lines = [f"    # web ACL {acl.name}"]
    lines += [f"    # rule {name}: no local stand-in (AWS's alone)" for name in acl.others]
    for i, rule in enumerate(acl.rate_rules[:3]):  # HAProxy tracks 3 counters by default
        key = f"req.hdr_ip({rule.forwarded_header},1)" if rule.forwarded_header else "src"
        lines += [
            f"    # rule {rule.name}: at most {rule.limit} requests"
            f" per {rule.window} s per address",
            f"    http-request track-sc{i} {key} table waf-{i}",
            f"    http-request deny deny_status {rule.status}"
            f" if {{ sc_http_req_rate({i},waf-{i}) gt {rule.limit} }}",
        ]
    return lines


def _config_lines(
    d: Distribution,
    certificate: str,
    tls_port: int,
    http_port: int,
    s3_endpoint: str,
    custom_origins: Mapping[str, str],
    web_acl: WebAcl | None,
) -> list[str]:
    origins = {o.id: o for o in d.origins}
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {RUN_DIR}/{SOCKET} mode 600 level admin",
        "    maxconn 4096",
        "    user haproxy",
        "    group haproxy",
        "",
        # an invalidation empties the cache: its id is part of the structure
        "# invalidations: "
        + hashlib.sha256(" ".join(d.invalidations).encode()).hexdigest()[:16]
        + f" ({len(d.invalidations)})",
        "cache edge",
        "    total-max-size 64",
        "    max-object-size 4194304",
        f"    max-age {DEFAULT_TTL}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    timeout connect 10s",
        "    timeout client 60s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 5s",
        "    # CloudFront tries an origin's connection again before it answers 502",
        "    retries 2",
        "    retry-on conn-failure empty-response",
        "",
        "frontend viewer-http",
        f"    bind 127.0.0.1:{http_port}",
    ]
    # plain HTTP: what each behaviour's viewer protocol policy says
    for b in d.behaviours:
        cond = f" if {{ path -m reg {_q(pattern_regex(b.pattern))} }}" if b.pattern else ""
        if b.viewer_policy == "https-only":
            lines.append(f"    http-request return status 403{cond}")
        else:  # redirect-to-https, and allow-all (locally HTTPS too)
            lines.append(
                f"    http-request redirect location "
                f"https://%[req.hdr(host),field(1,:)]:{tls_port}%[capture.req.uri] code 301{cond}"
            )
    lines += ["", "frontend viewer"]
    if certificate:
        lines.append(
            f"    bind 127.0.0.1:{tls_port} ssl crt {CONFIG_DIR}/{certificate}"
            f" ssl-min-ver {ssl_min_version(d.minimum_protocol)} alpn h2,http/1.1"
        )
    else:
        lines.append("    # no viewer certificate yet: HTTPS stays closed")
    lines += _waf_lines(d.web_acl_arn, web_acl)
    lines += [
        "    option forwardfor",
        "    http-request set-header CloudFront-Forwarded-Proto https",
    ]
    # the first behaviour whose pattern matches (the default one last)
    for i, b in enumerate(d.behaviours):
        cond = f" {{ path -m reg {_q(pattern_regex(b.pattern))} }}" if b.pattern else ""
        lines.append(
            f"    http-request set-var(txn.behaviour) int({i})"
            f" if !{{ var(txn.behaviour) -m found }}{cond}"
        )
    backends = []
    for i, b in enumerate(d.behaviours):
        chosen = f"{{ var(txn.behaviour) -m int {i} }}"
        lines.append(
            f"    http-request return status 403 if {chosen} !{{ method {' '.join(b.methods)} }}"
        )
        if b.cached:
            lines.append(f"    http-request cache-use edge if {chosen}")
            lines.append(f"    http-response cache-store edge if {chosen}")
        origin = origins.get(b.origin_id)
        if origin is None:
            lines.append(f"    http-request return status 502 if {chosen}")
        else:
            backends.append(f"    use_backend origin-{origin.id} if {chosen}")
    lines += backends
    for origin in d.origins:
        lines += ["", f"backend origin-{origin.id}"]
        if origin.bucket:
            root = f"/{d.root_object}" if d.root_object else "/"
            lines += [
                f"    # S3: s3://{origin.bucket}{origin.path}/ (path-style, at the emulator)",
                f"    http-request set-path {root} if {{ path / }}",
                f"    http-request set-uri /{origin.bucket}{origin.path}%[path]",
                f"    http-request set-header Host {s3_endpoint}",
                "    http-request del-header Authorization",
                "    http-request del-header Cookie",
            ]
            if origin.signed:
                lines.append(f"    http-request set-header Authorization {_q(UNCHECKED_SIGNATURE)}")
            lines.append(f"    server s3 {s3_endpoint}")
            continue
        where = custom_origins.get(origin.id, "")
        lines += [
            f"    # {origin.domain}: HTTPS, the certificate verified for that name",
            f"    timeout server {origin.read_timeout}s",
            f"    http-request set-header Host {origin.domain}",
        ]
        # (set-header takes a log-format string: a % stays a %)
        lines += [
            f"    http-request set-header {name} {_q(value.replace('%', '%%'))}"
            for name, value in origin.headers
        ]
        if where:
            lines.append(
                f"    server origin {where} ssl verify required ca-file {CONFIG_DIR}/ca.crt"
                f" sni str({origin.domain}) verifyhost {origin.domain} alpn http/1.1"
                f" pool-purge-delay {origin.keepalive_timeout}s"
            )
        else:
            lines.append(f"    # {origin.domain} resolves nowhere: 502")
            lines.append("    http-request return status 502")
    for i, rule in enumerate((web_acl.rate_rules if web_acl and d.web_acl_arn else ())[:3]):
        lines += [
            "",
            f"backend waf-{i}",
            f"    stick-table type ipv6 size 100k expire {rule.window}s"
            f" store http_req_rate({rule.window}s)",
        ]
    return lines
