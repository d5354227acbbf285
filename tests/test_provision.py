"""The whole control plane against a real moto server: site.yml on the real
production inventory (inventories/production: its group_vars, production's
profile, one NAT gateway per AZ, the interface endpoints; only the emulator,
the buckets' names and the site's name and zone given as extra vars), every
resource checked through boto3 against the issue's numbers (the external
ALB's certificate, validated by DNS, and web ACL, and the site's alias,
health check and alarm included), a second run with
nothing to change, drift repaired, the production dynamic inventory, and
teardown (refused without confirmation, then complete)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import (
    PRODUCTION,
    PRODUCTION_ARTIFACTS,
    PRODUCTION_REGION,
    PRODUCTION_SITE,
    PRODUCTION_SSM_BUCKET,
    PRODUCTION_ZONE,
    assert_https_with_redirect,
    production_playbook,
)

ROOT = Path(__file__).resolve().parents[1]
REGION = PRODUCTION_REGION
ENV = "production"
P = PRODUCTION
# the target groups' checks and draining, and the Auto Scaling timings:
# the roles' defaults, which the production inventory keeps
LB = yaml.safe_load((ROOT / "roles/aws_load_balancers/defaults/main.yml").read_text())
ASG = yaml.safe_load((ROOT / "roles/aws_autoscaling/defaults/main.yml").read_text())
# the SSM connection's transfer bucket (the run names it)
SSM_BUCKET = PRODUCTION_SSM_BUCKET
# the external ALB's name for CloudFront (aws_cdn_origin_name's default)
ORIGIN = f"{ENV}-origin.{PRODUCTION_ZONE}"
RUNS = []  # every run's output, for the password check


@pytest.fixture(scope="module")
def first_run(production):
    # site.yml's first run, made once per session (conftest: test_diagram
    # draws the same environment)
    RUNS.append(production.run)
    return production.run


@pytest.fixture(scope="module")
def aws(moto):
    return lambda service: moto.client(service, REGION)


def by_name(items, key="Tags"):
    out = {}
    for i in items:
        tags = {t["Key"]: t["Value"] for t in i.get(key, [])}
        out[tags.get("Name")] = i
    return out


@pytest.fixture(scope="module")
def vpc(first_run, aws):
    vpcs = aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{P}-vpc"]}])["Vpcs"]
    assert len(vpcs) == 1
    return vpcs[0]


def test_network(aws, vpc):
    ec2 = aws("ec2")
    vid = vpc["VpcId"]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"
    ]["Value"]
    subnets = by_name(
        ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    )
    want = {
        "public-a": ("10.0.1.0/24", "a"),
        "public-b": ("10.0.2.0/24", "b"),
        "app-a": ("10.0.3.0/24", "a"),
        "app-b": ("10.0.4.0/24", "b"),
        "db-a": ("10.0.5.0/24", "a"),
        "db-b": ("10.0.6.0/24", "b"),
    }
    assert {
        k.removeprefix(P + "-"): (s["CidrBlock"], s["AvailabilityZone"][-1])
        for k, s in subnets.items()
    } == want
    assert all(s["AvailabilityZone"].startswith(REGION) for s in subnets.values())
    sid = {k.removeprefix(P + "-"): s["SubnetId"] for k, s in subnets.items()}

    igws = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])[
        "InternetGateways"
    ]
    assert len(igws) == 1
    nats = [
        n
        for n in ec2.describe_nat_gateways()["NatGateways"]
        if n["VpcId"] == vid and n["State"] == "available"
    ]
    # production's inventory: one NAT gateway per AZ (an AZ's outage leaves
    # the other AZ its egress)
    nat_in = {n["SubnetId"]: n for n in nats}
    assert sorted(nat_in) == sorted([sid["public-a"], sid["public-b"]]), "a NAT gateway per AZ"
    assert len(nats) == 2
    for side in "ab":
        allocation = nat_in[sid[f"public-{side}"]]["NatGatewayAddresses"][0].get("AllocationId")
        assert allocation
        # tagged, so a teardown stopped after the NAT gateway went still finds it
        (address,) = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"]
        tags = {t["Key"]: t["Value"] for t in address.get("Tags", [])}
        assert tags["Name"] == f"{P}-nat-public-{side}"

    tables = by_name(
        ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
    )

    def default_route(t):
        routes = [r for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        assert len(routes) == 1
        return routes[0].get("GatewayId") or routes[0].get("NatGatewayId")

    def subnets_of(t):
        return sorted(a["SubnetId"] for a in t["Associations"] if a.get("SubnetId"))

    pub, pa, pb = tables[f"{P}-public"], tables[f"{P}-private-a"], tables[f"{P}-private-b"]
    assert default_route(pub) == igws[0]["InternetGatewayId"]
    assert subnets_of(pub) == sorted([sid["public-a"], sid["public-b"]])
    assert default_route(pa) == nat_in[sid["public-a"]]["NatGatewayId"]
    assert default_route(pb) == nat_in[sid["public-b"]]["NatGatewayId"]
    assert subnets_of(pa) == sorted([sid["app-a"], sid["db-a"]])
    assert subnets_of(pb) == sorted([sid["app-b"], sid["db-b"]])
    eps = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vid]}])["VpcEndpoints"]
    s3 = [e for e in eps if e["ServiceName"] == f"com.amazonaws.{REGION}.s3"]
    assert len(s3) == 1
    assert sorted(s3[0]["RouteTableIds"]) == sorted([pa["RouteTableId"], pb["RouteTableId"]])
    # production's inventory: the instances reach SSM and Secrets Manager
    # through interface endpoints in the app subnets, HTTPS from the VPC only
    interface = {
        e["ServiceName"].removeprefix(f"com.amazonaws.{REGION}."): e
        for e in eps
        if e["VpcEndpointType"] == "Interface" and e["State"] != "deleted"
    }
    assert sorted(interface) == sorted(["ssm", "ssmmessages", "ec2messages", "secretsmanager"])
    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{P}-endpoints"]}]
    )["SecurityGroups"]
    assert [
        (r["IpProtocol"], r["FromPort"], r["ToPort"], r["IpRanges"][0]["CidrIp"])
        for r in group["IpPermissions"]
    ] == [("tcp", 443, 443, "10.0.0.0/16")]
    for e in interface.values():
        assert sorted(e["SubnetIds"]) == sorted([sid["app-a"], sid["app-b"]])
        assert [g["GroupId"] for g in e["Groups"]] == [group["GroupId"]]


def test_security_groups_chain_exactly(aws, vpc):
    groups = {
        g["GroupName"]: g
        for g in aws("ec2").describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
        )["SecurityGroups"]
    }
    gid = {k.removeprefix(P + "-"): g["GroupId"] for k, g in groups.items()}

    def rules(name):
        out = set()
        for p in groups[f"{P}-{name}"]["IpPermissions"]:
            src = [("cidr", r["CidrIp"]) for r in p.get("IpRanges", [])]
            src += [("cidr6", r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])]
            src += [("sg", r["GroupId"]) for r in p.get("UserIdGroupPairs", [])]
            for s in src:
                out.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), *s))
        return out

    assert rules("alb-ext") == {
        ("tcp", 80, 80, "cidr", "0.0.0.0/0"),
        ("tcp", 443, 443, "cidr", "0.0.0.0/0"),
    }
    assert rules("web") == {("tcp", 80, 80, "sg", gid["alb-ext"])}
    assert rules("alb-int") == {("tcp", 5000, 5000, "sg", gid["web"])}
    # the app tier's metrics port (9100) only from the app tier itself
    assert rules("app") == {
        ("tcp", 5000, 5000, "sg", gid["alb-int"]),
        ("tcp", 9100, 9100, "sg", gid["app"]),
    }
    assert rules("db") == {("tcp", 5432, 5432, "sg", gid["app"])}
    # no SSH, from anywhere, into anything of the kit
    for g in groups.values():
        for p in g["IpPermissions"]:
            assert not (p.get("FromPort") is not None and p["FromPort"] <= 22 <= p["ToPort"]), g[
                "GroupName"
            ]
            assert p["IpProtocol"] != "-1", g["GroupName"]


@pytest.fixture(scope="module")
def albs(first_run, aws):
    elb = aws("elbv2")
    lbs = {
        x["LoadBalancerName"]: x
        for x in elb.describe_load_balancers(Names=[f"{P}-ext", f"{P}-int"])["LoadBalancers"]
    }
    return lbs


def test_load_balancers_and_target_groups(aws, albs, vpc):
    elb, ec2 = aws("elbv2"), aws("ec2")
    sub = {
        s["SubnetId"]: {t["Key"]: t["Value"] for t in s["Tags"]}["Name"].removeprefix(P + "-")
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "Subnets"
        ]
    }
    ext, int_ = albs[f"{P}-ext"], albs[f"{P}-int"]
    assert ext["Scheme"] == "internet-facing"
    assert int_["Scheme"] == "internal"
    assert sorted(sub[z["SubnetId"]] for z in ext["AvailabilityZones"]) == ["public-a", "public-b"]
    assert sorted(sub[z["SubnetId"]] for z in int_["AvailabilityZones"]) == ["app-a", "app-b"]
    tgs = {
        t["TargetGroupName"]: t
        for t in elb.describe_target_groups(Names=[f"{P}-web", f"{P}-app"])["TargetGroups"]
    }
    for name, port in ((f"{P}-web", 80), (f"{P}-app", 5000)):
        tg = tgs[name]
        assert (tg["Protocol"], tg["Port"], tg["VpcId"]) == ("HTTP", port, vpc["VpcId"])
        assert tg["HealthCheckPath"] == "/healthz"
        assert tg["HealthCheckIntervalSeconds"] == LB["aws_load_balancers_health_check_interval"]
        assert tg["HealthCheckTimeoutSeconds"] == LB["aws_load_balancers_health_check_timeout"]
        assert tg["HealthyThresholdCount"] == LB["aws_load_balancers_healthy_threshold"]
        assert tg["UnhealthyThresholdCount"] == LB["aws_load_balancers_unhealthy_threshold"]
        assert tg["Matcher"]["HttpCode"] == "200"
        attrs = {
            a["Key"]: a["Value"]
            for a in elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])[
                "Attributes"
            ]
        }
        assert attrs["deregistration_delay.timeout_seconds"] == str(
            LB["aws_load_balancers_deregistration_delay"]
        )
        assert attrs["slow_start.duration_seconds"] == "30"
    # production serves HTTPS: 443 with the certificate and a TLS 1.3/1.2
    # policy forwarding to web what carries CloudFront's origin header, 80 a
    # permanent redirect to it; internal 5000 to app
    origin = json.loads(
        aws("secretsmanager").get_secret_value(SecretId=f"threetier/{ENV}/cdn-origin")[
            "SecretString"
        ]
    )
    assert_https_with_redirect(
        elb, ext["LoadBalancerArn"], site_certificate(aws)["CertificateArn"],
        tgs[f"{P}-web"]["TargetGroupArn"], origin,
    )  # fmt: skip
    (l_int,) = elb.describe_listeners(LoadBalancerArn=int_["LoadBalancerArn"])["Listeners"]
    assert (l_int["Protocol"], l_int["Port"]) == ("HTTP", 5000)
    assert l_int["DefaultActions"][0]["TargetGroupArn"] == tgs[f"{P}-app"]["TargetGroupArn"]
    for lb in (ext, int_):
        attrs = {
            a["Key"]: a["Value"]
            for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])[
                "Attributes"
            ]
        }
        assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
        assert attrs["idle_timeout.timeout_seconds"] == "60"
        # the production profile protects both balancers
        assert attrs["deletion_protection.enabled"] == "true"


def site_certificates(aws) -> list[dict]:
    """The ACM certificates tagged as the kit's for this environment, described."""
    acm = aws("acm")
    found = []
    for summary in acm.list_certificates()["CertificateSummaryList"]:
        arn = summary["CertificateArn"]
        tags = acm.list_tags_for_certificate(CertificateArn=arn)["Tags"]
        if {"Key": "Name", "Value": f"{P}-site"} in tags:
            found.append(acm.describe_certificate(CertificateArn=arn)["Certificate"])
    return found


