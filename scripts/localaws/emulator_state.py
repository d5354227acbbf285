"""What every emulator extension shares: the mode, the lock, the clock.

Emulator-only (nothing on AWS corresponds): the mode says whether a data
plane (the controller with its containers) is attached; the lock makes API
requests and the background loop take turns on moto's in-memory state, which
moto itself does not guard (its server answers requests on many threads).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

#: The environment variable that attaches a data plane (scripts/moto.sh sets it).
DATA_PLANE_ENV = "THREETIER_EMULATOR_DATA_PLANE"

#: Held by every API request (emulator_server's middleware) and every tick of
#: the background loop. Re-entrant: a patched moto method may call another.
LOCK = threading.RLock()


class _Mode:
    """The mode chosen at start (a data plane attached or not)."""

    data_plane: bool = False


MODE = _Mode()


def data_plane_from_env(environ: dict[str, str] | None = None) -> bool:
    """``THREETIER_EMULATOR_DATA_PLANE`` set to 1/true/yes/on (any case)."""
    value = (environ if environ is not None else os.environ).get(DATA_PLANE_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def data_plane() -> bool:
    """Whether a data plane is attached (health from its reports, draining,
    terminations through Terminating)."""
    return MODE.data_plane


def now() -> float:
    """Monotonic seconds: every emulator deadline (draining, grace periods,
    warm-up, checkpoints) is measured on it, never on the wall clock."""
    return time.monotonic()


def log(message: str) -> None:
    """One line on the server's output (its log file): what the emulator did
    by itself (the background loop), so a surprise can be traced."""
    print(f"threetier-emulator: {message}", file=sys.stderr, flush=True)


def backends(backend_dict: Any) -> Iterator[Any]:
    """Every region backend of a moto BackendDict that exists already.

    Read through dict's own methods: moto's ``__getitem__`` would create a
    backend for any account/region asked for, the loop must only visit those
    that requests made."""
    for account in list(dict.values(backend_dict)):
        yield from list(dict.values(account))
