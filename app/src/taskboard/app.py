"""The application factory."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Mapping

from flask import Flask, Response, g, jsonify, request, send_from_directory
from werkzeug.middleware.proxy_fix import ProxyFix

from taskboard import api, db, errors, logs, metrics, openapi, ops
from taskboard.config import Settings

log = logging.getLogger("taskboard")
access_log = logging.getLogger("taskboard.access")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = ("index.html", "app.js", "style.css")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# How much of a request's unread body is read before the answer, as a
# multiple of the body limit (1 MiB at the default 64 KiB): see _drain_body.
DRAIN_FACTOR = 16


def _drain_body(limit: int) -> None:
    """Read what is left of the request's body, at most ``limit`` bytes.

    gunicorn's sync workers close the connection after each answer, and a
    socket closed with unread bytes sends a reset: a proxy still sending
    the body (nginx, the load balancers) then answers 502 or drops the
    connection instead of passing on the 413 (or 404, 405...) that was
    given without reading it. Bodies the web tier lets through are far
    below ``limit``; a larger one is left to gunicorn's own lingering close.
    """
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    left = limit
    try:
        while left > 0:
            chunk = stream.read(min(65536, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):  # the client went away, or bad chunked framing
        return


def create_app(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from ``settings`` or else from the environment (``env``)."""
    app = Flask("taskboard", static_folder=None)
    if settings is None:
        settings = Settings.from_env(env, instance_path=app.instance_path)
    if settings.database_source == "default":
        os.makedirs(app.instance_path, exist_ok=True)
    logs.configure(settings.log_level)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        TASKBOARD_SETTINGS=settings,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    # outermost WSGI layer (the metrics port answers /metrics only); its
    # timer starts before the other request hooks
    metrics.init_app(app, settings)
    db.init_app(app, settings)
    errors.register(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    spec = openapi.document(settings.release)

    @app.get("/api/openapi.json")
    def openapi_json() -> Response:
        return jsonify(spec)

    if settings.serve_static:
        _register_static(app)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        _drain_body(DRAIN_FACTOR * settings.max_body_bytes)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz", "/version"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.path != "/healthz" or response.status_code != 200:
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": logs.monotonic_ms(g.get("started", time.perf_counter())),
                    "remote_addr": request.remote_addr,
                },
            )
        return response

    log.info(
        "taskboard started",
        extra={
            "release": settings.release,
            "commit": settings.git_commit,
            "database": settings.database_url.get_backend_name(),
            "database_source": settings.database_source,
            "development": settings.development,
            "proxy_hops": settings.proxy_hops,
        },
    )
    return app


def _register_static(app: Flask) -> None:
    """The web page, only in the run-alone mode (nginx serves it in the fleet)."""

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC_DIR, "index.html", max_age=0)

    @app.get("/<any(" + ", ".join(f'"{f}"' for f in STATIC_FILES[1:]) + "):name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC_DIR, name, max_age=0)
