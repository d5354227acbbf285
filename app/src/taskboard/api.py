"""/api/tasks: list, create, read, update, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from sqlalchemy import func, select

from taskboard.db import session
from taskboard.models import Task
from taskboard.schema import (
    LIST_PARAMS,
    TASK_CREATE,
    TASK_ID,
    TASK_UPDATE,
    ApiError,
    Body,
    decode_json,
    parse_query,
)

bp = Blueprint("api", __name__, url_prefix="/api")


def _json_body(body: Body) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "send the body as application/json", None)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, f"the body is larger than {limit} bytes", None)
    if length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # No Content-Length: the server (gunicorn) ends the chunked stream;
        # read one byte past the limit to tell "too large" from "just fits".
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes", None)
    else:
        raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    return body.parse(decode_json(raw))


def _task_or_404(raw_id: str) -> Task:
    task_id = TASK_ID.parse(raw_id)
    task = session().get(Task, task_id)
    if task is None:
        raise ApiError(404, f"no task with id {task_id}", "id")
    return task


@bp.get("/tasks")
def list_tasks() -> Response:
    query = parse_query(request.args, LIST_PARAMS)
    stmt = select(Task)
    count = select(func.count()).select_from(Task)
    if query["done"] is not None:
        stmt = stmt.where(Task.done == query["done"])
        count = count.where(Task.done == query["done"])
    db = session()
    total = db.scalar(count) or 0
    order = Task.id.desc() if query["order"] == "desc" else Task.id.asc()
    rows = db.scalars(stmt.order_by(order).limit(query["limit"]).offset(query["offset"]))
    return jsonify(
        {
            "items": [task.to_dict() for task in rows],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }
    )


@bp.post("/tasks")
def create_task() -> tuple[Response, int, dict[str, str]]:
    parse_query(request.args, ())
    data = _json_body(TASK_CREATE)
    task = Task(title=data["title"], notes=data.get("notes"), done=data.get("done", False))
    db = session()
    db.add(task)
    db.commit()
    location = url_for("api.get_task", task_id=task.id)
    return jsonify(task.to_dict()), 201, {"Location": location}


@bp.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response:
    parse_query(request.args, ())
    return jsonify(_task_or_404(task_id).to_dict())


@bp.patch("/tasks/<task_id>")
def update_task(task_id: str) -> Response:
    parse_query(request.args, ())
    # validate the id and the body before touching anything
    TASK_ID.parse(task_id)
    data = _json_body(TASK_UPDATE)
    task = _task_or_404(task_id)
    for key, value in data.items():
        setattr(task, key, value)
    session().commit()
    return jsonify(task.to_dict())


@bp.delete("/tasks/<task_id>")
def delete_task(task_id: str) -> Response:
    parse_query(request.args, ())
    task = _task_or_404(task_id)
    db = session()
    db.delete(task)
    db.commit()
    return Response(status=204)