def site_certificate(aws) -> dict:
    (cert,) = site_certificates(aws)
    return cert


def zone_records(aws) -> list[dict]:
    r53 = aws("route53")
    (zone,) = [
        z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == PRODUCTION_ZONE + "."
    ]
    return r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]


def test_certificate_requested_and_validated_by_dns(aws, moto, first_run):
    """The production profile asks ACM for the site's certificate with DNS
    validation (the site's name, and the ALB's origin name that CloudFront
    reaches it by), writes the CNAME records ACM names into the site's zone,
    and waits until it is issued (the emulator issues it only once the
    records are there); the external balancer's HTTPS listener serves it.
    CloudFront's copy, the same names, is requested in us-east-1 (CloudFront
    takes no other region) and validated by the same records."""
    cert = site_certificate(aws)
    east = site_certificates(lambda service: moto.client(service, "us-east-1"))
    assert len(east) == 1
    cnames = {r["Name"]: r for r in zone_records(aws) if r["Type"] == "CNAME"}
    for c in (cert, east[0]):
        assert c["DomainName"] == PRODUCTION_SITE
        assert sorted(c["SubjectAlternativeNames"]) == sorted([PRODUCTION_SITE, ORIGIN])
        assert c["Status"] == "ISSUED"
        assert c["Type"] == "AMAZON_ISSUED"
        assert sorted(o["DomainName"] for o in c["DomainValidationOptions"]) == sorted(
            [PRODUCTION_SITE, ORIGIN]
        )
        for option in c["DomainValidationOptions"]:
            assert option["ValidationMethod"] == "DNS"
            wanted = option["ResourceRecord"]
            values = [v["Value"] for v in cnames[wanted["Name"]]["ResourceRecords"]]
            assert values == [wanted["Value"]]
    assert east[0]["CertificateArn"].split(":")[3] == "us-east-1"
    tags = {t["Key"]: t["Value"] for t in aws("acm").list_tags_for_certificate(
        CertificateArn=cert["CertificateArn"])["Tags"]}  # fmt: skip
    assert (tags["Project"], tags["Environment"]) == ("threetier", ENV)
    ext = aws("elbv2").describe_load_balancers(Names=[f"{P}-ext"])["LoadBalancers"][0]
    assert cert["InUseBy"] == [ext["LoadBalancerArn"]]


