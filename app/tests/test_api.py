"""The tasks API on both backends: the happy paths and their edges."""

from __future__ import annotations

from datetime import datetime

from conftest import table_rows


def create(client, **fields):
    response = client.post("/api/tasks", json=fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_read_update_delete(client, app):
    task = create(client, title="  write the runbook  ", notes="ops")
    assert task["title"] == "write the runbook"
    assert task["notes"] == "ops"
    assert task["done"] is False
    created = datetime.fromisoformat(task["created_at"])
    assert created.tzinfo is not None

    got = client.get(f"/api/tasks/{task['id']}")
    assert got.status_code == 200
    assert got.get_json() == task

    patched = client.patch(f"/api/tasks/{task['id']}", json={"done": True, "notes": None})
    assert patched.status_code == 200
    body = patched.get_json()
    assert body["done"] is True
    assert body["notes"] is None
    assert body["title"] == "write the runbook"
    assert body["created_at"] == task["created_at"]
    assert datetime.fromisoformat(body["updated_at"]) >= created

    deleted = client.delete(f"/api/tasks/{task['id']}")
    assert deleted.status_code == 204
    assert deleted.data == b""
    assert client.get(f"/api/tasks/{task['id']}").status_code == 404
    assert table_rows(app) == []


def test_create_sets_location_and_request_id(client):
    response = client.post("/api/tasks", json={"title": "x"}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/tasks/{response.get_json()['id']}"
    assert response.headers["X-Request-ID"] == "abc-123"


def test_create_with_done_and_limits(client):
    title = "t" * 200
    task = create(client, title=f"   {title}   ", notes="n" * 2000, done=True)
    assert task["title"] == title
    assert len(task["notes"]) == 2000
    assert task["done"] is True
    unicode_title = create(client, title="café ✓ 任务")
    assert unicode_title["title"] == "café ✓ 任务"


def test_list_pagination_and_filter(client):
    ids = [create(client, title=f"task {i}", done=i % 3 == 0)["id"] for i in range(7)]

    page = client.get("/api/tasks?limit=3").get_json()
    assert page["total"] == 7
    assert page["limit"] == 3
    assert page["offset"] == 0
    assert [t["id"] for t in page["items"]] == ids[:3]

    page = client.get("/api/tasks?limit=3&offset=6").get_json()
    assert [t["id"] for t in page["items"]] == ids[6:]

    page = client.get("/api/tasks?offset=100").get_json()
    assert page["items"] == []
    assert page["total"] == 7

    done = client.get("/api/tasks?done=true").get_json()
    assert [t["id"] for t in done["items"]] == [ids[0], ids[3], ids[6]]
    assert done["total"] == 3
    open_ = client.get("/api/tasks?done=false&limit=2").get_json()
    assert open_["total"] == 4
    assert [t["id"] for t in open_["items"]] == [ids[1], ids[2]]

    # newest first (the page's order): the task just added leads the first page
    newest = client.get("/api/tasks?limit=3&order=desc").get_json()
    assert [t["id"] for t in newest["items"]] == ids[::-1][:3]
    assert newest["total"] == 7
    older = client.get("/api/tasks?limit=3&offset=3&order=DESC&done=false").get_json()
    assert [t["id"] for t in older["items"]] == [ids[1]]
    assert client.get("/api/tasks?limit=3&order=asc").get_json()["items"] == page_asc(client)


def page_asc(client):
    return client.get("/api/tasks?limit=3").get_json()["items"]


def test_default_and_maximum_page_size(client, app):
    for i in range(25):
        create(client, title=f"t{i}")
    assert len(client.get("/api/tasks").get_json()["items"]) == 20
    assert len(client.get("/api/tasks?limit=100").get_json()["items"]) == 25


def test_patch_each_field(client):
    task = create(client, title="a")
    assert (
        client.patch(f"/api/tasks/{task['id']}", json={"title": " b "}).get_json()["title"] == "b"
    )
    assert client.patch(f"/api/tasks/{task['id']}", json={"notes": "x"}).get_json()["notes"] == "x"
    assert client.patch(f"/api/tasks/{task['id']}", json={"done": True}).get_json()["done"] is True
    final = client.get(f"/api/tasks/{task['id']}").get_json()
    assert (final["title"], final["notes"], final["done"]) == ("b", "x", True)


def test_json_content_type_with_charset_is_accepted(client):
    response = client.post(
        "/api/tasks",
        data=b'{"title": "charset"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_responses_are_json_and_not_cached(client):
    response = client.get("/api/tasks")
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_update_of_a_task_deleted_meanwhile_is_409(client, app, monkeypatch):
    """Another request deletes the task between this one's read and its write."""
    from sqlalchemy import text
    from taskboard import api
    from taskboard.db import EXT_KEY

    task = create(client, title="contested")
    real = api._task_or_404

    def read_then_lose_it(raw_id):
        found = real(raw_id)
        with app.extensions[EXT_KEY].engine.begin() as conn:
            conn.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": found.id})
        return found

    monkeypatch.setattr(api, "_task_or_404", read_then_lose_it)
    response = client.patch(f"/api/tasks/{task['id']}", json={"done": True})
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "id"
    assert table_rows(app) == []
