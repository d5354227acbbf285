"""The emulator's server side: a WSGI middleware around moto's dispatcher and
the background loop.

The middleware (emulator-only, nothing on AWS corresponds):

- answers the private endpoints under ``/_threetier/`` (the data plane's
  reports, the mode), never passing them to moto;
- holds the global lock (emulator_state.LOCK) for each API request, so the
  background loop never sees moto's state half-changed;
- turns moto's NotImplementedError (an action, or a parameter value, moto or
  the emulator lacks) into HTTP 501 with an AWS error body, code
  ``NotImplemented``, the service and action named. moto's server answers an
  HTML HTTP 500, which botocore reports as unparseable XML and retries.

The loop: one thread, a tick a second, under the same lock: draining
deadlines (with a data plane), then per Auto Scaling group the instance
refresh step, health checks and terminations (with a data plane) and the
capacity upkeep. It touches in-memory state only (no subprocess, no HTTP).
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from localaws import emulator_autoscaling, emulator_elbv2
from localaws.emulator_state import LOCK, data_plane, log

PRIVATE_PREFIX = "/_threetier/"
TICK_SECONDS = 1.0
#: Bodies up to this size are kept to name the action of a 501 (query protocol).
_BODY_LIMIT = 1 << 20
_JSON = "application/json"

StartResponse = Callable[..., Any]


# ---------------------------------------------------------------- the loop


def tick() -> None:
    """One tick of the background loop (under the lock)."""
    with LOCK:
        if data_plane():
            emulator_elbv2.expire_draining()
        emulator_autoscaling.tick()


class Loop(threading.Thread):
    """The background loop: :func:`tick` every TICK_SECONDS until stopped."""

    def __init__(self, interval: float = TICK_SECONDS) -> None:
        super().__init__(name="threetier-emulator-loop", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                tick()
            except Exception:  # the loop outlives any one failure; the log says what
                log("loop tick failed:\n" + traceback.format_exc())

    def stop(self) -> None:
        self.stopped.set()


_LOOP: list[Loop] = []


def start_loop() -> Loop:
    """Start the loop once per process."""
    if not _LOOP:
        loop = Loop()
        loop.start()
        _LOOP.append(loop)
        log(f"background loop started; data plane {'attached' if data_plane() else 'not attached'}")
    return _LOOP[0]


# ---------------------------------------------------------------- middleware


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _json(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    return _respond(start_response, status, json.dumps(payload).encode(), _JSON)


def _buffer_body(environ: dict[str, Any]) -> bytes | None:
    """Read the request's body before the lock is taken and put it back: a
    client that stalls mid-body (a paused instance behind the aws-api
    stand-in) then holds up its own request only, not every API call and
    the background loop behind the lock. Returns a small form body (the
    query protocol's Action=...) so that a 501 can name the action after
    moto consumed the stream; None otherwise."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    form = str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded")
    return body if form and length <= _BODY_LIMIT else None


def _service(environ: dict[str, Any]) -> str:
    """The signing name from the SigV4 credential scope (…/region/service/aws4_request)."""
    match = re.search(
        r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", "")
    )
    if match:
        return match.group(1)
    host = str(environ.get("HTTP_HOST", "")).split(":")[0]
    return host.split(".")[0] if host.endswith("amazonaws.com") else "unknown service"


def _action(environ: dict[str, Any], body: bytes | None, exc: BaseException) -> str:
    for source in (body.decode(errors="replace") if body else "", environ.get("QUERY_STRING", "")):
        values = parse_qs(source).get("Action")
        if values:
            return values[0]
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).split(".")[-1]
    match = re.search(r"The (\w+) action has not been implemented", str(exc))
    if match:
        return "".join(part.capitalize() for part in match.group(1).split("_"))
    return "(unknown action)"


def not_implemented(
    environ: dict[str, Any], body: bytes | None, exc: BaseException, start_response: StartResponse
) -> list[bytes]:
    """HTTP 501, an AWS error body in the request's protocol."""
    from moto import __version__ as moto_version

    service, action = _service(environ), _action(environ, body, exc)
    message = (
        f"{service} {action} is not implemented by the local AWS emulator (moto {moto_version})"
    )
    detail = str(exc).strip()
    if detail:
        message += f": {detail}"
    log(f"501 {service} {action}: {detail}")
    request_id = str(uuid.uuid4())
    code = "NotImplemented"
    status = "501 Not Implemented"
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if service == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return _respond(start_response, status, xml.encode(), "text/xml")
    if content_type.startswith("application/x-www-form-urlencoded") or service in (
        "route53",
        "cloudfront",
    ):
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
        return _respond(start_response, status, xml.encode(), "text/xml")
    if service in ("s3", "s3control"):
        xml = (
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return _respond(start_response, status, xml.encode(), "application/xml")
    payload = json.dumps({"__type": code, "message": message}).encode()
    return _respond(
        start_response,
        status,
        payload,
        "application/x-amz-json-1.1",
        [("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)],
    )


def private(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """``GET /_threetier/status`` and ``POST /_threetier/target-health``."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == PRIVATE_PREFIX + "status":
        if method != "GET":
            return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
        return _json(start_response, "200 OK", {"data_plane": data_plane()})
    if path == PRIVATE_PREFIX + "target-health":
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST"})
        if not data_plane():
            return _json(
                start_response,
                "409 Conflict",
                {"error": "no data plane attached (THREETIER_EMULATOR_DATA_PLANE is not set)"},
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            document = json.loads(environ["wsgi.input"].read(length) or b"{}")
            reports = document["reports"]
            if not isinstance(reports, list):
                raise TypeError("reports is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return _json(start_response, "400 Bad Request", {"error": f"bad report: {exc}"})
        with LOCK:
            accepted, ignored = emulator_elbv2.apply_reports(reports)
        return _json(start_response, "200 OK", {"accepted": accepted, "ignored": ignored})
    return _json(start_response, "404 Not Found", {"error": f"no such endpoint: {path}"})


class EmulatorApp:
    """The middleware around moto's WSGI application."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(PRIVATE_PREFIX):
            return private(environ, start_response)
        body = _buffer_body(environ)
        with LOCK:
            try:
                result = self.app(environ, start_response)
                # the whole body under the lock: moto's responses are built
                # before they are returned, this only closes the window
                try:
                    content = b"".join(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                return [content]
            except NotImplementedError as exc:
                return not_implemented(
                    environ, body, exc, _with_exc_info(start_response, sys.exc_info())
                )


def _with_exc_info(start_response: StartResponse, exc_info: Any) -> StartResponse:
    def call(status: str, headers: list[tuple[str, str]]) -> Any:
        return start_response(status, headers, exc_info)

    return call


def install() -> None:
    """Make moto.server's main() serve through :class:`EmulatorApp` and start
    the loop with its dispatcher."""
    import moto.server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(moto.server.DomainDispatcherApplication, "_threetier", False):
        return

    class ThreetierDispatcher(DomainDispatcherApplication):
        """moto's dispatcher behind the emulator's middleware."""

        _threetier = True

        def __init__(self, create_app: Any) -> None:
            super().__init__(create_app)
            self._emulator = EmulatorApp(super().__call__)
            start_loop()

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            return self._emulator(environ, start_response)

    moto.server.DomainDispatcherApplication = ThreetierDispatcher  # type: ignore[misc]