def site_health_checks(moto) -> list[dict]:
    """The Route 53 health checks tagged as the kit's site check, with their tags."""
    r53 = moto.client("route53", REGION)
    found = []
    for check in r53.list_health_checks()["HealthChecks"]:
        tags = r53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=check["Id"])
        tags = {t["Key"]: t["Value"] for t in tags["ResourceTagSet"]["Tags"]}
        if tags.get("Name") == f"{P}-site":
            found.append({**check, "Tags": tags})
    return found


def test_site_name_points_at_cloudfront_and_is_checked(aws, moto, first_run):
    """The site's name is an alias (A and AAAA) of the CloudFront
    distribution in its zone; the ALB's origin name an alias of the external
    ALB; a Route 53 health check requests https://<name>/healthz; an alarm
    on it in us-east-1 (where Route 53's metrics are) notifies its own topic
    there."""
    ext = aws("elbv2").describe_load_balancers(Names=[f"{P}-ext"])["LoadBalancers"][0]
    dist = distribution(moto)
    records = {(r["Name"], r["Type"]): r for r in zone_records(aws) if r["Type"] in ("A", "AAAA")}
    assert set(records) == {
        (PRODUCTION_SITE + ".", "A"), (PRODUCTION_SITE + ".", "AAAA"), (ORIGIN + ".", "A"),
    }  # fmt: skip
    for kind in ("A", "AAAA"):
        alias = records[(PRODUCTION_SITE + ".", kind)]["AliasTarget"]
        assert alias["DNSName"].rstrip(".") == dist["DomainName"]
        assert alias["HostedZoneId"] == "Z2FDTNDATAQYW2"
    alias = records[(ORIGIN + ".", "A")]["AliasTarget"]
    assert alias["DNSName"].rstrip(".") == ext["DNSName"]
    assert alias["HostedZoneId"] == ext["CanonicalHostedZoneId"]
    assert alias["EvaluateTargetHealth"] is True
    (check,) = site_health_checks(moto)
    config = check["HealthCheckConfig"]
    assert (config["Type"], config["FullyQualifiedDomainName"], config["Port"]) == (
        "HTTPS", PRODUCTION_SITE, 443,
    )  # fmt: skip
    assert config["ResourcePath"] == "/healthz"
    assert (config["RequestInterval"], config["FailureThreshold"]) == (30, 3)
    assert (check["Tags"]["Project"], check["Tags"]["Environment"]) == ("threetier", ENV)
    east = "us-east-1"
    (alarm,) = moto.client("cloudwatch", east).describe_alarms(AlarmNames=[f"{P}-site-health"])[
        "MetricAlarms"
    ]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert alarm["Dimensions"] == [{"Name": "HealthCheckId", "Value": check["Id"]}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Minimum", "LessThanThreshold", 1.0,
    )  # fmt: skip
    topics = [t["TopicArn"] for t in moto.client("sns", east).list_topics()["Topics"]]
    (topic,) = [t for t in topics if t.endswith(f":{P}-site-health")]
    assert topic.split(":")[3] == east
    assert alarm["AlarmActions"] == [topic]
    assert alarm["OKActions"] == [topic]
    # nothing of it in the environment's own region
    assert not aws("cloudwatch").describe_alarms(AlarmNames=[f"{P}-site-health"])["MetricAlarms"]


CDN = yaml.safe_load((ROOT / "roles/aws_cdn/defaults/main.yml").read_text())
# AWS's managed cache and origin request policies
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
PAGE = ROOT / "app/src/taskboard/static"


def distribution(moto, comment: str = f"{P}-site") -> dict:
    """The kit's distribution (found by its comment), described."""
    cf = moto.client("cloudfront", "us-east-1")
    items = cf.list_distributions()["DistributionList"].get("Items") or []
    (summary,) = [d for d in items if d["Comment"] == comment]
    return cf.get_distribution(Id=summary["Id"])["Distribution"]


