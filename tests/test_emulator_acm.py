"""The emulator's ACM (scripts/localaws/emulator_acm.py): a DNS-validated
certificate is issued once its validation records are in a public Route 53
zone, never by the clock alone; a certificate a listener serves is in use
and cannot be deleted, as on AWS."""

from __future__ import annotations

import botocore.exceptions
import pytest
from test_emulator_support import REGION, emulator

DOMAIN = "www.acm-test.example"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    # moto alone would issue after MOTO_ACM_VALIDATION_WAIT seconds: 0 here,
    # so a certificate still pending below is the patch's doing
    return emulator(tmp_path_factory, data_plane=False, extra_env={"MOTO_ACM_VALIDATION_WAIT": "0"})


def status(acm, arn: str) -> str:
    return acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"]


def upsert(r53, zone_id: str, record: dict) -> None:
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": record["Name"],
                        "Type": record["Type"],
                        "TTL": 300,
                        "ResourceRecords": [{"Value": record["Value"]}],
                    },
                }
            ]
        },
    )


def test_issued_once_every_validation_record_is_in_a_public_zone(moto):
    acm, r53 = moto.client("acm", REGION), moto.client("route53", REGION)
    arn = acm.request_certificate(
        DomainName=DOMAIN,
        SubjectAlternativeNames=[DOMAIN, "api.acm-test.example"],
        ValidationMethod="DNS",
    )["CertificateArn"]
    options = acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"]
    records = {o["DomainName"]: o["ResourceRecord"] for o in options}
    assert set(records) == {DOMAIN, "api.acm-test.example"}
    assert status(acm, arn) == "PENDING_VALIDATION"

    # a private zone of that name does not count (ACM resolves from the internet)
    private = r53.create_hosted_zone(
        Name="acm-test.example",
        CallerReference="private",
        VPC={"VPCRegion": REGION, "VPCId": "vpc-12345678"},
        HostedZoneConfig={"PrivateZone": True},
    )["HostedZone"]["Id"]
    for record in records.values():
        upsert(r53, private, record)
    assert status(acm, arn) == "PENDING_VALIDATION"

    public = r53.create_hosted_zone(Name="acm-test.example", CallerReference="public")
    zone_id = public["HostedZone"]["Id"]
    upsert(r53, zone_id, records[DOMAIN])
    # one of two domains validated: still pending
    assert status(acm, arn) == "PENDING_VALIDATION"
    # a record of the right name with a wrong value does not validate either
    upsert(r53, zone_id, {**records["api.acm-test.example"], "Value": "elsewhere.example."})
    assert status(acm, arn) == "PENDING_VALIDATION"
    upsert(r53, zone_id, records["api.acm-test.example"])
    assert status(acm, arn) == "ISSUED"


def test_a_certificate_a_listener_serves_cannot_be_deleted(moto):
    acm, ec2, elb = (moto.client(s, REGION) for s in ("acm", "ec2", "elbv2"))
    # a listener may name a certificate still pending in the emulator (AWS
    # asks for an issued one); in use all the same
    arn = acm.request_certificate(DomainName="use.acm-test.example", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="acm-test", Subnets=subnets)["LoadBalancers"][0]
    group = elb.create_target_group(Name="acm-test", Protocol="HTTP", Port=80, VpcId=vpc)
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": arn}],
        DefaultActions=[
            {"Type": "forward", "TargetGroupArn": group["TargetGroups"][0]["TargetGroupArn"]}
        ],
    )["Listeners"][0]
    described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    assert described["InUseBy"] == [lb["LoadBalancerArn"]]

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        acm.delete_certificate(CertificateArn=arn)
    assert caught.value.response["Error"]["Code"] == "ResourceInUseException"
    assert status(acm, arn) == "PENDING_VALIDATION"  # still there

    elb.delete_listener(ListenerArn=listener["ListenerArn"])
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["InUseBy"] == []
    acm.delete_certificate(CertificateArn=arn)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        acm.delete_certificate(CertificateArn=arn)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
