"""schemathesis against ``/api/v1/openapi.json`` of a real ``orch serve``: generated requests
(valid and not) never get a 5xx, and every response matches its documented status, content
type and schema. One test per operation; short in the suite, ``ORCH_SCHEMATHESIS_EXAMPLES=500``
runs a long one.

The event stream is left out (it never ends by itself): ``test_events`` covers it.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import Orchestrator
from orchestrator.server import create_app
from orchestrator.server.auth import AuthConfig

from .conftest import Server

EXAMPLES = int(os.environ.get("ORCH_SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]
ENDLESS = {("GET", "/api/v1/events")}
# The operations, read from the app in this process (the test then uses the live server's document).
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in create_app(Orchestrator("redis://127.0.0.1:1/0"), auth=AuthConfig(open=True))
    .openapi()["paths"].items()
    for method in item
    if (method.upper(), path) not in ENDLESS
)


@pytest.mark.parametrize("credentials", ["token", "none"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_keeps_to_its_schema(api: Server, method: str, path: str, credentials: str) -> None:
    """With the token, every route; without, the refusals (401) keep to the document too."""
    headers = api.headers if credentials == "token" else {}
    loaded = schemathesis.openapi.from_url(api.base_url + "/api/v1/openapi.json", headers=api.headers)
    loaded.config.update(base_url=api.base_url)
    operation = loaded.find_operation_by_path(method, path)
    assert operation is not None, f"{method} {path} is not in the served document"

    cases = st.one_of(operation.as_strategy(mode) for mode in schemathesis.GenerationMode)

    @given(data=st.data())
    @settings(max_examples=EXAMPLES if headers else max(1, EXAMPLES // 4), deadline=None,
              suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def run(data: st.DataObject) -> None:
        case = data.draw(cases)
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)

    run()