def test_cloudfront_in_front_of_the_site(aws, moto, first_run):
    """A CloudFront distribution for the site's name with CloudFront's
    certificate: the page from the artifact bucket through an origin access
    control (the bucket's policy lets only this distribution read it), the
    API and health paths from the external ALB by its origin name, HTTPS
    only, uncached, with the viewer's headers and the secret origin header
    kept in Secrets Manager. The release's page is published."""
    cf = moto.client("cloudfront", "us-east-1")
    dist = distribution(moto)
    assert dist["Status"] == "Deployed"
    config = dist["DistributionConfig"]
    assert config["Enabled"] is True
    assert config["Aliases"]["Items"] == [PRODUCTION_SITE]
    assert (config["DefaultRootObject"], config["PriceClass"]) == (
        "index.html",
        CDN["aws_cdn_price_class"],
    )
    viewer = config["ViewerCertificate"]
    east_cert = moto.client("acm", "us-east-1").describe_certificate(
        CertificateArn=viewer["ACMCertificateArn"])["Certificate"]  # fmt: skip
    assert (east_cert["DomainName"], east_cert["Status"]) == (PRODUCTION_SITE, "ISSUED")
    assert (viewer["SSLSupportMethod"], viewer["MinimumProtocolVersion"]) == (
        "sni-only",
        "TLSv1.2_2021",
    )
    assert viewer["CloudFrontDefaultCertificate"] is False
    origins = {o["Id"]: o for o in config["Origins"]["Items"]}
    page, alb = origins["page"], origins["alb"]
    assert page["DomainName"] == f"{PRODUCTION_ARTIFACTS}.s3.{REGION}.amazonaws.com"
    assert page["OriginPath"] == "/site"
    assert page["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    oac = cf.get_origin_access_control(Id=page["OriginAccessControlId"])["OriginAccessControl"]
    assert oac["OriginAccessControlConfig"] == {
        "Name": f"{P}-page",
        "Description": f"{P}: CloudFront reads the page from {PRODUCTION_ARTIFACTS}",
        "SigningProtocol": "sigv4", "SigningBehavior": "always",
        "OriginAccessControlOriginType": "s3",
    }  # fmt: skip
    assert alb["DomainName"] == ORIGIN
    custom = alb["CustomOriginConfig"]
    assert (custom["OriginProtocolPolicy"], custom["HTTPSPort"]) == ("https-only", 443)
    assert custom["OriginSslProtocols"]["Items"] == ["TLSv1.2"]
    secret = json.loads(
        aws("secretsmanager").get_secret_value(SecretId=f"threetier/{ENV}/cdn-origin")[
            "SecretString"
        ]
    )
    assert secret["header"] == LB["aws_load_balancers_origin_header_name"]
    assert len(secret["value"]) >= 32
    assert alb["CustomHeaders"]["Items"] == [
        {"HeaderName": secret["header"], "HeaderValue": secret["value"]}
    ]
    default = config["DefaultCacheBehavior"]
    assert (default["TargetOriginId"], default["ViewerProtocolPolicy"]) == (
        "page",
        "redirect-to-https",
    )
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    assert sorted(default["AllowedMethods"]["Items"]) == ["GET", "HEAD"]
    behaviours = config["CacheBehaviors"]["Items"]
    assert [b["PathPattern"] for b in behaviours] == CDN["aws_cdn_origin_paths"]
    for b in behaviours:
        assert (b["TargetOriginId"], b["ViewerProtocolPolicy"]) == ("alb", "https-only")
        assert (b["CachePolicyId"], b["OriginRequestPolicyId"]) == (
            CACHING_DISABLED,
            ALL_VIEWER_EXCEPT_HOST,
        )
        assert sorted(b["AllowedMethods"]["Items"]) == sorted(
            ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
        )
    tags = {
        t["Key"]: t["Value"]
        for t in cf.list_tags_for_resource(Resource=dist["ARN"])["Tags"]["Items"]
    }
    assert (tags["Project"], tags["Environment"], tags["Name"]) == ("threetier", ENV, f"{P}-site")
    # only this distribution reads the page
    policy = json.loads(aws("s3").get_bucket_policy(Bucket=PRODUCTION_ARTIFACTS)["Policy"])
    assert policy["Statement"] == [{
        "Sid": "CloudFrontReadsThePage", "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{PRODUCTION_ARTIFACTS}/site/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": dist["ARN"]}},
    }]  # fmt: skip
    # the checkout's page, published with its content types
    s3 = aws("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket=PRODUCTION_ARTIFACTS, Prefix="site/")["Contents"])  # fmt: skip
    assert keys == sorted(f"site/{f.name}" for f in PAGE.iterdir())
    index = s3.get_object(Bucket=PRODUCTION_ARTIFACTS, Key="site/index.html")
    assert index["Body"].read() == (PAGE / "index.html").read_bytes()
    assert index["ContentType"] == "text/html; charset=utf-8"
    assert index["ServerSideEncryption"] == "AES256"


def invalidations(moto) -> list[dict]:
    cf = moto.client("cloudfront", "us-east-1")
    dist = distribution(moto)
    listed = cf.list_invalidations(DistributionId=dist["Id"])["InvalidationList"].get("Items") or []
    return [
        cf.get_invalidation(DistributionId=dist["Id"], Id=i["Id"])["Invalidation"] for i in listed
    ]


def test_a_release_serves_its_page_and_a_rollback_the_kept_one(kit, aws, moto, first_run, tmp_path):
    """aws_cdn_page (the releases' last step with CloudFront): a release's
    page is kept under pages/<version>/ and copied where the distribution
    reads, and what changed is invalidated at the edge (the root too, with
    index.html); the same again changes nothing; a rollback serves the page
    kept for its release; a source without a page, or a rollback to a
    release with no kept page, is refused before anything changes."""
    s3 = aws("s3")

    def served(name: str) -> bytes:
        return s3.get_object(Bucket=PRODUCTION_ARTIFACTS, Key=f"site/{name}")["Body"].read()

    def page(version: str, *source: str):
        return production_playbook(
            kit, "../tests/playbooks/cdn_page.yml", "-e", f"tt_version={version}", *source
        )

    before = {i["Id"] for i in invalidations(moto)}
    new = tmp_path / "page"
    new.mkdir()
    for f in PAGE.iterdir():
        (new / f.name).write_bytes(f.read_bytes())
    (new / "index.html").write_text("<!doctype html><title>taskboard 9.9.1</title>\n")
    run = page("9.9.1", "-e", f"tt_source={new}")
    assert run.rc == 0, run.output[-4000:]
    assert served("index.html") == (new / "index.html").read_bytes()
    kept = s3.get_object(Bucket=PRODUCTION_ARTIFACTS, Key="pages/9.9.1/index.html")
    assert kept["Body"].read() == (new / "index.html").read_bytes()
    index = s3.head_object(Bucket=PRODUCTION_ARTIFACTS, Key="site/index.html")
    assert index["ContentType"] == "text/html; charset=utf-8"
    (made,) = [i for i in invalidations(moto) if i["Id"] not in before]
    assert sorted(made["InvalidationBatch"]["Paths"]["Items"]) == ["/", "/index.html"]
    again = page("9.9.1", "-e", f"tt_source={new}")
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]
    assert len(invalidations(moto)) == len(before) + 1
    # the rollback to the release site.yml kept (threetier_release)
    back = page("0.1.0")
    assert back.rc == 0, back.output[-4000:]
    assert served("index.html") == (PAGE / "index.html").read_bytes()
    assert len(invalidations(moto)) == len(before) + 2
    refused = page("7.7.7")
    assert refused.rc != 0
    assert "aws_cdn_page: no page of release 7.7.7" in refused.output, refused.output[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = page("7.7.8", "-e", f"tt_source={empty}")
    assert bad.rc != 0
    assert "aws_cdn_page: bad input: aws_cdn_page_source" in bad.output, bad.output[-3000:]
    assert bad.recap()["changed"] == 0
    assert served("index.html") == (PAGE / "index.html").read_bytes()
    assert len(invalidations(moto)) == len(before) + 2


WAF = yaml.safe_load((ROOT / "roles/aws_waf/defaults/main.yml").read_text())


def assert_web_acl(waf, logs, name: str, scope: str, rate: dict) -> dict:
    """A web ACL of the kit's: the rate limit per address first (``rate``:
    its statement), then AWS's managed rule groups (no override), allowing
    the rest; logged to its own aws-waf-logs- group with credentials
    redacted. Returns it."""
    (summary,) = [a for a in waf.list_web_acls(Scope=scope)["WebACLs"] if a["Name"] == name]
    acl = waf.get_web_acl(Name=name, Scope=scope, Id=summary["Id"])["WebACL"]
    assert acl["DefaultAction"] == {"Allow": {}}
    rules = sorted(acl["Rules"], key=lambda r: r["Priority"])
    first, *managed = rules
    assert first["Action"] == {"Block": {}}
    assert first["Statement"]["RateBasedStatement"] == rate
    assert [r["Statement"]["ManagedRuleGroupStatement"] for r in managed] == [
        {"VendorName": "AWS", "Name": name} for name in WAF["aws_waf_managed_rule_groups"]
    ]
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
            "AWSManagedRulesSQLiRuleSet", "AWSManagedRulesAmazonIpReputationList"} <= {
        r["Name"] for r in managed
    }  # fmt: skip
    assert all(r["OverrideAction"] == {"None": {}} for r in managed)
    assert all(r["VisibilityConfig"]["CloudWatchMetricsEnabled"] for r in rules)
    tags = {t["Key"]: t["Value"] for t in waf.list_tags_for_resource(ResourceARN=acl["ARN"])[
        "TagInfoForResource"]["TagList"]}  # fmt: skip
    assert (tags["Project"], tags["Environment"], tags["Name"]) == ("threetier", ENV, name)
    logging = waf.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]
    (group,) = [
        g for g in logs.describe_log_groups(logGroupNamePrefix="aws-waf-logs-")["logGroups"]
        if g["logGroupName"] == "aws-waf-logs-" + name.removesuffix("-web")
    ]  # fmt: skip
    assert logging["LogDestinationConfigs"] == [group["arn"].removesuffix(":*")]
    assert logging["RedactedFields"] == [
        {"SingleHeader": {"Name": "authorization"}},
        {"SingleHeader": {"Name": "cookie"}},
    ]
    assert group["retentionInDays"] == WAF["aws_waf_log_retention_days"]
    return acl


