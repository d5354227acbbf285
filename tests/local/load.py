"""A bounded load generator for the fleet tests: reads and writes through
the external balancer at a fixed rate, every answer recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    # (sent, answered, status) of every answer, on the monotonic clock
    answers: list[tuple[float, float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Load:
    """`rate` requests/s over `workers` threads until stop() or the bounds
    (max_seconds, max_requests). Every 5th request is a write (POST), every
    10th reads /version; the rest list tasks. `accept` lists the statuses
    that count as answered (not failed)."""

    def __init__(
        self,
        url: str,
        rate: float = 60,
        workers: int = 6,
        max_seconds: float = 600,
        max_requests: int = 60000,
        accept: tuple[int, ...] = (200, 201),
        timeout: float = 15,
    ):
        self.url, self.rate, self.workers = url, rate, workers
        self.max_seconds, self.max_requests, self.accept, self.timeout = (
            max_seconds,
            max_requests,
            accept,
            timeout,
        )
        self.result = Result()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counter = 0

    def _next(self) -> int | None:
        with self.result.lock:
            if self._counter >= self.max_requests:
                return None
            self._counter += 1
            return self._counter

    def _worker(self, wid: int) -> None:
        session = requests.Session()
        interval = self.workers / self.rate
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic() + wid * interval / self.workers
        while not self._stop.is_set() and time.monotonic() < deadline:
            n = self._next()
            if n is None:
                return
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
            t0 = time.monotonic()
            try:
                if n % 5 == 0:
                    r = session.post(
                        f"{self.url}/api/tasks",
                        json={"title": f"load {wid}-{n}"},
                        timeout=self.timeout,
                    )
                elif n % 10 == 1:
                    r = session.get(f"{self.url}/version", timeout=self.timeout)
                else:
                    r = session.get(f"{self.url}/api/tasks?limit=5", timeout=self.timeout)
                status, body = r.status_code, r
            except requests.RequestException as exc:
                with self.result.lock:
                    self.result.sent += 1
                    self.result.failures.append(f"#{n}: {type(exc).__name__}: {exc}")
                continue
            took = time.monotonic() - t0
            with self.result.lock:
                self.result.sent += 1
                self.result.latencies.append(took)
                self.result.answers.append((t0, t0 + took, status))
                self.result.statuses[status] = self.result.statuses.get(status, 0) + 1
                if status in self.accept:
                    self.result.ok += 1
                    if status == 201:
                        self.result.created.append(body.json()["id"])
                    elif n % 10 == 1 and status == 200:
                        self.result.versions.append(body.json().get("version", "?"))
                else:
                    self.result.failures.append(f"#{n}: HTTP {status} {body.text[:200]}")

    def start(self) -> Load:
        for wid in range(self.workers):
            t = threading.Thread(target=self._worker, args=(wid,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> Result:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        return self.result
