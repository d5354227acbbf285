"""The emulator's server side: the private endpoints and HTTP 501 for what
moto lacks (an AWS error body naming service and action, never HTTP 500)."""

from __future__ import annotations

import botocore.exceptions
import pytest
from test_emulator_support import REGION, World, emulator


@pytest.fixture(scope="module")
def dp(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=True)


def test_private_endpoints(dp):
    world = World(dp)
    assert world.post("/_threetier/status", method="GET") == (200, {"data_plane": True})
    status, answer = world.post("/_threetier/target-health", b"{not json")
    assert status == 400
    assert "bad report" in answer["error"]
    status, _ = world.post("/_threetier/target-health", b'{"reports": {}}')
    assert status == 400
    status, _ = world.post("/_threetier/target-health", method="GET")
    assert status == 405
    status, _ = world.post("/_threetier/nothing", method="GET")
    assert status == 404
    assert world.report() == {"accepted": 0, "ignored": 0}


@pytest.mark.parametrize(
    ("service", "call", "action", "kwargs"),
    [
        # query protocol (XML ErrorResponse)
        (
            "autoscaling",
            "disable_metrics_collection",
            "DisableMetricsCollection",
            {"AutoScalingGroupName": "g"},
        ),
        # EC2 protocol (Response/Errors)
        ("ec2", "describe_capacity_blocks", "DescribeCapacityBlocks", {}),
        # JSON protocol (__type)
        ("ssm", "describe_ops_items", "DescribeOpsItems", {}),
    ],
)
def test_unimplemented_action_answers_501(dp, service, call, action, kwargs):
    client = dp.client(service, REGION)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        getattr(client, call)(**kwargs)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert error["ResponseMetadata"]["RetryAttempts"] == 0, "501 is not retried"
    assert error["Error"]["Code"] == "NotImplemented"
    assert f"{service} {action} is not implemented" in error["Error"]["Message"]
    assert f"501 {service} {action}" in dp.log.read_text()
