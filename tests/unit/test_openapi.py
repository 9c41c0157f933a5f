"""The OpenAPI document (gochat_py/api/openapi.json) matches the routes the api serves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gochat_py.api.app import CORS_HEADERS, OPENAPI_PATH, create_app
from gochat_py.config import ApiSettings

METHODS = {"get", "post", "put", "delete", "patch", "options", "head"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def _routes() -> set[tuple[str, str]]:
    app = create_app(None)  # type: ignore[arg-type]  # routes only, no logic calls
    return {(route.method.lower(), route.resource.canonical) for route in app.router.routes() if route.resource}


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item if method in METHODS}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _body(document: dict[str, Any], path: str) -> dict[str, Any]:
    content = document["paths"][path]["post"]["requestBody"]["content"]
    return _resolve(document, content["application/json"]["schema"])


def _reply(document: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    responses = document["paths"][path][method]["responses"]
    assert set(responses) == {"200"}, f"{path}: every answer is HTTP 200"
    return _resolve(document, responses["200"]["content"]["application/json"]["schema"])


def test_every_route_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    assert _operations(document) == _routes()


def test_it_is_openapi_3_1_with_unique_operation_ids(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))


def test_every_post_answers_the_envelope(document: dict[str, Any]) -> None:
    for method, path in _operations(document):
        if method != "post":
            continue
        reply = _reply(document, path)
        assert reply["required"] == ["code", "data", "message"], path
        assert set(reply["properties"]) == {"code", "data", "message"}, path
        assert reply["additionalProperties"] is False, path
        assert _resolve(document, reply["properties"]["code"])["enum"] == [0, 1, 40000], path


def test_the_request_bodies_spell_the_fields_as_the_original(document: dict[str, Any]) -> None:
    for path in ("/user/login", "/user/register"):
        body = _body(document, path)
        assert body["required"] == ["userName", "passWord"]  # capital W
    push = _body(document, "/push/push")
    assert set(push["required"]) == {"msg", "toUserId", "roomId", "authToken"}
    assert push["properties"]["toUserId"]["type"] == "string"  # a JSON string, not a number
    assert push["properties"]["roomId"]["type"] == "integer"
    assert push["properties"]["msg"]["maxLength"] == ApiSettings().max_message_length
    assert set(_body(document, "/push/pushRoom")["required"]) == {"authToken", "msg", "roomId"}
    for path in ("/push/count", "/push/getRoomInfo"):
        assert set(_body(document, path)["required"]) == {"authToken", "roomId"}
    for path in ("/user/checkAuth", "/user/logout"):
        assert _body(document, path)["required"] == ["authToken"]


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                _resolve(document, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


async def test_the_api_serves_it_with_cors(document: dict[str, Any]) -> None:
    client = TestClient(TestServer(create_app(None)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        response = await client.get("/openapi.json")
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        for name, value in CORS_HEADERS.items():
            assert response.headers[name] == value
        assert await response.json() == document
    finally:
        await client.close()
