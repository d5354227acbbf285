"""A body the service refuses is still read, so the connection ends cleanly.

gunicorn's sync workers close the connection after every response. When the
service answers without reading the request's body (413: larger than the
limit; or any answer that never needed the body), closing a socket with
unread bytes makes the kernel send a reset, and a proxy still sending the
body (nginx, an ALB, HAProxy) turns that into a 502 or a dropped
connection. So the service reads what is left of a body, up to a bound,
before it answers; the client then gets the answer and an orderly close,
every time.

Against gunicorn with the release's configuration and a real PostgreSQL.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest
from gunicornserver import GunicornServer

LIMIT = 64 * 1024
BIG = 200 * 1024  # over the limit, under the web tier's 1 MiB of earlier releases
TIMES = 60


def exchange(port: int, head: bytes, body: bytes, chunked: bool = False) -> tuple[str, bytes]:
    """Send the whole request as a proxy does (headers, then every byte of
    the body), then read the answer to the end: (status or the error that
    ended the exchange, the answer's body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            # the service may answer from the headers alone: a proxy's body
            # is still on its way then
            time.sleep(0.02)
            if chunked:
                for at in range(0, len(body), 16384):
                    part = body[at : at + 16384]
                    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError) as exc:
            return type(exc).__name__, b""
    status_line, _, rest = data.partition(b"\r\n")
    return status_line.decode().split(" ", 2)[1], rest.partition(b"\r\n\r\n")[2]


def request_head(method: str, path: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: taskboard\r\nContent-Type: application/json\r\n"
        f"{size}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def service(pg_migrated_url, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with GunicornServer(
        pg_migrated_url, log, TASKBOARD_WORKERS="2", TASKBOARD_MAX_BODY_BYTES=str(LIMIT)
    ) as server:
        yield server


BODY = json.dumps({"title": "x", "notes": "n" * BIG}).encode()


@pytest.mark.parametrize(
    ("method", "path", "chunked", "status"),
    [
        ("POST", "/api/tasks", False, "413"),
        ("POST", "/api/tasks", True, "413"),
        ("PATCH", "/api/tasks/1", False, "413"),
        # answers that never needed the body
        ("POST", "/api/nowhere", False, "404"),
        ("PUT", "/api/tasks", False, "405"),
        ("POST", "/version", False, "405"),
    ],
)
def test_every_refused_body_gets_its_answer_and_a_clean_close(
    service, method, path, chunked, status
):
    outcomes = Counter()
    for _ in range(TIMES):
        got, body = exchange(
            service.port, request_head(method, path, None if chunked else len(BODY)), BODY, chunked
        )
        outcomes[got] += 1
        if got == status:
            assert json.loads(body)["error"]["status"] == int(status)
    assert outcomes == {status: TIMES}, outcomes


def test_a_body_within_the_limit_still_lands(service):
    # JSON's whitespace brings a valid task up to the limit
    body = b'{"title": "fits"' + b" " * (LIMIT - 17) + b"}"
    assert len(body) == LIMIT
    got, answer = exchange(service.port, request_head("POST", "/api/tasks", len(body)), body)
    assert got == "201", answer
    assert json.loads(answer)["title"] == "fits"
