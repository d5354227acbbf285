"""WAFv2 associations as AWS keeps them.

moto 5.2.5 keeps a regional web ACL's associated resources, but has no
ListResourcesForWebACL (community.aws.wafv2_resources lists them before it
associates or disassociates, so it failed against the emulator), and its
AssociateWebACL appends the resource again each time and leaves it on any
other web ACL it was on. AWS keeps one web ACL per resource: associating it
again is a no-op, with another web ACL a replacement. Patched to behave so;
nothing else changes.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The resource types ListResourcesForWebACL filters by (AWS's API reference),
# each with the shape of its ARNs.
RESOURCE_TYPES = {
    "APPLICATION_LOAD_BALANCER": r"^arn:[^:]+:elasticloadbalancing:[^:]*:[^:]*:loadbalancer/app/",
    "API_GATEWAY": r"^arn:[^:]+:apigateway:",
    "APPSYNC": r"^arn:[^:]+:appsync:",
    "COGNITO_USER_POOL": r"^arn:[^:]+:cognito-idp:",
    "APP_RUNNER_SERVICE": r"^arn:[^:]+:apprunner:",
    "VERIFIED_ACCESS_INSTANCE": r"^arn:[^:]+:ec2:[^:]*:[^:]*:verified-access-instance/",
    "AMPLIFY": r"^arn:[^:]+:amplify:",
}


def resources_of(associated: list[str], resource_type: str | None) -> list[str]:
    """The associated resources of one type (an ALB when none is given, as
    AWS defaults), each once."""
    pattern = RESOURCE_TYPES[resource_type or "APPLICATION_LOAD_BALANCER"]
    return list(dict.fromkeys(a for a in associated if re.match(pattern, a)))


def patch() -> None:
    from moto.wafv2.exceptions import WAFNonexistentItemException, WAFv2ClientError
    from moto.wafv2.models import WAFV2Backend
    from moto.wafv2.responses import WAFV2Response

    if getattr(WAFV2Backend, "_threetier_patched", False):
        return
    WAFV2Backend._threetier_patched = True  # type: ignore[attr-defined]
    original = WAFV2Backend.associate_web_acl

    def associate_web_acl(self: Any, web_acl_arn: str, resource_arn: str) -> None:
        if web_acl_arn not in self.wacls:
            raise WAFNonexistentItemException
        for arn, acl in self.wacls.items():
            if arn != web_acl_arn and resource_arn in acl.associated_resources:
                acl.associated_resources.remove(resource_arn)
        if resource_arn not in self.wacls[web_acl_arn].associated_resources:
            original(self, web_acl_arn, resource_arn)

    def list_resources_for_web_acl(self: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(self.body)
        resource_type = body.get("ResourceType")
        if resource_type is not None and resource_type not in RESOURCE_TYPES:
            raise WAFv2ClientError(
                "WAFInvalidParameterException", f"ResourceType {resource_type} is not valid"
            )
        acl = self.wafv2_backend.wacls.get(body.get("WebACLArn", ""))
        if acl is None:
            raise WAFNonexistentItemException
        arns = resources_of(acl.associated_resources, resource_type)
        return 200, {"Content-Type": "application/json"}, json.dumps({"ResourceArns": arns})

    WAFV2Backend.associate_web_acl = associate_web_acl  # type: ignore[method-assign]
    WAFV2Response.list_resources_for_web_acl = list_resources_for_web_acl  # type: ignore[attr-defined]
