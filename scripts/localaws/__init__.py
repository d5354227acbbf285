"""The kit's local AWS: moto server's extensions and the local data plane.

The emulator is moto server 5.2.5 patched in-process before it starts
(scripts/moto_server.py is the entry point); its extensions are the modules
named ``emulator_*`` here. The rest of the package is the controller that
makes podman containers follow what the emulator says (scripts/local_controller.py).
docs/local-data-plane.md is the contract both implement.

Nothing here is imported by moto itself: importing this package has no side
effect, the patches are applied by ``localaws.emulator_patches.apply_all()``.
"""