def test_web_acls_in_front_of_the_external_balancer_and_cloudfront(aws, moto, albs):
    """The production profile puts a regional web ACL on the external ALB and
    one of scope CLOUDFRONT (in us-east-1) on the distribution, with the same
    rules. CloudFront's counts each viewer's address; behind CloudFront the
    ALB's clients are CloudFront's edges, so its rule counts the viewer's
    address from X-Forwarded-For. The internal ALB has none."""
    limit = WAF["aws_waf_rate_limit"]
    waf = aws("wafv2")
    acl = assert_web_acl(waf, aws("logs"), f"{P}-web", "REGIONAL", {
        "Limit": limit, "AggregateKeyType": "FORWARDED_IP", "EvaluationWindowSec": 300,
        "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH"},
    })  # fmt: skip
    ext, int_ = albs[f"{P}-ext"], albs[f"{P}-int"]
    assert (
        waf.get_web_acl_for_resource(ResourceArn=ext["LoadBalancerArn"])["WebACL"]["ARN"]
        == (acl["ARN"])
    )
    assert not waf.get_web_acl_for_resource(ResourceArn=int_["LoadBalancerArn"]).get("WebACL")
    east = ("wafv2", "logs")
    cdn = assert_web_acl(
        *(moto.client(s, "us-east-1") for s in east), f"{P}-cdn", "CLOUDFRONT",
        {"Limit": limit, "AggregateKeyType": "IP", "EvaluationWindowSec": 300},
    )  # fmt: skip
    assert cdn["ARN"].startswith("arn:aws:wafv2:us-east-1:")
    assert distribution(moto)["DistributionConfig"]["WebACLId"] == cdn["ARN"]


def _secret(aws):
    return aws("secretsmanager").get_secret_value(SecretId=f"threetier/{ENV}/db-master")


def test_launch_templates_and_instance_profiles(aws, albs):
    ec2, iam = aws("ec2"), aws("iam")
    secret = _secret(aws)
    password = json.loads(secret["SecretString"])["password"]
    for tier, itype in (("web", "t3.small"), ("app", "t3.medium")):
        lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"{P}-{tier}"])["LaunchTemplates"][
            0
        ]
        data = ec2.describe_launch_template_versions(
            LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["InstanceType"] == itype
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
        (bdm,) = data["BlockDeviceMappings"]
        assert bdm["Ebs"]["Encrypted"] is True
        assert bdm["Ebs"]["VolumeType"] == "gp3"
        assert data["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{P}-{tier}")
        assert data["ImageId"].startswith("ami-")
        sg = ec2.describe_security_groups(GroupIds=data["SecurityGroupIds"])["SecurityGroups"]
        assert [g["GroupName"] for g in sg] == [f"{P}-{tier}"]
        user_data = base64.b64decode(data["UserData"]).decode()
        assert user_data.startswith("#!/bin/bash")
        assert password not in user_data
        assert "PASSWORD" not in user_data.upper().replace("DATABASE PASSWORD IS", "")
        if tier == "web":
            assert f"THREETIER_APP_UPSTREAM={albs[f'{P}-int']['DNSName']}:5000" in user_data
            # the upstream is set once the internal ALB's name resolves, a
            # bounded wait (aws_launch_templates_web_upstream_wait's default)
            assert (
                "nginx-web-upstream set --wait 300 \\\n"
                f"        {albs[f'{P}-int']['DNSName']}:5000\n"
            ) in user_data
        else:
            assert f"TASKBOARD_DB_SECRET_ID={secret['ARN']}" in user_data
            assert f"AWS_REGION={REGION}" in user_data
        # the release is the image's (or what release.yml installed): an
        # immutable release copies this user data with another AMI
        assert "RELEASE=" not in user_data
        # least privilege: the app role reads the one secret, both read the bucket
        policies = {
            n: iam.get_role_policy(RoleName=f"{P}-{tier}", PolicyName=n)["PolicyDocument"]
            for n in iam.list_role_policies(RoleName=f"{P}-{tier}")["PolicyNames"]
        }
        want = {"read-artifacts", "cloudwatch-agent"} | (
            {"read-db-secret"} if tier == "app" else set()
        )
        assert set(policies) == want
        # no AWS-managed policy under the emulator (it has none); on AWS only SSM core
        assert iam.list_attached_role_policies(RoleName=f"{P}-{tier}")["AttachedPolicies"] == []
        check_agent_policy(policies["cloudwatch-agent"], tier, secret["ARN"].split(":")[4])
        reads = policies["read-artifacts"]["Statement"]
        assert {r for s in reads for r in s["Resource"]} == {
            f"arn:aws:s3:::{PRODUCTION_ARTIFACTS}",
            f"arn:aws:s3:::{PRODUCTION_ARTIFACTS}/*",
        }
        if tier == "app":
            (stmt,) = policies["read-db-secret"]["Statement"]
            assert stmt["Resource"] == [secret["ARN"]]
            assert set(stmt["Action"]) == {
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
            }


def agent_log_groups(tier: str) -> list[str]:
    """The log groups roles/cloudwatch_agent's configuration names for a tier
    (its defaults: what the images bake)."""
    d = yaml.safe_load((ROOT / "roles/cloudwatch_agent/defaults/main.yml").read_text())
    if tier == "web":
        names = [f["name"] for f in d["cloudwatch_agent_web_log_files"]]
    else:
        names = [u.removesuffix(".service") for u in d["cloudwatch_agent_app_journal_units"]]
    names += [f["name"] for f in d["cloudwatch_agent_extra_log_files"]]
    return [f"{d['cloudwatch_agent_log_group_prefix']}/{tier}/{n}" for n in names]


def check_agent_policy(doc: dict, tier: str, account: str) -> None:
    """The CloudWatch agent's inline policy: what CloudWatchAgentServerPolicy
    grants, cut to what the agent's configuration uses and scoped: metrics in
    the agent's namespace only, its own tier's log groups only."""
    agent = yaml.safe_load((ROOT / "roles/cloudwatch_agent/defaults/main.yml").read_text())
    st = {s["Sid"]: s for s in doc["Statement"]}
    assert set(st) == {
        "AgentMetrics",
        "AgentInstanceTags",
        "AgentFindLogGroups",
        "AgentOwnLogGroups",
    }
    assert all(s["Effect"] == "Allow" for s in st.values())
    assert st["AgentMetrics"]["Action"] == ["cloudwatch:PutMetricData"]
    assert st["AgentMetrics"]["Resource"] == ["*"]  # PutMetricData takes no resource ARN
    assert st["AgentMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": agent["cloudwatch_agent_namespace"]}
    }
    # ${aws:AutoScalingGroupName} in the metrics' dimensions comes from the instance's tags
    assert st["AgentInstanceTags"]["Action"] == ["ec2:DescribeTags"]
    logs = f"arn:aws:logs:{REGION}:{account}:log-group:"
    assert st["AgentFindLogGroups"] == {
        "Sid": "AgentFindLogGroups",
        "Effect": "Allow",
        "Action": ["logs:DescribeLogGroups"],
        "Resource": [f"{logs}*"],
    }
    own = st["AgentOwnLogGroups"]
    assert sorted(own["Action"]) == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "logs:PutRetentionPolicy",  # the configuration sets retention_in_days
    ]
    groups = agent_log_groups(tier)
    assert groups, tier
    assert sorted(own["Resource"]) == sorted(
        [f"{logs}{g}" for g in groups] + [f"{logs}{g}:*" for g in groups]
    )
    other = "app" if tier == "web" else "web"
    assert not [r for r in own["Resource"] if f"/{other}/" in r], "another tier's log groups"
    # nothing beyond these statements: no wildcard action, no X-Ray, no SSM parameters
    actions = [a for s in doc["Statement"] for a in s["Action"]]
    assert not [a for a in actions if "*" in a]
    assert len(actions) == 8


