"""The OpenAPI 3.1 document, built from the schema objects the API validates with."""

from __future__ import annotations

from typing import Any

from taskboard.schema import (
    ERROR_SCHEMA,
    LIST_PARAMS,
    TASK_CREATE,
    TASK_ID,
    TASK_LIST_SCHEMA,
    TASK_SCHEMA,
    TASK_UPDATE,
    Param,
)

ERR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERR}}}


def _json(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "required": p.where == "path",
        "description": p.description,
        "schema": p.json_schema(),
    }


# What the public URL adds to the app's own answers: the web tier's nginx
# answers in the same form when the app tier does not (roles/nginx_web).
EDGE = {
    "502": _error("the web tier could not reach the app tier; retry"),
    "504": _error("the app tier did not answer the web tier in time; retry"),
}
COMMON = {
    "400": _error("bad request: malformed JSON, not an object, bad parameter"),
    "503": _error("the database is unavailable; retry"),
    **EDGE,
}
BODY_ERRORS = {
    "413": _error("the body is larger than the configured limit"),
    "415": _error("the body is not application/json"),
    "422": _error("a field is missing, unknown, of the wrong type or out of bounds"),
}


def _body(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def document(version: str) -> dict[str, Any]:
    task_id = _param(TASK_ID)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskboard",
            "version": version,
            "description": "A small tasks API. Every error is JSON "
            '{"error": {"status", "message", "field"}}.',
        },
        "paths": {
            "/api/tasks": {
                "get": {
                    "operationId": "listTasks",
                    "summary": "list tasks, oldest first",
                    "parameters": [_param(p) for p in LIST_PARAMS],
                    "responses": {"200": _json("a page of tasks", "TaskList"), **COMMON},
                },
                "post": {
                    "operationId": "createTask",
                    "summary": "create a task",
                    "requestBody": _body(TASK_CREATE.name),
                    "responses": {
                        "201": {
                            **_json("the created task", "Task"),
                            "headers": {
                                "Location": {
                                    "description": "the task's URL",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        **COMMON,
                        **BODY_ERRORS,
                    },
                },
            },
            "/api/tasks/{id}": {
                "parameters": [task_id],
                "get": {
                    "operationId": "getTask",
                    "summary": "read a task",
                    "responses": {
                        "200": _json("the task", "Task"),
                        "404": _error("no such task"),
                        **COMMON,
                    },
                },
                "patch": {
                    "operationId": "updateTask",
                    "summary": "change some fields of a task",
                    "requestBody": _body(TASK_UPDATE.name),
                    "responses": {
                        "200": _json("the updated task", "Task"),
                        "404": _error("no such task"),
                        "409": _error("deleted by another request meanwhile; retry"),
                        **COMMON,
                        **BODY_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "deleteTask",
                    "summary": "delete a task",
                    "responses": {
                        "204": {"description": "deleted"},
                        "404": _error("no such task"),
                        **COMMON,
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "liveness (never touches the database)",
                    "responses": {
                        "200": _json("alive", "Health"),
                        # the web tier's own, at the public URL
                        "503": _json("the web tier has no app tier to send to yet", "Health"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "readiness: database reachable, schema at head",
                    "responses": {
                        "200": _json("ready", "Ready"),
                        "503": _json("not ready, with the reason", "Ready"),
                        **EDGE,
                    },
                }
            },
            "/version": {
                "get": {
                    "operationId": "version",
                    "summary": "release, commit and host",
                    "responses": {"200": _json("the running release", "Version"), **EDGE},
                }
            },
        },
        "components": {
            "schemas": {
                "Task": TASK_SCHEMA,
                "TaskList": TASK_LIST_SCHEMA,
                TASK_CREATE.name: TASK_CREATE.json_schema(),
                TASK_UPDATE.name: TASK_UPDATE.json_schema(),
                "Error": ERROR_SCHEMA,
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        # "upstream not set": the web tier's 503 (its first boot)
                        "status": {"enum": ["ok", "upstream not set"]},
                    },
                },
                "Ready": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"enum": ["ready", "unavailable"]},
                        "revision": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                    },
                },
                "Version": {
                    "type": "object",
                    "required": ["version", "commit", "hostname"],
                    "properties": {
                        "version": {"type": "string"},
                        "commit": {"type": "string"},
                        "hostname": {"type": "string"},
                    },
                },
            }
        },
    }
