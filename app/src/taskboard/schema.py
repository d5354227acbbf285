"""One definition of the API's inputs and outputs.

The same objects validate requests and produce the OpenAPI document's
schemas, so the document cannot drift from what the code accepts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from taskboard.models import NOTES_MAX, TITLE_MAX

MAX_ID = 2_147_483_647  # PostgreSQL integer
MAX_OFFSET = 1_000_000_000
PAGE_MAX = 100
PAGE_DEFAULT = 20


class ApiError(Exception):
    """An error answered as {"error": {"status", "message", "field"}}."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _check_text(value: str, name: str) -> None:
    if "\x00" in value:
        raise ApiError(422, f"{name} must not contain NUL characters", name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{name} must be valid Unicode text", name) from None


@dataclass(frozen=True)
class Text:
    name: str
    max_len: int
    required: bool = False
    nullable: bool = False
    trim: bool = False
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": ["string", "null"] if self.nullable else "string",
            "maxLength": self.max_len,
            "description": self.description,
            # no NUL character (PostgreSQL text cannot hold it)
            "pattern": r"^[^\u0000]*$",
        }
        if self.trim:
            schema["minLength"] = 1
            # and at least one character that whitespace trimming keeps
            schema["pattern"] = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
        return schema

    def parse(self, value: Any) -> str | None:
        if value is None:
            if self.nullable:
                return None
            raise ApiError(422, f"{self.name} must be a string, not null", self.name)
        if not isinstance(value, str):
            raise ApiError(422, f"{self.name} must be a string", self.name)
        _check_text(value, self.name)
        if self.trim:
            value = value.strip()
            if not value:
                raise ApiError(422, f"{self.name} must not be blank", self.name)
        if len(value) > self.max_len:
            raise ApiError(422, f"{self.name} must be at most {self.max_len} characters", self.name)
        return value


@dataclass(frozen=True)
class Bool:
    name: str
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean", "description": self.description}

    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ApiError(422, f"{self.name} must be true or false", self.name)
        return value


Field = Text | Bool

TITLE = Text(
    "title",
    TITLE_MAX,
    required=True,
    trim=True,
    description=f"1 to {TITLE_MAX} characters once surrounding whitespace is trimmed",
)
NOTES = Text("notes", NOTES_MAX, nullable=True, description=f"free text, at most {NOTES_MAX}")
DONE = Bool("done", description="whether the task is complete")


@dataclass(frozen=True)
class Body:
    """A JSON object body with a closed set of fields."""

    name: str
    fields: tuple[Field, ...]
    required: tuple[str, ...] = ()
    min_fields: int = 0

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.json_schema() for f in self.fields},
        }
        if self.required:
            schema["required"] = list(self.required)
        if self.min_fields:
            schema["minProperties"] = self.min_fields
        return schema

    def parse(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", None)
        known = {f.name: f for f in self.fields}
        for key in data:
            if key not in known:
                raise ApiError(422, f"unknown field {key!r}", str(key))
        for name in self.required:
            if name not in data:
                raise ApiError(422, f"{name} is required", name)
        if len(data) < self.min_fields:
            raise ApiError(422, "give at least one field to change", None)
        return {key: known[key].parse(value) for key, value in data.items()}


TASK_CREATE = Body("TaskCreate", (TITLE, NOTES, DONE), required=("title",))
TASK_UPDATE = Body("TaskUpdate", (TITLE, NOTES, DONE), min_fields=1)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ApiError(400, f"duplicate field {key!r}", key)
            result[key] = value
        return result

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text", None) from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply", None) from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", None) from None
    if isinstance(value, float) and not math.isfinite(value):  # pragma: no cover
        raise ApiError(400, "the body is not valid JSON", None)
    return value


# --- query and path parameters ---------------------------------------------


@dataclass(frozen=True)
class IntParam:
    name: str
    minimum: int
    maximum: int
    default: int | None = None
    where: str = "query"
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.default is not None:
            schema["default"] = self.default
        return schema

    def parse(self, raw: str | None, status: int = 400) -> int | None:
        if raw is None:
            return self.default
        text = raw.strip()
        # digits only: no signs, spaces, underscores or non-ASCII digits
        body = text[1:] if text.startswith("-") else text
        if not body or not body.isascii() or not body.isdigit() or len(body) > 12:
            raise ApiError(
                status,
                f"{self.name} must be an integer from {self.minimum} to {self.maximum}",
                self.name,
            )
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            raise ApiError(
                status,
                f"{self.name} must be an integer from {self.minimum} to {self.maximum}",
                self.name,
            )
        return value


@dataclass(frozen=True)
class BoolParam:
    name: str
    where: str = "query"
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def parse(self, raw: str | None) -> bool | None:
        if raw is None:
            return None
        value = raw.strip().lower()
        if value == "true":
            return True
        if value == "false":
            return False
        raise ApiError(400, f"{self.name} must be true or false", self.name)


@dataclass(frozen=True)
class ChoiceParam:
    name: str
    choices: tuple[str, ...]
    default: str
    where: str = "query"
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices), "default": self.default}

    def parse(self, raw: str | None) -> str:
        if raw is None:
            return self.default
        value = raw.strip().lower()
        if value not in self.choices:
            raise ApiError(400, f"{self.name} must be one of {', '.join(self.choices)}", self.name)
        return value


Param = IntParam | BoolParam | ChoiceParam

TASK_ID = IntParam("id", 1, MAX_ID, where="path", description="the task's id")
LIMIT = IntParam("limit", 1, PAGE_MAX, PAGE_DEFAULT, description="page size")
OFFSET = IntParam("offset", 0, MAX_OFFSET, 0, description="tasks to skip")
DONE_FILTER = BoolParam("done", description="only done (true) or open (false) tasks")
ORDER = ChoiceParam(
    "order", ("asc", "desc"), "asc", description="by id: oldest first (asc) or newest first (desc)"
)
LIST_PARAMS: tuple[Param, ...] = (LIMIT, OFFSET, DONE_FILTER, ORDER)


def parse_query(args: Any, params: tuple[Param, ...]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    for key in args:
        if key not in known:
            raise ApiError(400, f"unknown query parameter {key!r}", key)
        if len(args.getlist(key)) > 1:
            raise ApiError(400, f"{key} given more than once", key)
    return {name: p.parse(args.get(name)) for name, p in known.items()}


# --- response schemas -------------------------------------------------------

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "title", "notes", "done", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
        "notes": {"type": ["string", "null"], "maxLength": NOTES_MAX},
        "done": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

TASK_LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items", "total", "limit", "offset"],
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        "total": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
        "offset": {"type": "integer", "minimum": 0},
    },
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "message", "field"],
            "properties": {
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}