def test_autoscaling_groups(aws, first_run, vpc):
    asg, elb, ec2 = aws("autoscaling"), aws("elbv2"), aws("ec2")
    app_subnets = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(
            Filters=[{"Name": "tag:Name", "Values": [f"{P}-app-a", f"{P}-app-b"]}]
        )["Subnets"]
    )
    groups = {
        g["AutoScalingGroupName"]: g
        for g in asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-web", f"{P}-app"])[
            "AutoScalingGroups"
        ]
    }
    for tier in ("web", "app"):
        g = groups[f"{P}-{tier}"]
        assert (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (2, 2, 4)
        assert sorted(g["VPCZoneIdentifier"].split(",")) == app_subnets
        assert g["HealthCheckType"] == "ELB"
        assert g["HealthCheckGracePeriod"] == ASG["aws_autoscaling_health_check_grace_period"]
        tg = elb.describe_target_groups(Names=[f"{P}-{tier}"])["TargetGroups"][0]
        assert g["TargetGroupARNs"] == [tg["TargetGroupArn"]]
        assert g["LaunchTemplate"]["LaunchTemplateName"] == f"{P}-{tier}"
        tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in g["Tags"]}
        assert tags["Tier"] == (tier, True)
        assert tags["Environment"] == (ENV, True)
        assert tags["Release"] == ("0.1.0", True)
        assert len(g["Instances"]) == 2
        (policy,) = asg.describe_policies(AutoScalingGroupName=g["AutoScalingGroupName"])[
            "ScalingPolicies"
        ]
        assert policy["PolicyType"] == "TargetTrackingScaling"
        cfg = policy["TargetTrackingConfiguration"]
        assert cfg["TargetValue"] == 60.0
        assert (
            cfg["PredefinedMetricSpecification"]["PredefinedMetricType"]
            == "ASGAverageCPUUtilization"
        )


def test_database_and_secret(aws, first_run):
    rds = aws("rds")
    db = rds.describe_db_instances(DBInstanceIdentifier=f"{P}-db")["DBInstances"][0]
    assert db["Engine"] == "postgres"
    assert db["EngineVersion"].split(".")[0] == "15"
    assert db["DBInstanceClass"] == "db.t3.medium"
    assert db["AllocatedStorage"] == 100
    assert db["MaxAllocatedStorage"] > 100  # storage autoscaling
    assert db["StorageType"] == "gp3"
    assert db["MultiAZ"] is True
    assert db["BackupRetentionPeriod"] == 7
    assert db["StorageEncrypted"] is True
    assert db["DeletionProtection"] is True
    assert db["PubliclyAccessible"] is False
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == f"{P}-db"
    assert len(db["DBSubnetGroup"]["Subnets"]) == 2
    (pg,) = db["DBParameterGroups"]
    params = {
        p["ParameterName"]: p.get("ParameterValue")
        for p in rds.describe_db_parameters(DBParameterGroupName=pg["DBParameterGroupName"])[
            "Parameters"
        ]
    }
    assert params["rds.force_ssl"] == "1"
    assert params["log_min_duration_statement"] == "500"
    (sg,) = db["VpcSecurityGroups"]
    assert (
        aws("ec2").describe_security_groups(GroupIds=[sg["VpcSecurityGroupId"]])["SecurityGroups"][
            0
        ]["GroupName"]
        == f"{P}-db"
    )
    secret = json.loads(_secret(aws)["SecretString"])
    assert {"username", "password", "host", "port", "dbname"} <= set(secret)
    assert secret["host"] == db["Endpoint"]["Address"]
    assert int(secret["port"]) == 5432
    assert secret["dbname"] == "taskboard"
    assert len(secret["password"]) >= 32


def test_bucket_topic_and_alarms(aws, first_run):
    s3 = aws("s3")
    bucket = PRODUCTION_ARTIFACTS
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert len(pab) == 4
    assert all(pab.values())
    topics = [
        t["TopicArn"]
        for t in aws("sns").list_topics()["Topics"]
        if t["TopicArn"].endswith(f":{P}-alarms")
    ]
    assert len(topics) == 1
    alarms = {
        a["AlarmName"]: a
        for a in aws("cloudwatch").describe_alarms(AlarmNamePrefix=P + "-")["MetricAlarms"]
    }
    want = {
        "web-alb-5xx": "HTTPCode_ELB_5XX_Count",
        "app-alb-5xx": "HTTPCode_ELB_5XX_Count",
        "web-unhealthy-targets": "UnHealthyHostCount",
        "app-unhealthy-targets": "UnHealthyHostCount",
        "web-asg-cpu": "CPUUtilization",
        "app-asg-cpu": "CPUUtilization",
        "rds-cpu": "CPUUtilization",
        "rds-free-storage": "FreeStorageSpace",
        "rds-connections": "DatabaseConnections",
    }
    assert {k.removeprefix(P + "-"): a["MetricName"] for k, a in alarms.items()} == want
    assert all(a["AlarmActions"] == topics for a in alarms.values())


