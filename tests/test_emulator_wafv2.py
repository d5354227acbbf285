"""The emulator's WAFv2 associations (scripts/localaws/emulator_wafv2.py): a
resource on one web ACL at a time, listed by ListResourcesForWebACL, as AWS
keeps them."""

from __future__ import annotations

import botocore.exceptions
import pytest
from test_emulator_support import REGION, emulator

VISIBILITY = {"SampledRequestsEnabled": False, "CloudWatchMetricsEnabled": False, "MetricName": "m"}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


def test_a_resource_is_on_one_web_acl(moto):
    waf, ec2, elb = (moto.client(s, REGION) for s in ("wafv2", "ec2", "elbv2"))
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="waf-test", Subnets=subnets)["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]

    def acl(name: str) -> str:
        return waf.create_web_acl(
            Name=name,
            Scope="REGIONAL",
            DefaultAction={"Allow": {}},
            VisibilityConfig=VISIBILITY,
            Rules=[],
        )["Summary"]["ARN"]

    first, second = acl("waf-test-1"), acl("waf-test-2")

    def listed(arn: str, **kw) -> list[str]:
        return waf.list_resources_for_web_acl(WebACLArn=arn, **kw)["ResourceArns"]

    assert listed(first) == []
    waf.associate_web_acl(WebACLArn=first, ResourceArn=lb_arn)
    waf.associate_web_acl(WebACLArn=first, ResourceArn=lb_arn)  # again: no change
    assert listed(first) == [lb_arn]
    assert listed(first, ResourceType="APPLICATION_LOAD_BALANCER") == [lb_arn]
    assert listed(first, ResourceType="API_GATEWAY") == []
    # another web ACL replaces the first
    waf.associate_web_acl(WebACLArn=second, ResourceArn=lb_arn)
    assert (listed(first), listed(second)) == ([], [lb_arn])
    assert waf.get_web_acl_for_resource(ResourceArn=lb_arn)["WebACL"]["ARN"] == second
    waf.disassociate_web_acl(ResourceArn=lb_arn)
    assert listed(second) == []

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        listed(first.replace("waf-test-1", "nothing"))
    assert caught.value.response["Error"]["Code"] == "WAFNonexistentItemException"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        listed(first, ResourceType="SOMETHING")
    assert caught.value.response["Error"]["Code"] == "WAFInvalidParameterException"
