"""Fuzz the API against its own OpenAPI document (schemathesis, in-process).

Bounded: a fixed number of examples per operation and mode, no deadline per
example, derandomized so a run is reproducible. Fails on any 500, any
response outside the document (status, content type, headers, body schema),
and on invalid data that the API accepts.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

EXAMPLES = 40
# What rejecting invalid data may look like here (413: a body over the limit).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "404", "405", "413", "415", "422"]
            }
        }
    }
)
WITH_INPUT = {"/api/tasks", "/api/tasks/{id}"}
OPERATIONS = [
    ("/api/tasks", "GET"),
    ("/api/tasks", "POST"),
    ("/api/tasks/{id}", "GET"),
    ("/api/tasks/{id}", "PATCH"),
    ("/api/tasks/{id}", "DELETE"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/version", "GET"),
]


def test_the_document_lists_exactly_these_operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)
    found = {(op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)


CASES = [
    (path, method, mode)
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or path in WITH_INPUT
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_api_conforms_to_its_openapi_document(app, client, path, method, mode):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)
    operation = schema[path][method]
    # a few tasks so that reads, updates and deletes find something
    for i in range(3):
        assert client.post("/api/tasks", json={"title": f"seed {i}"}).status_code == 201

    conforms(operation, mode)


def conforms(operation, mode: GenerationMode, examples: int = EXAMPLES, **call) -> None:
    """Every generated case of ``operation`` in ``mode`` (bounded, reproducible)
    answers as the document says, by every check; ``call`` goes to the
    request (tests/local/test_edge.py runs it through the public URL)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(**call)

    check()