def lifecycle_rules(s3, bucket: str) -> list[dict]:
    return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_ssm_transfer_bucket(aws, first_run):
    """The bucket the SSM connection moves files through, as site.yml made it
    (roles/aws_ssm_transfer_bucket): private, encrypted, never versioned,
    objects expire after a day and incomplete uploads are aborted, tagged as
    everything of the kit; and nothing granted on it to the instances."""
    s3 = aws("s3")
    head = s3.head_bucket(Bucket=SSM_BUCKET)["ResponseMetadata"]["HTTPHeaders"]
    assert head["x-amz-bucket-region"] == REGION
    assert s3.get_public_access_block(Bucket=SSM_BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert s3.get_bucket_ownership_controls(Bucket=SSM_BUCKET)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]
    (enc,) = s3.get_bucket_encryption(Bucket=SSM_BUCKET)["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert enc["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert "Status" not in s3.get_bucket_versioning(Bucket=SSM_BUCKET), "never versioned"
    (rule,) = lifecycle_rules(s3, SSM_BUCKET)
    assert rule["ID"] == "expire-objects"
    assert rule["Status"] == "Enabled"
    assert rule["Filter"].get("Prefix", "") == "", "the whole bucket"
    assert rule["Expiration"] == {"Days": 1}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=SSM_BUCKET)["TagSet"]}
    assert tags == {
        "Project": "threetier",
        "Environment": ENV,
        "ManagedBy": "ansible",
        "Name": SSM_BUCKET,
    }
    # the instances only run curl on URLs the controller signs: their roles
    # get nothing on it
    iam = aws("iam")
    for tier in ("web", "app"):
        for name in iam.list_role_policies(RoleName=f"{P}-{tier}")["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=f"{P}-{tier}", PolicyName=name)["PolicyDocument"]
            assert SSM_BUCKET not in json.dumps(doc), (tier, name)
    # the artifact bucket has no expiry (its objects are the releases)
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        lifecycle_rules(s3, PRODUCTION_ARTIFACTS)


def test_run_prints_what_the_operator_needs(first_run, albs, aws, moto):
    out = first_run.output
    assert f"https://{albs[f'{P}-ext']['DNSName']}/" in out
    assert f"CloudFront (emulator): https://{distribution(moto)['DomainName']}/" in out
    for name in ("ext", "int", "web", "app"):
        assert f"{P}-{name}" in out
    assert _secret(aws)["ARN"] in out
    db = aws("rds").describe_db_instances(DBInstanceIdentifier=f"{P}-db")["DBInstances"][0]
    assert db["Endpoint"]["Address"] in out


def test_a_propagating_instance_profile_is_waited_for(first_run, moto):
    # the emulator refused the groups while the new profiles propagated
    # (conftest: IAM_PROPAGATION_SECONDS); the run retried that error alone
    assert "still propagating" in moto.log.read_text(errors="replace"), "never refused"
    retried = r"waiting \[localhost\] \(item=[^)]+\): .*Create or update the Auto Scaling groups"
    assert re.search(retried, first_run.output), "no retry of the refusal"
    assert first_run.rc == 0


def test_second_run_changes_nothing(kit, first_run):
    run = production_playbook(kit, "site.yml")
    RUNS.append(run)
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-8000:]


def test_edge_layer_alone_changes_nothing(kit, first_run):
    """load_balancers.yml alone (the balancers, certificate, web ACLs,
    CloudFront and the site's name) keeps what site.yml made: wired the same
    way, it neither drops the ALB's origin check nor points the name back at
    the ALB."""
    run = production_playbook(kit, "load_balancers.yml")
    RUNS.append(run)
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-8000:]


def test_drift_is_repaired(kit, aws, first_run, vpc):
    ec2, asg, elb = aws("ec2"), aws("autoscaling"), aws("elbv2")
    web = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{P}-web"]}])[
        "SecurityGroups"
    ][0]
    ec2.authorize_security_group_ingress(
        GroupId=web["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    asg.update_auto_scaling_group(AutoScalingGroupName=f"{P}-app", MaxSize=9)
    # a route table's tag changed by hand: repaired on the same table, not
    # a second table of that name (found by its tags, it would be)
    (table,) = ec2.describe_route_tables(
        Filters=[{"Name": "tag:Name", "Values": [f"{P}-private-a"]}]
    )["RouteTables"]
    ec2.create_tags(Resources=[table["RouteTableId"]], Tags=[{"Key": "ManagedBy", "Value": "hand"}])
    # the database on a newer minor version (RDS upgrades minors by itself)
    # and a tag changed by hand: the tag is repaired, the version kept (the
    # inventory's "15" is the major; sending it would ask for a downgrade)
    rds = aws("rds")
    db = rds.describe_db_instances(DBInstanceIdentifier=f"{P}-db")["DBInstances"][0]
    minor = db["EngineVersion"].split(".")[0] + ".99"
    rds.modify_db_instance(
        DBInstanceIdentifier=f"{P}-db", EngineVersion=minor, ApplyImmediately=True
    )
    rds.add_tags_to_resource(
        ResourceName=db["DBInstanceArn"], Tags=[{"Key": "ManagedBy", "Value": "hand"}]
    )
    tg = elb.describe_target_groups(Names=[f"{P}-web"])["TargetGroups"][0]
    elb.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], HealthCheckIntervalSeconds=60)
    elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "slow_start.duration_seconds", "Value": "0"}],
    )
    # the agent's policy widened by hand: every log group, any namespace
    iam = aws("iam")
    wide = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:PutLogEvents", "cloudwatch:PutMetricData"],
                "Resource": ["*"],
            }
        ],
    }
    iam.put_role_policy(
        RoleName=f"{P}-web", PolicyName="cloudwatch-agent", PolicyDocument=json.dumps(wide)
    )
    # the SSM transfer bucket versioned (its files would outlive their
    # deletion) and its expiry made a month, by hand
    s3 = aws("s3")
    s3.put_bucket_versioning(Bucket=SSM_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    (rule,) = lifecycle_rules(s3, SSM_BUCKET)
    s3.put_bucket_lifecycle_configuration(
        Bucket=SSM_BUCKET,
        LifecycleConfiguration={"Rules": [dict(rule, Expiration={"Days": 30})]},
    )
    run = production_playbook(kit, "site.yml")
    RUNS.append(run)
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] >= 4
    web = ec2.describe_security_groups(GroupIds=[web["GroupId"]])["SecurityGroups"][0]
    assert [p["FromPort"] for p in web["IpPermissions"]] == [80]
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "tag:Name", "Values": [f"{P}-private-a"]}]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in tables] == [table["RouteTableId"]]
    assert {"Key": "ManagedBy", "Value": "ansible"} in tables[0]["Tags"]
    db = rds.describe_db_instances(DBInstanceIdentifier=f"{P}-db")["DBInstances"][0]
    assert db["EngineVersion"] == minor
    assert {"Key": "ManagedBy", "Value": "ansible"} in db["TagList"]
    assert (
        asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-app"])["AutoScalingGroups"][
            0
        ]["MaxSize"]
        == 4
    )
    tg = elb.describe_target_groups(Names=[f"{P}-web"])["TargetGroups"][0]
    assert tg["HealthCheckIntervalSeconds"] == LB["aws_load_balancers_health_check_interval"]
    attrs = {
        a["Key"]: a["Value"]
        for a in elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])[
            "Attributes"
        ]
    }
    assert attrs["slow_start.duration_seconds"] == "30"
    doc = iam.get_role_policy(RoleName=f"{P}-web", PolicyName="cloudwatch-agent")["PolicyDocument"]
    account = _secret(aws)["ARN"].split(":")[4]
    check_agent_policy(doc, "web", account)
    # versioning suspended (S3 cannot turn it off once on), the expiry a day again
    assert s3.get_bucket_versioning(Bucket=SSM_BUCKET)["Status"] == "Suspended"
    assert [r["Expiration"] for r in lifecycle_rules(s3, SSM_BUCKET)] == [{"Days": 1}]


