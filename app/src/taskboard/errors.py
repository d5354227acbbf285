"""Every error is JSON: {"error": {"status": N, "message": "...", "field": ...}}."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from taskboard.schema import ApiError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": {"status": status, "message": message, "field": field}})
    response.status_code = status
    return response


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _is_unmigrated(exc: BaseException) -> bool:
    """The schema is not there yet (migrations not run): not the client's fault."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "pgcode", None) == "42P01":  # undefined_table
        return True
    return "no such table" in str(orig or "")  # SQLite


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.field)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        messages = {
            404: "no such resource",
            405: "method not allowed here",
            413: "the body is too large",
        }
        response = error_response(status, messages.get(status, exc.description or exc.name))
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
        return response

    @app.errorhandler(SQLAlchemyError)
    def _db_error(exc: SQLAlchemyError) -> Response:
        if isinstance(exc, StaleDataError):
            # deleted by another request between our read and our write
            return error_response(409, "the task was changed or deleted meanwhile; retry", "id")
        if _is_unmigrated(exc):
            log.error("database schema missing: run taskboard-migrate upgrade")
            response = error_response(503, "the database schema is not ready; retry shortly")
            response.headers["Retry-After"] = "5"
            return response
        if _is_outage(exc):
            log.warning("database unavailable: %s", type(exc.__cause__ or exc).__name__)
            response = error_response(503, "the database is unavailable; retry shortly")
            response.headers["Retry-After"] = "2"
            return response
        log.exception("database error")
        return error_response(500, "internal error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal error")
