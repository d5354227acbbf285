"""Wall time of the whole control plane against a fresh moto server: a first
run of playbooks/site.yml (everything created) and a no-op run (nothing to
change), then teardown. Prints figures; it does not pass or fail.

    python bench/provision_bench.py [--runs N]

The machine's load average is printed too: other work on the same cores
stretches wall time (CPU seconds of the runs are printed beside it).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from motoserver import moto_server  # noqa: E402


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(env, playbook, *extra) -> tuple[float, float, str]:
    cpu0, t0 = children_cpu(), time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/local", f"playbooks/{playbook}", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{playbook} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    recap = [x for x in proc.stdout.splitlines() if x.startswith("localhost ") and "ok=" in x][-1]
    return wall, cpu, " ".join(recap.split()[2:5])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="no-op runs to time (default 3)")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="moto-bench-") as tmp,
        moto_server(Path(tmp) / "moto.log") as moto,
    ):
        url = moto.url
        env = dict(os.environ)
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            AWS_ENDPOINT_URL=url,
            AWS_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 (moto's dummy)
            ANSIBLE_NOCOLOR="1",
        )
        if not env.get("ANSIBLE_CALLBACKS_ENABLED"):
            env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.timer"
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average before: {load} ({os.cpu_count()} CPUs)")
        wall, cpu, recap = run(env, "site.yml")
        print(f"first run: {wall:6.1f} s wall, {cpu:5.1f} s CPU  [{recap}]")
        walls = []
        for i in range(args.runs):
            wall, cpu, recap = run(env, "site.yml")
            walls.append(wall)
            print(f"no-op run {i + 1}: {wall:6.1f} s wall, {cpu:5.1f} s CPU  [{recap}]")
        print(f"no-op run, best of {args.runs}: {min(walls):.1f} s (goal: 10 s or less)")
        wall, cpu, recap = run(env, "teardown.yml")
        print(f"teardown:  {wall:6.1f} s wall, {cpu:5.1f} s CPU  [{recap}]")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