def test_production_inventory_lists_the_asg_instances(kit, aws, first_run):
    groups, graph = kit.inventory_groups("inventories/production/aws_ec2.yml")
    for tier in ("web", "app"):
        (g,) = aws("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[f"{P}-{tier}"]
        )["AutoScalingGroups"]
        ids = {i["InstanceId"] for i in g["Instances"]}
        assert len(ids) == 2
        assert groups[f"tier_{tier}"] == ids, graph
    assert groups["env_production"] == groups["tier_web"] | groups["tier_app"]


def test_password_never_in_any_output(aws, first_run):
    """Neither the database's password nor CloudFront's origin header (in the
    listener's rule and the distribution's origin) in any run's output."""
    password = json.loads(_secret(aws)["SecretString"])["password"]
    origin = json.loads(
        aws("secretsmanager").get_secret_value(SecretId=f"threetier/{ENV}/cdn-origin")[
            "SecretString"
        ]
    )["value"]
    assert RUNS
    for run in RUNS:
        assert password not in run.output
        assert origin not in run.output


def test_teardown_refuses_production_without_confirmation(kit, aws, first_run):
    run = production_playbook(kit, "teardown.yml")
    assert run.rc != 0
    assert "aws_teardown_confirm" in run.output
    assert aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{P}-vpc"]}])["Vpcs"]
    assert aws("rds").describe_db_instances(DBInstanceIdentifier=f"{P}-db")["DBInstances"]
    # nothing was touched: the balancers keep their deletion protection
    elb = aws("elbv2")
    for lb in elb.describe_load_balancers(Names=[f"{P}-ext", f"{P}-int"])["LoadBalancers"]:
        attrs = elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])
        assert {"Key": "deletion_protection.enabled", "Value": "true"} in attrs["Attributes"]


def test_teardown_removes_everything(kit, aws, moto, first_run):
    # an earlier teardown stopped after removing the NAT gateway (its address
    # not released yet): this one releases the address all the same
    ec2 = aws("ec2")
    # an interrupted run left a file in the SSM transfer bucket: emptied, then removed
    aws("s3").put_object(Bucket=SSM_BUCKET, Key="i-0123456789abcdef0/leftover", Body=b"x")
    for nat in ec2.describe_nat_gateways()["NatGateways"]:
        if nat["State"] != "deleted":
            ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
    assert ec2.describe_addresses()["Addresses"], "the address outlives its NAT gateway"
    run = production_playbook(kit, "teardown.yml", "-e", f"aws_teardown_confirm={P}")
    RUNS.append(run)
    assert run.rc == 0, run.output[-6000:]
    # the balancers' deletion protection is lifted, then they are removed (the
    # emulator would remove a protected one; AWS refuses: OperationNotPermitted)
    out = run.output
    lift = out.index("TASK [aws_load_balancers : Lift the load balancers' deletion protection]")
    remove = out.index("TASK [aws_load_balancers : Remove the load balancers]")
    lifted = out[lift:remove]
    assert f"changed: [localhost] => (item={P}-ext)" in lifted, lifted
    assert f"changed: [localhost] => (item={P}-int)" in lifted, lifted
    assert not ec2.describe_vpcs(
        Filters=[
            {"Name": "tag:Project", "Values": ["threetier"]},
            {"Name": "tag:Environment", "Values": [ENV]},
        ]
    )["Vpcs"]
    assert not [n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"]
    assert not ec2.describe_addresses()["Addresses"], "the NAT's elastic IP is released"
    assert not [
        g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith(P)
    ]
    assert not ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [f"{P}-web", f"{P}-app"]}]
    )["LaunchTemplates"]
    assert not aws("elbv2").describe_load_balancers()["LoadBalancers"]
    assert not aws("elbv2").describe_target_groups()["TargetGroups"]
    assert not aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert not [r for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith(P)]
    assert not [
        p
        for p in aws("iam").list_instance_profiles()["InstanceProfiles"]
        if p["InstanceProfileName"].startswith(P)
    ]
    assert not aws("rds").describe_db_instances()["DBInstances"]
    assert not [
        g
        for g in aws("rds").describe_db_subnet_groups()["DBSubnetGroups"]
        if g["DBSubnetGroupName"].startswith(P)
    ]
    assert not [
        g
        for g in aws("rds").describe_db_parameter_groups()["DBParameterGroups"]
        if g["DBParameterGroupName"].startswith(P)
    ]
    assert not aws("secretsmanager").list_secrets()["SecretList"]
    assert not [
        b
        for b in aws("s3").list_buckets()["Buckets"]
        if b["Name"] in (PRODUCTION_ARTIFACTS, SSM_BUCKET)
    ]
    assert not [
        t for t in aws("sns").list_topics()["Topics"] if t["TopicArn"].endswith(f":{P}-alarms")
    ]
    assert not aws("cloudwatch").describe_alarms(AlarmNamePrefix=P)["MetricAlarms"]
    assert not [
        a
        for a in aws("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"]
        if a["Name"] == f"{P}-web"
    ]
    assert not aws("logs").describe_log_groups(logGroupNamePrefix=f"aws-waf-logs-{P}")["logGroups"]
    assert not [
        a
        for a in moto.client("wafv2", "us-east-1").list_web_acls(Scope="CLOUDFRONT")["WebACLs"]
        if a["Name"] == f"{P}-cdn"
    ]
    assert not moto.client("logs", "us-east-1").describe_log_groups(
        logGroupNamePrefix=f"aws-waf-logs-{P}"
    )["logGroups"]
    # the distribution (disabled, then deleted) and its access control
    cf = moto.client("cloudfront", "us-east-1")
    assert not cf.list_distributions()["DistributionList"].get("Items")
    assert not cf.list_origin_access_controls()["OriginAccessControlList"].get("Items")
    # the certificates (CloudFront's copy too) and their validation records
    # are gone; the zone (the operator's) stays with its own records only
    assert site_certificates(aws) == []
    assert site_certificates(lambda service: moto.client(service, "us-east-1")) == []
    # the site's alias, health check, alarm and topic too
    assert {r["Type"] for r in zone_records(aws)} == {"NS", "SOA"}
    assert site_health_checks(moto) == []
    east = "us-east-1"
    assert not moto.client("cloudwatch", east).describe_alarms(AlarmNamePrefix=P)["MetricAlarms"]
    assert not [
        t
        for t in moto.client("sns", east).list_topics()["Topics"]
        if t["TopicArn"].endswith(f":{P}-site-health")
    ]
    # production keeps a final snapshot of its database, on purpose
    snaps = aws("rds").describe_db_snapshots(DBInstanceIdentifier=f"{P}-db")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"].startswith(f"{P}-db-final") for s in snaps] == [True]
    # a second teardown finds nothing to do
    again = production_playbook(kit, "teardown.yml", "-e", f"aws_teardown_confirm={P}")
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0
