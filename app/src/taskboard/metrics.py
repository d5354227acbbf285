"""Application metrics in the Prometheus text format, on a port of their own.

Every request the service port answers is counted and timed by route (the
URL rule, e.g. ``/api/tasks/<task_id>``, never the raw path: unrouted paths
share ``<unmatched>``), method and status:

- ``taskboard_http_requests_total`` (counter)
- ``taskboard_http_request_duration_seconds`` (histogram)

``/metrics`` is answered only on ``TASKBOARD_METRICS_PORT`` (gunicorn listens
there too, see :mod:`taskboard.gunicorn_conf`), and only ``/metrics`` is
answered there. Which listener a request came through is read from the
accepted socket (gunicorn), not from the Host header, so a client of the
service port cannot reach the metrics by naming the other port.

Several gunicorn workers: with ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn
configuration sets it to a per-service directory, emptied at start), every
worker writes its values to files there and ``/metrics`` sums them over all
workers, so counts add up whichever worker answers the scrape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from taskboard.config import Settings

UNMATCHED = "<unmatched>"
EXT_KEY = "taskboard.metrics"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Metrics:
    """The metric families of one app and the registry ``/metrics`` renders."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        self.registry = CollectorRegistry()
        if multiprocess_dir:
            # Values go to files in the directory whatever the import order was
            # (prometheus_client picks its value class when first imported).
            if values.ValueClass.__name__ != "MmapedValue":
                values.ValueClass = values.MultiProcessValue()
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            owner = None  # the collector reads the files of every worker
        else:
            owner = self.registry
        labels = ("method", "route", "status")
        self.requests = Counter(
            "taskboard_http_requests",
            "HTTP requests answered, by route (URL rule), method and status.",
            labels,
            registry=owner,
        )
        self.duration = Histogram(
            "taskboard_http_request_duration_seconds",
            "Time to answer an HTTP request, by route (URL rule), method and status.",
            labels,
            registry=owner,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests.labels(*key).inc()
        self.duration.labels(*key).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def local_port(environ: dict[str, Any]) -> int | None:
    """The port of the listener the request came through.

    Under gunicorn, the accepted socket's own address; elsewhere (the test
    client, other servers) the WSGI ``SERVER_PORT``.
    """
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            name = sock.getsockname()
        except OSError:
            return None
        if isinstance(name, tuple) and len(name) >= 2:
            return int(name[1])
        return None  # a UNIX socket: never the metrics listener
    try:
        return int(environ.get("SERVER_PORT", ""))
    except ValueError:
        return None


class MetricsPortDispatcher:
    """Outermost WSGI layer: the metrics port serves /metrics only."""

    def __init__(self, app: WSGIApp, metrics: Metrics, port: int) -> None:
        self.app = app
        self.metrics = metrics
        self.port = port

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if local_port(environ) != self.port:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("PATH_INFO", "") != "/metrics":
            return _json_error(start_response, 404, "no such resource")
        if method not in ("GET", "HEAD"):
            return _json_error(start_response, 405, "method not allowed here", allow="GET, HEAD")
        body = self.metrics.render()
        start_response(
            "200 OK",
            [
                ("Content-Type", CONTENT_TYPE_LATEST),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [b""] if method == "HEAD" else [body]


def _json_error(start_response: Callable[..., Any], status: int, message: str, allow: str = ""):
    reason = {404: "NOT FOUND", 405: "METHOD NOT ALLOWED"}[status]
    error = {"error": {"status": status, "message": message, "field": None}}
    body = json.dumps(error, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if allow:
        headers.append(("Allow", allow))
    start_response(f"{status} {reason}", headers)
    return [body]


def init_app(app: Flask, settings: Settings) -> None:
    """Count and time every request; answer /metrics on the metrics port.

    Without a metrics port nothing is measured and /metrics is nowhere.
    """
    if not settings.metrics_port:
        return
    metrics = Metrics(settings.metrics_multiprocess_dir)
    app.extensions[EXT_KEY] = metrics

    @app.before_request
    def _metrics_start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _metrics_finish(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule
            route = rule.rule if rule is not None else UNMATCHED
            metrics.observe(
                request.method, route, response.status_code, time.perf_counter() - started
            )
        return response

    app.wsgi_app = MetricsPortDispatcher(  # type: ignore[method-assign]
        app.wsgi_app, metrics, settings.metrics_port
    )
