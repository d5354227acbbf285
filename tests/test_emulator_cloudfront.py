"""The emulator's CloudFront origins (scripts/localaws/emulator_cloudfront.py):
an S3 origin's origin access control and S3OriginConfig are kept and
returned, as AWS keeps them."""

from __future__ import annotations

import pytest
from test_emulator_support import REGION, emulator


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


def test_an_s3_origin_keeps_its_access_control(moto):
    cf = moto.client("cloudfront", REGION)
    oac = cf.create_origin_access_control(
        OriginAccessControlConfig={
            "Name": "cf-test", "SigningProtocol": "sigv4", "SigningBehavior": "always",
            "OriginAccessControlOriginType": "s3",
        }
    )["OriginAccessControl"]["Id"]  # fmt: skip
    origin = {
        "Id": "page", "DomainName": "cf-test.s3.us-east-1.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""}, "OriginAccessControlId": oac,
    }  # fmt: skip
    made = cf.create_distribution(
        DistributionConfig={
            "CallerReference": "cf-test", "Comment": "cf-test", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "page", "ViewerProtocolPolicy": "https-only",
            },
        }
    )["Distribution"]  # fmt: skip
    (kept,) = cf.get_distribution_config(Id=made["Id"])["DistributionConfig"]["Origins"]["Items"]
    assert kept["OriginAccessControlId"] == oac
    assert kept["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    # and an update keeps what it is given
    got = cf.get_distribution_config(Id=made["Id"])
    config = got["DistributionConfig"]
    config["Origins"]["Items"][0]["OriginAccessControlId"] = ""
    cf.update_distribution(Id=made["Id"], IfMatch=got["ETag"], DistributionConfig=config)
    (kept,) = cf.get_distribution_config(Id=made["Id"])["DistributionConfig"]["Origins"]["Items"]
    assert kept["OriginAccessControlId"] == ""
