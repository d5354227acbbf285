"""taskboard under gunicorn against PostgreSQL: requests/s and p50/p99 latency.

Not a test: it prints figures. It starts its own throwaway PostgreSQL server
(from the machine's binaries, like the app's tests) and gunicorn with the
release configuration (taskboard.gunicorn_conf) on 127.0.0.1, then runs a
bounded load (a request count and a time limit per scenario) of listing and
creating tasks.

    python bench/app_bench.py [--requests N] [--seconds S] [--concurrency C] [--workers W]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "app" / "tests"))

from gunicornserver import GunicornServer  # noqa: E402
from pgserver import PostgresServer  # noqa: E402


def migrate(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("TASKBOARD_DB_SECRET_ID", None)
    exe = Path(sys.executable).with_name("taskboard-migrate")
    subprocess.run([str(exe), "upgrade"], env=env, check=True, capture_output=True, timeout=60)


def run_scenario(
    port: int, method: str, path: str, body: bytes | None, total: int, seconds: float, conc: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def worker() -> None:
        nonlocal issued, errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        bad = 0
        while time.monotonic() < deadline:
            with lock:
                if issued >= total:
                    break
                issued += 1
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status < 400
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter() - started)
            bad += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive") if n > 1 else [0] * 99
    return {
        "requests": n,
        "errors": errors,
        "seconds": elapsed,
        "rps": n / elapsed if elapsed else 0.0,
        "p50": quantiles[49] * 1000,
        "p99": quantiles[98] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per scenario (bound)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario (bound)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="0: the config's CPU default")
    args = parser.parse_args()

    with PostgresServer() as pg, tempfile.TemporaryDirectory() as tmp:
        url = pg.create_database("bench")
        migrate(url)
        settings = {"TASKBOARD_LOG_LEVEL": "WARNING"}
        if args.workers:
            settings["TASKBOARD_WORKERS"] = str(args.workers)
        log = Path(tmp) / "gunicorn.log"
        with GunicornServer(url, log, stop_timeout=30, **settings) as server:
            port = server.port
            # seed: the listing returns a full default page (20 tasks)
            seed = json.dumps({"title": "seed task", "notes": "benchmark"}).encode()
            run_scenario(port, "POST", "/api/tasks", seed, 100, 30, 2)
            # warm every worker's pool
            run_scenario(port, "GET", "/api/tasks", None, 200, 10, args.concurrency)

            scenarios = [
                ("list (GET /api/tasks)", "GET", "/api/tasks", None),
                ("list done=false&limit=100", "GET", "/api/tasks?done=false&limit=100", None),
                (
                    "create (POST /api/tasks)",
                    "POST",
                    "/api/tasks",
                    json.dumps({"title": "benchmark task", "notes": "n" * 100}).encode(),
                ),
                ("healthz (no database)", "GET", "/healthz", None),
            ]
            workers = args.workers or "cpu default"
            print(
                f"taskboard bench: gunicorn workers={workers}, client threads="
                f"{args.concurrency}, bound {args.requests} requests or {args.seconds:.0f}s"
                f" per scenario, PostgreSQL {pg.bindir.parent.name}, {os.cpu_count()} CPUs"
            )
            header = (
                f"| {'scenario':<28} | {'requests':>8} | {'errors':>6} | {'req/s':>8} |"
                f" {'p50 ms':>7} | {'p99 ms':>7} |"
            )
            print(header)
            print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
            for name, method, path, body in scenarios:
                r = run_scenario(
                    port, method, path, body, args.requests, args.seconds, args.concurrency
                )
                print(
                    f"| {name:<28} | {r['requests']:>8} | {r['errors']:>6} | {r['rps']:>8.1f} |"
                    f" {r['p50']:>7.2f} | {r['p99']:>7.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
