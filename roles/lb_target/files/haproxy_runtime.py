"""HAProxy runtime API helper of the lb_target role (runs in the balancer).

    haproxy_runtime.py SOCKET state BACKEND SERVER          -> JSON of the server's row
    haproxy_runtime.py SOCKET set BACKEND SERVER STATE      -> ready | drain | maint
    haproxy_runtime.py SOCKET wait-idle BACKEND SERVER SECS -> waits until no session (or SECS)
    haproxy_runtime.py SOCKET wait-up BACKEND SERVER SECS   -> waits until UP (exit 1 on timeout)
    haproxy_runtime.py SOCKET all BACKEND                   -> JSON list of every server's row
Standard library only: it runs with the balancer image's python3.
"""

import csv
import json
import socket
import sys
import time


def ask(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def rows(path: str, backend: str) -> list[dict[str, str]]:
    text = ask(path, "show stat").lstrip("# ")
    keep = ("pxname", "svname", "status", "scur", "check_status", "check_code", "lastchg", "weight")
    return [
        {k: r.get(k, "") for k in keep}
        for r in csv.DictReader(text.splitlines())
        if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
    ]


def row(path: str, backend: str, server: str) -> dict[str, str]:
    for r in rows(path, backend):
        if r["svname"] == server:
            return r
    sys.exit(f"haproxy: no server {backend}/{server}")


def main(argv: list[str]) -> int:
    path, action, backend = argv[0], argv[1], argv[2]
    if action == "all":
        print(json.dumps(rows(path, backend)))
        return 0
    server = argv[3]
    if action == "state":
        print(json.dumps(row(path, backend, server)))
        return 0
    if action == "set":
        before = row(path, backend, server)
        answer = ask(path, f"set server {backend}/{server} state {argv[4]}").strip()
        if answer:
            sys.exit(f"haproxy: set server {backend}/{server} state {argv[4]}: {answer}")
        print(json.dumps({"before": before, "after": row(path, backend, server)}))
        return 0
    limit = time.monotonic() + float(argv[4])
    start = time.monotonic()
    while True:
        r = row(path, backend, server)
        done = r["scur"] == "0" if action == "wait-idle" else r["status"] == "UP"
        if done or time.monotonic() >= limit:
            r["waited"] = round(time.monotonic() - start, 1)
            print(json.dumps(r))
            return 0 if done or action == "wait-idle" else 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
