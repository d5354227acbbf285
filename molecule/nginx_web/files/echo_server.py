#!/usr/bin/env python3
"""Upstream stand-in for the nginx_web scenario: a real HTTP/1.1 server that
answers every request with JSON describing it (method, path, headers, how many
requests its connection has carried), so the verifier can see exactly what
nginx sends to the app tier.

    echo_server.py PORT

GET /api/status/<code> answers <code> with an app-style JSON error body (to
prove nginx passes the app's own errors through untouched).
"""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"

    def setup(self) -> None:
        super().setup()
        self.requests_on_connection = 0

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    # nginx refuses TRACE itself and passes the refusal to the app tier on
    # its paths (verify.yml sees it arrive)
    def do_TRACE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.requests_on_connection += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = 200
        match = re.fullmatch(r"/api/status/([1-5][0-9][0-9])", self.path)
        if match:
            status = int(match.group(1))
        payload = {
            "echo": True,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): ", ".join(self.headers.get_all(k)) for k in self.headers},
            "server_port": self.server.server_address[1],
            "connection_requests": self.requests_on_connection,
            "body_length": len(body),
        }
        if status >= 400:
            payload["error"] = {"status": status, "message": "from the upstream", "field": None}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # headers nginx must replace with its own
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("X-Request-ID", "from-upstream")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


def main() -> None:
    port = int(sys.argv[1])
    ThreadingHTTPServer.daemon_threads = True
    # the scenario's private network only: nginx reaches it by container name
    server = ThreadingHTTPServer(("0.0.0.0", port), Echo)  # noqa: S104
    server.serve_forever()


if __name__ == "__main__":
    main()
