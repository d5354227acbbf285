"""Operations endpoints: /healthz (liveness), /readyz (deploy gate), /version."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from taskboard import migrations
from taskboard.db import get_db

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    # Liveness: the process answers. Never touches the database, so a brief
    # database outage does not take the whole fleet out of the target group.
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    try:
        with get_db().engine.connect() as conn:
            current, head = migrations.revisions(conn)
    except SQLAlchemyError as exc:
        log.warning("not ready: database unreachable (%s)", type(exc.__cause__ or exc).__name__)
        return _not_ready("database unreachable")
    if current != head:
        return _not_ready(f"database schema at {current or 'nothing'}, expected {head}")
    return jsonify({"status": "ready", "revision": current})


def _not_ready(reason: str) -> tuple[Response, int]:
    return jsonify({"status": "unavailable", "reason": reason}), 503


@bp.get("/version")
def version() -> Response:
    settings = current_app.config["TASKBOARD_SETTINGS"]
    return jsonify(
        {"version": settings.release, "commit": settings.git_commit, "hostname": settings.hostname}
    )
