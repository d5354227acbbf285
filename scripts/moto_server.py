"""Start the moto server (the local AWS emulator) with the kit's extensions.

Used by scripts/moto.sh and the tests' `moto` fixture instead of the plain
`moto_server` entry point; it takes the same arguments.

Before moto.server starts, scripts/localaws patches moto in-process (each
patch says why in its docstring; docs/local-data-plane.md is the contract):

- emulator_patches: CreateLaunchTemplateVersion's user data wrapped as
  version 1's (moto failed any launch from such a version);
- emulator_elbv2: target health from the data plane's reports, draining;
- emulator_autoscaling: placement over the group's AZs, per-instance launch
  template versions, AWS's scale-in choice, Terminating, health replacement;
- emulator_refresh: the instance refresh API moto lacks;
- emulator_server: the private /_threetier/ endpoints, one lock for requests
  and the background loop, HTTP 501 (not 500) for what moto lacks.

`THREETIER_EMULATOR_DATA_PLANE=1` attaches a data plane (scripts/moto.sh);
unset, targets are healthy at once and terminations immediate (moto's
behaviour), for the kit's emulator-only tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# scripts/ on the path also when this file is loaded other than as a script
_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)


def patch_moto() -> None:
    """Apply every patch of the emulator (the mode from the environment)."""
    from localaws import emulator_patches, emulator_server

    emulator_patches.apply_all()
    emulator_server.install()


def main() -> int:
    patch_moto()
    from moto.server import main as moto_main

    sys.argv[0] = "moto_server"
    moto_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
