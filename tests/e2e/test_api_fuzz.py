"""Schemathesis against the live api, from the OpenAPI document it serves.

Every generated request, valid or not (wrong types, missing fields, odd strings, huge numbers),
must get the envelope: HTTP 200, a JSON object with exactly code, data and message, code 0, 1 or
40000; nothing may crash a process.  Requests that carry an ``authToken`` are also sent with a
live token, so the paths behind the session check are fuzzed too.  Bounded: a fixed number of
examples per operation, with the default configuration (loopback is not rate-limited).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.harness import Cluster

EXAMPLES = 25  # per operation and generation mode (valid and invalid data)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(cluster: Cluster) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(cluster.api_url + "/openapi.json", timeout=10)
    schema.config.update(base_url=cluster.api_url)
    return schema


@pytest.fixture(scope="module")
def live_token(cluster: Cluster) -> str:
    reply = requests.post(
        cluster.api_url + "/user/register", json={"userName": "fuzz-owner", "passWord": "fuzz-pw"}, timeout=10
    ).json()
    assert reply["code"] == 0, reply
    return reply["data"]


def assert_envelope(response: schemathesis.Response) -> dict[str, Any]:
    request = response.request
    where = f"{request.method} {request.url} body={request.body!r:.300}"
    assert response.status_code == 200, (where, response.status_code, response.text[:300])
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    assert headers.get("content-type") == "application/json; charset=utf-8", where
    assert headers.get("access-control-allow-origin") == "*", where
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["code", "data", "message"], (where, body)
    assert body["code"] in (0, 1, 40000), (where, body)
    assert isinstance(body["message"], str), (where, body)
    assert body["message"] != "internal server error", (where, body)  # a handler crashed
    return body


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_the_envelope(case: schemathesis.Case, live_token: str) -> None:
    response = case.call(timeout=15)
    case.validate_response(response, checks=CHECKS)
    if case.operation.path == "/openapi.json":
        assert response.status_code == 200 and "paths" in response.json()
        return
    assert_envelope(response)
    body = case.body
    if case.operation.path != "/user/logout" and isinstance(body, dict) and "authToken" in body:
        case.body = {**body, "authToken": live_token}
        response = case.call(timeout=15)
        case.validate_response(response, checks=CHECKS)
        assert_envelope(response)


def test_every_process_is_still_running(cluster: Cluster) -> None:
    assert cluster.system.modules
    dead = [p.name for p in cluster.system.modules if not p.running()]
    assert not dead, f"died during the fuzz run: {dead}\n{cluster.tails()}"
    log = cluster.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "handler failed" not in log, cluster.tails()


def test_the_live_token_still_works(cluster: Cluster, live_token: str) -> None:
    reply = requests.post(cluster.api_url + "/user/checkAuth", json={"authToken": live_token}, timeout=10).json()
    assert reply["code"] == 0 and reply["data"]["userName"] == "fuzz-owner", reply
