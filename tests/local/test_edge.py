"""Errors at the edge, through the fleet: what the public URL (external
balancer, nginx, internal balancer, gunicorn) and the internal balancer
answer to bad requests. Every answer under /api/ and the health paths is
JSON in the API's error form; a body over the limit gets 413 and nothing
else, every time, at both entry points (whatever answers 413 reads the body
first, so no proxy in front sees a reset); and the public URL answers as
the OpenAPI document it serves says (schemathesis, every check)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import pytest
import requests
import schemathesis
from fleetlib import ROOT, fleet, instances, podman, skip_unless_asked
from schemathesis import GenerationMode
from test_fleet import addresses

# the app's own run of schemathesis, in-process there (app/tests)
sys.path.insert(0, str(ROOT / "app" / "tests"))
from test_openapi_fuzz import CONFIG, WITH_INPUT, conforms

pytestmark = skip_unless_asked

LIMIT = 64 * 1024  # inventories/local/group_vars/all/request_limits.yml
BIG = 200 * 1024
TIMES = 1000


def oversized_body() -> bytes:
    return json.dumps({"title": "big", "notes": "n" * BIG}).encode()


def test_an_oversized_body_gets_413_every_time_at_the_public_url():
    url = fleet()["url"] + "/api/tasks"
    body = oversized_body()
    outcomes: Counter = Counter()
    deadline = time.monotonic() + 300
    with requests.Session() as http:
        for _ in range(TIMES):
            assert time.monotonic() < deadline, f"{TIMES} requests took over 300 s: {outcomes}"
            try:
                answer = http.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=10
                )
            except requests.RequestException as exc:
                outcomes[type(exc).__name__] += 1
                continue
            outcomes[answer.status_code] += 1
            if answer.status_code == 413:
                assert answer.json()["error"]["status"] == 413
    print(f"public URL, {TIMES} x {len(body)} bytes: {dict(outcomes)}")
    assert outcomes == {413: TIMES}, outcomes


# Run inside a web instance: the internal balancer is reachable from the
# web tier only (its security group). One new connection per request, as
# nginx's upstream connections are when the app closes them.
INSIDE = """
import collections, http.client, json, sys, time
host, port, times, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
body = json.dumps({"title": "big", "notes": "n" * size}).encode()
outcomes = collections.Counter()
deadline = time.monotonic() + 300
for _ in range(times):
    if time.monotonic() > deadline:
        outcomes["out of time"] += 1
        break
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/api/tasks", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        ok = answer.status != 413 or json.loads(data)["error"]["status"] == 413
        outcomes[answer.status if ok else "413 not in the API's form"] += 1
    except Exception as exc:
        outcomes[type(exc).__name__] += 1
    finally:
        conn.close()
print(json.dumps(outcomes))
"""


def test_an_oversized_body_gets_413_every_time_at_the_internal_balancer():
    fleet()
    web = instances("web")[0]["id"]
    address = addresses("tt-local-lb-int")[0]
    out = podman(
        "exec", web, "python3", "-c", INSIDE, address, "5000", str(TIMES), str(BIG), timeout=400
    ).stdout
    outcomes = {int(k) if k.isdigit() else k: v for k, v in json.loads(out).items()}
    print(f"internal balancer, {TIMES} x {BIG} bytes of notes: {outcomes}")
    assert outcomes == {413: TIMES}, outcomes


def test_errors_at_the_public_url_are_the_apis_json():
    url = fleet()["url"]
    # a method nginx refuses itself: the app answers, with the route's Allow
    trace = requests.request("TRACE", url + "/api/tasks", timeout=10)
    assert trace.status_code == 405, trace.text
    assert trace.json()["error"]["status"] == 405
    assert set(trace.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    put = requests.put(url + "/api/tasks", json={}, timeout=10)
    assert put.status_code == 405
    assert "POST" in put.headers["Allow"]
    missing = requests.get(url + "/api/nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == 404
    # readiness, as the served OpenAPI document lists it
    ready = requests.get(url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    # the page's paths: nginx's own refusal, in the same form
    page = requests.post(url + "/index.html", data=b"x", timeout=10)
    assert page.status_code == 405
    assert page.json()["error"]["status"] == 405
    assert page.headers["Allow"] == "GET, HEAD"


EXAMPLES = 15


@pytest.fixture(scope="module")
def public_schema():
    return schemathesis.openapi.from_url(fleet()["url"] + "/api/openapi.json", config=CONFIG)


def test_the_public_url_answers_as_its_openapi_document_says(public_schema):
    """Every operation of the served document, valid and (where it takes
    input) invalid requests, every schemathesis check, through every tier."""
    checked = []
    for result in public_schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.path in WITH_INPUT:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            conforms(operation, mode, EXAMPLES, timeout=10)
            checked.append((operation.method.upper(), operation.path, mode.name))
    print(f"schemathesis through the public URL: {len(checked)} operation and mode pairs")
    assert len({(m, p) for m, p, _ in checked}) == 8, checked
