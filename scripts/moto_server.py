"""Start the moto server (the local AWS emulator) with one fix applied.

Used by scripts/moto.sh and the tests' `moto` fixture instead of the plain
`moto_server` entry point; it takes the same arguments.

The fix (moto 5.2.5): CreateLaunchTemplateVersion stores the new version's
UserData as the plain string from the request, while CreateLaunchTemplate
wraps it in moto's Base64EncodedString. Any Auto Scaling launch from such a
version (>= 2) with user data then fails an assertion in moto (HTTP 500), so
an AMI rolled out as a new launch-template version could never launch. The
patch wraps the user data of every new version the way version 1 is wrapped.
Real AWS behaves like the patched emulator; nothing else changes.
"""

from __future__ import annotations

import functools
import sys


def patch_moto() -> None:
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.utils import parse_user_data

    if getattr(LaunchTemplate.create_version, "_threetier_patched", False):
        return
    original = LaunchTemplate.create_version

    @functools.wraps(original)
    def create_version(self, data, description):
        user_data = data.get("UserData") if isinstance(data, dict) else None
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = {**data, "UserData": parse_user_data(user_data)}
        return original(self, data, description)

    create_version._threetier_patched = True
    LaunchTemplate.create_version = create_version


def main() -> int:
    patch_moto()
    from moto.server import main as moto_main

    sys.argv[0] = "moto_server"
    return moto_main()


if __name__ == "__main__":
    sys.exit(main())
