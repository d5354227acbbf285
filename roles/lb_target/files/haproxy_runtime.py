"""HAProxy runtime API helper of the lb_target role (runs in the balancer).

    haproxy_runtime.py SOCKET state BACKEND SERVER          JSON of the server's row
    haproxy_runtime.py SOCKET all BACKEND                   JSON list of every server's row
    haproxy_runtime.py SOCKET set BACKEND SERVER STATE      ready | drain | maint
    haproxy_runtime.py SOCKET wait-idle BACKEND SERVER SECS waits until no session (or SECS)
    haproxy_runtime.py SOCKET enter BACKEND SERVER SECS     back in service as a target group
        takes a target (no request until the health check passed its threshold);
        waits until UP, exit 1 after SECS
    haproxy_runtime.py SOCKET add BACKEND SERVER ADDR:PORT [KEYWORD ...]
        a server added at run time, in maintenance, its health check on when the
        keywords say check; nothing when it exists
    haproxy_runtime.py SOCKET del BACKEND SERVER SECS       removes a server in maintenance
        (its last connections get up to SECS)
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


def find(path: str, backend: str, server: str) -> dict[str, str] | None:
    return next((r for r in rows(path, backend) if r["svname"] == server), None)


def row(path: str, backend: str, server: str) -> dict[str, str]:
    r = find(path, backend, server)
    if r is None:
        sys.exit(f"haproxy: no server {backend}/{server}")
    return r


def add(path: str, backend: str, server: str, address: str, keywords: list[str]) -> int:
    """A server added at run time, as a target registered with a target group:
    created in maintenance, its health checks on, put in service by `set ...
    ready` (the role's `in`). Already there: nothing changes."""
    found = find(path, backend, server)
    if found is not None:
        print(json.dumps({"changed": False, "row": found}))
        return 0
    command = " ".join(["add server", f"{backend}/{server}", address, *keywords])
    answer = ask(path, command).strip()
    if "New server registered" not in answer:
        sys.exit(f"haproxy: {command}: {answer}")
    if "check" in keywords:
        answer = ask(path, f"enable health {backend}/{server}").strip()
        if answer:
            sys.exit(f"haproxy: enable health {backend}/{server}: {answer}")
    print(json.dumps({"changed": True, "row": row(path, backend, server)}))
    return 0


def delete(path: str, backend: str, server: str, seconds: float) -> int:
    """Remove a server that is in maintenance (a deregistered target). HAProxy
    refuses while connections are attached: they get up to `seconds`, then
    what is left is shut (as an ALB closes them after the deregistration
    delay)."""
    if find(path, backend, server) is None:
        print(json.dumps({"changed": False}))
        return 0
    limit = time.monotonic() + seconds
    shut = False
    while True:
        answer = ask(path, f"del server {backend}/{server}").strip()
        if "Server deleted" in answer:
            print(json.dumps({"changed": True, **({"shut": True} if shut else {})}))
            return 0
        if shut:
            sys.exit(f"haproxy: del server {backend}/{server}: {answer}")
        if time.monotonic() >= limit:
            ask(path, f"shutdown sessions server {backend}/{server}")
            shut = True
        else:
            time.sleep(0.5)


def enter(path: str, backend: str, server: str, seconds: float) -> int:
    """Put a server back in service the way a target group takes a target:
    HAProxy would count a server leaving maintenance as up at once, before
    any check; here it leaves maintenance with weight 0 and its health
    forced down, so it gets no request until `rise` checks passed, then its
    weight back. A server that is draining just goes back to ready."""
    before = row(path, backend, server)
    start = time.monotonic()
    if before["status"].startswith("MAINT"):
        b_s = f"{backend}/{server}"
        answer = ask(
            path, f"set weight {b_s} 0; set server {b_s} state ready; set server {b_s} health down"
        ).strip()
        if answer:
            sys.exit(f"haproxy: putting {b_s} back: {answer}")
    elif before["status"] != "UP":
        ask(path, f"set server {backend}/{server} state ready")
    limit = start + seconds
    while True:
        r = row(path, backend, server)
        if r["status"] == "UP" or time.monotonic() >= limit:
            break
        time.sleep(0.5)
    if r["status"] == "UP" and r["weight"] == "0":
        ask(path, f"set weight {backend}/{server} 100%")
        r = row(path, backend, server)
    r["waited"] = round(time.monotonic() - start, 1)
    print(json.dumps({"changed": before["status"] != "UP", "before": before, "after": r}))
    return 0 if r["status"] == "UP" else 1


def main(argv: list[str]) -> int:
    path, action, backend = argv[0], argv[1], argv[2]
    if action == "all":
        print(json.dumps(rows(path, backend)))
        return 0
    server = argv[3]
    if action == "add":
        return add(path, backend, server, argv[4], argv[5:])
    if action == "del":
        return delete(path, backend, server, float(argv[4]))
    if action == "enter":
        return enter(path, backend, server, float(argv[4]))
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
    if action != "wait-idle":
        sys.exit(f"haproxy_runtime: unknown action {action}")
    limit = time.monotonic() + float(argv[4])
    start = time.monotonic()
    while True:
        r = row(path, backend, server)
        if r["scur"] == "0" or time.monotonic() >= limit:
            r["waited"] = round(time.monotonic() - start, 1)
            print(json.dumps(r))
            return 0
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
