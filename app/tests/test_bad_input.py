"""Every bad input: a 4xx JSON error with a message and the field, and nothing changed."""

from __future__ import annotations

import json

import pytest
from conftest import BODY_LIMIT, table_rows

J = "application/json"


def raw(body: bytes | str, content_type: str | None = J) -> dict:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"data": body.encode() if isinstance(body, str) else body, "headers": headers}


def js(value: object) -> dict:
    return {"data": json.dumps(value), "headers": {"Content-Type": J}}


# (method, path, request kwargs, status, field)
CASES = {
    # the body itself
    "malformed JSON": ("post", "/api/tasks", raw('{"title": '), 400, None),
    "empty body": ("post", "/api/tasks", raw(""), 400, None),
    "trailing garbage": ("post", "/api/tasks", raw('{"title": "a"} x'), 400, None),
    "array body": ("post", "/api/tasks", js(["title"]), 400, None),
    "string body": ("post", "/api/tasks", js("title"), 400, None),
    "null body": ("post", "/api/tasks", js(None), 400, None),
    "NaN": ("post", "/api/tasks", raw('{"title": "a", "done": NaN}'), 400, None),
    "duplicate field": ("post", "/api/tasks", raw('{"title": "a", "title": "b"}'), 400, "title"),
    "not UTF-8": ("post", "/api/tasks", raw(b'{"title": "\xff\xfe"}'), 400, None),
    "nested too deep": ("post", "/api/tasks", raw("[" * 2000 + "]" * 2000), 400, None),
    # content type
    "text/plain": ("post", "/api/tasks", raw('{"title": "a"}', "text/plain"), 415, None),
    "no content type": ("post", "/api/tasks", raw('{"title": "a"}', None), 415, None),
    "form data": ("post", "/api/tasks", {"data": {"title": "a"}}, 415, None),
    "patch text/plain": ("patch", "/api/tasks/1", raw('{"done": true}', "text/plain"), 415, None),
    # fields
    "missing title": ("post", "/api/tasks", js({"notes": "n"}), 422, "title"),
    "empty object": ("post", "/api/tasks", js({}), 422, "title"),
    "blank title": ("post", "/api/tasks", js({"title": " \t\n "}), 422, "title"),
    "empty title": ("post", "/api/tasks", js({"title": ""}), 422, "title"),
    "null title": ("post", "/api/tasks", js({"title": None}), 422, "title"),
    "number title": ("post", "/api/tasks", js({"title": 42}), 422, "title"),
    "list title": ("post", "/api/tasks", js({"title": ["a"]}), 422, "title"),
    "title too long": ("post", "/api/tasks", js({"title": "x" * 201}), 422, "title"),
    "notes too long": ("post", "/api/tasks", js({"title": "a", "notes": "n" * 2001}), 422, "notes"),
    "number notes": ("post", "/api/tasks", js({"title": "a", "notes": 1}), 422, "notes"),
    "string done": ("post", "/api/tasks", js({"title": "a", "done": "true"}), 422, "done"),
    "number done": ("post", "/api/tasks", js({"title": "a", "done": 1}), 422, "done"),
    "null done": ("post", "/api/tasks", js({"title": "a", "done": None}), 422, "done"),
    "unknown field": ("post", "/api/tasks", js({"title": "a", "owner": "me"}), 422, "owner"),
    "id in body": ("post", "/api/tasks", js({"title": "a", "id": 7}), 422, "id"),
    "NUL in title": ("post", "/api/tasks", js({"title": "a\u0000b"}), 422, "title"),
    "lone surrogate": ("post", "/api/tasks", raw('{"title": "a\\ud800"}'), 422, "title"),
    "NUL in notes": ("post", "/api/tasks", js({"title": "a", "notes": "\u0000"}), 422, "notes"),
    "patch string done": ("patch", "/api/tasks/1", js({"done": "yes"}), 422, "done"),
    "patch number title": ("patch", "/api/tasks/1", js({"title": 3}), 422, "title"),
    "patch blank title": ("patch", "/api/tasks/1", js({"title": "  "}), 422, "title"),
    "patch null title": ("patch", "/api/tasks/1", js({"title": None}), 422, "title"),
    "patch empty object": ("patch", "/api/tasks/1", js({}), 422, None),
    "patch unknown field": ("patch", "/api/tasks/1", js({"created_at": "x"}), 422, "created_at"),
    "patch array": ("patch", "/api/tasks/1", js([]), 400, None),
    "patch malformed": ("patch", "/api/tasks/1", raw("{"), 400, None),
    # size
    "body over limit": (
        "post",
        "/api/tasks",
        js({"title": "a", "notes": "n" * BODY_LIMIT}),
        413,
        None,
    ),
    "patch over limit": ("patch", "/api/tasks/1", js({"notes": "n" * BODY_LIMIT}), 413, None),
    # ids
    "non-integer id": ("get", "/api/tasks/abc", {}, 400, "id"),
    "float id": ("get", "/api/tasks/1.5", {}, 400, "id"),
    "zero id": ("get", "/api/tasks/0", {}, 400, "id"),
    "negative id": ("get", "/api/tasks/-1", {}, 400, "id"),
    "huge id": ("get", "/api/tasks/99999999999999999999", {}, 400, "id"),
    "id past int4": ("get", "/api/tasks/2147483648", {}, 400, "id"),
    "non-ASCII digits id": ("get", "/api/tasks/%D9%A1", {}, 400, "id"),
    "unknown id": ("get", "/api/tasks/999", {}, 404, "id"),
    "patch non-integer id": ("patch", "/api/tasks/x", js({"done": True}), 400, "id"),
    "patch unknown id": ("patch", "/api/tasks/999", js({"done": True}), 404, "id"),
    "delete non-integer id": ("delete", "/api/tasks/x", {}, 400, "id"),
    "delete huge id": ("delete", "/api/tasks/2147483648", {}, 400, "id"),
    "delete unknown id": ("delete", "/api/tasks/999", {}, 404, "id"),
    # query parameters
    "limit zero": ("get", "/api/tasks?limit=0", {}, 400, "limit"),
    "limit over max": ("get", "/api/tasks?limit=101", {}, 400, "limit"),
    "limit not a number": ("get", "/api/tasks?limit=ten", {}, 400, "limit"),
    "negative offset": ("get", "/api/tasks?offset=-1", {}, 400, "offset"),
    "offset not a number": ("get", "/api/tasks?offset=1e3", {}, 400, "offset"),
    "done filter yes": ("get", "/api/tasks?done=yes", {}, 400, "done"),
    "order sideways": ("get", "/api/tasks?order=sideways", {}, 400, "order"),
    "order empty": ("get", "/api/tasks?order=", {}, 400, "order"),
    "repeated parameter": ("get", "/api/tasks?limit=1&limit=2", {}, 400, "limit"),
    "unknown parameter": ("get", "/api/tasks?sort=title", {}, 400, "sort"),
    # routes and methods
    "unknown route": ("get", "/api/nothing", {}, 404, None),
    "route under a task": ("get", "/api/tasks/1/comments", {}, 404, None),
    "PUT on the collection": ("put", "/api/tasks", js({"title": "a"}), 405, None),
    "DELETE on the collection": ("delete", "/api/tasks", {}, 405, None),
    "POST on a task": ("post", "/api/tasks/1", js({"title": "a"}), 405, None),
    "PUT on a task": ("put", "/api/tasks/1", js({"title": "a"}), 405, None),
}


@pytest.fixture
def seeded(client, app):
    response = client.post("/api/tasks", json={"title": "seed", "notes": "keep me"})
    assert response.status_code == 201
    assert response.get_json()["id"] == 1
    return table_rows(app)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_rejected_and_changes_nothing(client, app, seeded, case):
    method, path, kwargs, status, *rest = case
    field = rest[0] if rest else None
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert body["error"]["field"] == field
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert table_rows(app) == seeded


def test_405_names_the_allowed_methods(client):
    response = client.put("/api/tasks")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_too_long_title_message_names_the_bound(client):
    body = client.post("/api/tasks", json={"title": "x" * 201}).get_json()
    assert "200" in body["error"]["message"]
