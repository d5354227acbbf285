"""Every patch of moto the emulator needs, applied before moto.server starts.

:func:`apply_all` is what scripts/moto_server.py calls. The EC2 fixes (launch
template user data, network interface addresses) live here; the others in
their service's module (emulator_elbv2, emulator_autoscaling,
emulator_refresh, emulator_ami_sharing: AMIs shared and copied between
accounts, emulator_wafv2: web ACL associations, emulator_acm: DNS validation
and certificates in use, emulator_cloudfront: origins' access control),
the server's middleware and loop in emulator_server.
"""

from __future__ import annotations

import functools
from typing import Any

from localaws import (
    emulator_acm,
    emulator_ami_sharing,
    emulator_autoscaling,
    emulator_cloudfront,
    emulator_elbv2,
    emulator_refresh,
    emulator_wafv2,
)
from localaws.emulator_state import MODE, data_plane_from_env


def patch_launch_template_user_data() -> None:
    """Wrap a new launch-template version's user data as version 1's.

    moto 5.2.5: CreateLaunchTemplateVersion stores the new version's UserData
    as the plain string from the request, while CreateLaunchTemplate wraps it
    in moto's Base64EncodedString. Any Auto Scaling launch from such a version
    (>= 2) with user data then fails an assertion in moto (HTTP 500), so an
    AMI rolled out as a new launch-template version could never launch. AWS
    behaves like the patched emulator; nothing else changes.
    """
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.utils import parse_user_data

    if getattr(LaunchTemplate.create_version, "_threetier_patched", False):
        return
    original = LaunchTemplate.create_version

    @functools.wraps(original)
    def create_version(self: Any, data: Any, description: str) -> Any:
        user_data = data.get("UserData") if isinstance(data, dict) else None
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = {**data, "UserData": parse_user_data(user_data)}
        return original(self, data, description)

    create_version._threetier_patched = True  # type: ignore[attr-defined]
    LaunchTemplate.create_version = create_version  # type: ignore[method-assign]


def patch_network_interface_addresses() -> None:
    """CreateNetworkInterface takes its address from the subnet's allocator.

    moto 5.2.5 gives an instance the subnet's next free address (its
    allocator), but a network interface made by CreateNetworkInterface a
    random address of the subnet that the allocator never hears of, and it
    accepts a requested address already in use: an ENI and an instance (or
    two ENIs) can share an address. AWS never hands out an address twice
    (InvalidIPAddress.InUse). The local data plane puts containers at these
    addresses (an ALB's nodes on the controller's ENIs, instances on theirs),
    so a duplicate would be a real collision there. Patched, for the API call
    only (moto's own ENIs, of NAT gateways, VPC endpoints, instances, are
    made as moto makes them): the new ENI's primary address is reserved in
    the subnet's allocator (the next free one, or the one asked for if free)
    and released when the ENI is deleted.
    """
    import ipaddress

    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
    from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces

    if getattr(ElasticNetworkInterfaces.create_network_interface, "_threetier_patched", False):
        return
    original_create = ElasticNetworkInterfaces.create_network_interface
    original_delete = NetworkInterfaceBackend.delete_network_interface

    @functools.wraps(original_create)
    def create_network_interface(self: Any) -> Any:
        subnet = self.ec2_backend.get_subnet(self._get_param("SubnetId"))
        requested = self._get_param("PrivateIpAddress")
        for item in self._get_param("PrivateIpAddresses", []) or []:
            if not requested and isinstance(item, dict) and item.get("Primary"):
                requested = item.get("PrivateIpAddress")
        allocated = None
        if requested:
            if ipaddress.ip_address(requested) not in subnet.cidr:
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"Address {requested} does not fall within the subnet's address range",
                )
            if requested in subnet._subnet_ips:
                raise EC2ClientError("InvalidIPAddress.InUse", f"Address {requested} is in use.")
            address = requested
        else:
            address = allocated = subnet.get_available_subnet_ip(instance=None)
            self.params["PrivateIpAddress"] = address
        try:
            result = original_create(self)
        except Exception:
            if allocated:
                subnet.del_subnet_ip(allocated)
            raise
        eni = result.result["NetworkInterface"]
        subnet._subnet_ips[address] = eni
        subnet._unused_ips.discard(address)
        eni._threetier_reserved_ip = address
        return result

    @functools.wraps(original_delete)
    def delete_network_interface(self: Any, eni_id: str) -> None:
        eni = self.enis.get(eni_id)
        address = getattr(eni, "_threetier_reserved_ip", None)
        original_delete(self, eni_id)
        if address:
            eni.subnet.del_subnet_ip(address)

    create_network_interface._threetier_patched = True  # type: ignore[attr-defined]
    ElasticNetworkInterfaces.create_network_interface = create_network_interface  # type: ignore[method-assign]
    NetworkInterfaceBackend.delete_network_interface = delete_network_interface  # type: ignore[method-assign]


def apply_all(data_plane: bool | None = None) -> None:
    """Choose the mode (``THREETIER_EMULATOR_DATA_PLANE`` unless given) and
    patch moto. Idempotent."""
    MODE.data_plane = data_plane_from_env() if data_plane is None else data_plane
    patch_launch_template_user_data()
    patch_network_interface_addresses()
    emulator_elbv2.patch()
    emulator_autoscaling.patch()
    emulator_refresh.patch()
    emulator_ami_sharing.patch()
    emulator_wafv2.patch()
    emulator_acm.patch()
    emulator_cloudfront.patch()
