"""The emulator's EC2 fixes: a network interface made by
CreateNetworkInterface never shares an address with an instance or another
interface (moto picked ENI addresses at random, outside the subnet's
allocator), as on AWS. (The launch-template user-data fix is exercised by
test_emulator_autoscaling: a group launching from version 2.)"""

from __future__ import annotations

from collections import Counter

import botocore.exceptions
import pytest
from test_emulator_support import World, emulator


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return emulator(tmp_path_factory, data_plane=False)


def test_network_interfaces_and_instances_never_share_an_address(plain):
    world = World(plain)
    subnet = world.subnets[0]
    addresses = []
    for _ in range(25):
        eni = world.ec2.create_network_interface(
            SubnetId=subnet, Groups=[world.sg], Description="ELB app/test/1"
        )["NetworkInterface"]
        addresses.append(eni["PrivateIpAddress"])
        instance = world.ec2.run_instances(
            ImageId=world.image(1), MinCount=1, MaxCount=1, SubnetId=subnet
        )["Instances"][0]
        addresses.append(instance["PrivateIpAddress"])
    assert [a for a, n in Counter(addresses).items() if n > 1] == []
    assert eni["Groups"] == [{"GroupId": world.sg, "GroupName": f"sg-{world.tag}"}]
    assert eni["Description"] == "ELB app/test/1"

    # an address in use is refused; a deleted interface's address is free again
    taken = instance["PrivateIpAddress"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        world.ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=taken)
    assert caught.value.response["Error"]["Code"] == "InvalidIPAddress.InUse"
    world.ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    again = world.ec2.create_network_interface(
        SubnetId=subnet, PrivateIpAddress=eni["PrivateIpAddress"]
    )["NetworkInterface"]
    assert again["PrivateIpAddress"] == eni["PrivateIpAddress"]


def test_moto_made_interfaces_are_left_alone(plain):
    """A NAT gateway's interface (moto makes it with an address of its own
    choosing) still comes up: only CreateNetworkInterface is changed."""
    world = World(plain)
    eip = world.ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = world.ec2.create_nat_gateway(SubnetId=world.subnets[0], AllocationId=eip)["NatGateway"]
    assert nat["NatGatewayAddresses"][0]["NetworkInterfaceId"].startswith("eni-")
