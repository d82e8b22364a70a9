"""From traffic to an API description, end to end: a real JSON API (tests/api_origin.py,
over HTTP and HTTPS) used through the real proxy with curl; the inferred OpenAPI document
against the hand-written true one (tests/api_origin_openapi.yaml), ``api.diff``, the
endpoint collection, and postcapctl."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from openapi_spec_validator import validate

from postcap.apispec.spec import Resolver
from tests.api_origin import ORDER, PASSWORD, SESSION, TOKEN
from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl, start_origin
from tests.postcap_process import PostcapProcess, RPCError
from tests.schemas import assert_valid
from tests.test_postcapctl import ctl

pytestmark = requires_curl

API_SCRIPT = Path(__file__).with_name("api_origin.py")
TRUE_SPEC = Path(__file__).with_name("api_origin_openapi.yaml")
SECRETS = (PASSWORD, TOKEN, SESSION, "Bearer ")
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def api() -> Iterator[Origin]:
    with start_origin(script=API_SCRIPT) as running:
        yield running


@pytest.fixture(scope="module")
def tls_api(pki: OriginPKI) -> Iterator[Origin]:
    with start_origin(tls=(pki.good.cert, pki.good.key), script=API_SCRIPT) as running:
        yield running


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI, api: Origin,
             tls_api: Origin) -> Iterator[tuple[PostcapProcess, dict[str, Any], str]]:
    """A server, a stopped session of API traffic, and the collection it filled."""
    with PostcapProcess(tmp_path_factory.mktemp("api"), env={"SSL_CERT_FILE": pki.ca_cert}) as server:
        collection = server.rpc("collection.create", name="by endpoint")["id"]
        session = server.rpc("session.start", name="api", collection=collection,
                             organize_by=["endpoint"])
        try:
            drive(server, api, tls_api)
        finally:
            server.rpc("session.stop")
        yield server, session, collection


def drive(server: PostcapProcess, api: Origin, tls_api: Origin) -> None:
    bearer = ("-H", f"Authorization: Bearer {TOKEN}")
    json_type = ("-H", "Content-Type: application/json")
    server.curl("-d", "username=alice&password=wrong", api.url("/login"))
    server.curl("-d", f"username=alice&password={PASSWORD}", api.url("/login"))
    server.curl(*bearer, api.url("/users"), api.url("/users?limit=1"), api.url("/users/1"),
                api.url("/users/2"), api.url("/users/99"))
    server.curl(*bearer, *json_type, "-d", '{"name": "Carol", "email": "carol@example.com", "nickname": "c"}',
                api.url("/users"))
    server.curl(*bearer, *json_type, "-d", '{"name": "Dan", "email": "dan@example.com"}', api.url("/users"))
    server.curl(*bearer, "-X", "DELETE", api.url("/users/2"))
    https = f"https://127.0.0.1:{tls_api.port}"
    server.curl("--cacert", server.ca_path, *bearer, f"{https}/orders/{ORDER}",
                f"{https}/orders/00000000-1111-4222-8333-444444444444",
                f"{https}/orders/{ORDER}/items/1", f"{https}/orders/{ORDER}/items/2")


def flat(schema: Any, resolve: Resolver) -> Any:
    """A schema with every local $ref replaced by what it points at."""
    schema = resolve(schema)
    if isinstance(schema, dict):
        return {k: flat(v, resolve) for k, v in schema.items()}
    if isinstance(schema, list):
        return [flat(v, resolve) for v in schema]
    return schema


def shape(schema: dict[str, Any]) -> Any:
    """What must agree: required fields and formats, all the way down."""
    if schema.get("type") == "array" or "items" in schema:
        return ["array", shape(schema.get("items", {}))]
    if "properties" in schema:
        return {"required": sorted(schema.get("required", [])),
                "properties": {k: shape(v) for k, v in schema["properties"].items()}}
    return schema.get("format")


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    resolve = Resolver(document)
    found = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                operation = flat(item[method], resolve)
                operation["parameters"] = flat(item.get("parameters", []), resolve) + operation.get(
                    "parameters", [])
                found[(method, path)] = operation
    return found


def test_inferred_document_matches_the_true_one(captured: tuple[PostcapProcess, dict[str, Any], str]) -> None:
    server, session, _ = captured
    inferred = server.rpc("session.export", id=session["id"], format="openapi")
    validate(inferred)
    assert inferred["openapi"].startswith("3.1")
    true = yaml.safe_load(TRUE_SPEC.read_text())
    got, want = operations(inferred), operations(true)
    assert sorted(got) == sorted(want)
    for key, expected in want.items():
        actual = got[key]
        params = {(p["in"], p["name"]): (p["required"], p["schema"].get("type"), p["schema"].get("format"))
                  for p in actual.get("parameters", [])}
        assert params == {(p["in"], p["name"]): (p["required"], p["schema"].get("type"),
                                                  p["schema"].get("format"))
                          for p in expected["parameters"]}, key
        if "requestBody" in expected:
            (media, body), = expected["requestBody"]["content"].items()
            assert shape(actual["requestBody"]["content"][media]["schema"]) == shape(body["schema"]), key
        assert sorted(actual["responses"]) == sorted(expected["responses"]), key
        for status, response in expected["responses"].items():
            for media, body in response.get("content", {}).items():
                assert shape(actual["responses"][status]["content"][media]["schema"]) == shape(body["schema"]), \
                    (key, status)
        assert ("security" in actual) == ("security" in expected), key
    assert inferred["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    assert len(inferred["servers"]) == 2
    assert "/users/{userId}" in inferred["paths"] and "/orders/{orderId}/items/{itemId}" in inferred["paths"]
    text = json.dumps(inferred)
    assert not [s for s in SECRETS if s in text]


def test_api_diff_finds_drift(captured: tuple[PostcapProcess, dict[str, Any], str]) -> None:
    server, session, _ = captured
    true = yaml.safe_load(TRUE_SPEC.read_text())
    assert server.rpc("api.diff", id=session["id"], spec=TRUE_SPEC.read_text()) == {
        "undocumented": [], "mismatches": [], "unused": []}
    drifted = copy.deepcopy(true)
    del drifted["paths"]["/users/{userId}"]["delete"]
    drifted["components"]["schemas"]["User"]["properties"]["email"] = {"type": "integer"}
    drifted["paths"]["/health"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    report = server.rpc("api.diff", id=session["id"], spec=drifted)
    assert {(u["kind"], u["method"], u["path"]) for u in report["undocumented"]} == {
        ("operation", "DELETE", "/users/{userId}")}
    retyped = [m for m in report["mismatches"] if m["kind"] == "type" and m["field"].endswith("email")]
    assert retyped and all(m["expected"] == ["integer"] and m["observed"] == "string" for m in retyped)
    sample = server.rpc("request.get", id=retyped[0]["sample"])
    assert sample["session_id"] == session["id"]
    assert report["unused"] == [{"kind": "operation", "method": "GET", "path": "/health",
                                 "message": "GET /health was never exercised"}]
    for bad, why in (({"swagger": "2.0"}, "Swagger 2.0"), ("paths: [", "neither JSON nor YAML"),
                     (42, "must be")):
        with pytest.raises(RPCError) as raised:
            server.rpc("api.diff", id=session["id"], spec=bad)
        assert raised.value.code == -32602 and raised.value.data == {"param": "spec"}
        assert why in raised.value.message
    with pytest.raises(RPCError) as raised:
        server.rpc("session.export", id=session["id"], format="swagger")
    assert (raised.value.code, raised.value.data) == (-32602, {"param": "format"})


def test_collection_has_one_item_per_endpoint(captured: tuple[PostcapProcess, dict[str, Any], str]) -> None:
    server, session, collection = captured
    document = server.rpc("collection.get", id=collection)
    assert_valid("collection", document)
    items = {item["name"]: item for item in document["item"]}
    assert set(items) == {"POST /login", "GET /users", "POST /users", "GET /users/:userId",
                          "DELETE /users/:userId", "GET /orders/:orderId",
                          "GET /orders/:orderId/items/:itemId"}
    assert [r["code"] for r in items["GET /users/:userId"]["response"]] == [200, 404]
    assert [r["code"] for r in items["POST /login"]["response"]] == [200, 401]
    assert items["GET /users/:userId"]["request"]["url"]["variable"] == [{"key": "userId", "value": "1"}]
    assert document["auth"]["type"] == "bearer"
    assert document["auth"]["bearer"][0]["value"] == "{{bearerToken}}"
    assert items["POST /login"]["request"]["auth"] == {"type": "noauth"}
    variables = {v["key"]: v["value"] for v in document["variable"]}
    assert variables["bearerToken"] == "" and {"baseUrl", "baseUrl2"} <= set(variables)
    text = json.dumps(document)
    assert not [s for s in SECRETS if s in text]
    # Adding the same traffic again adds no endpoint and no example.
    ids = [item["id"] for item in server.requests(session["id"], limit=100)]
    before = server.rpc("collection.list")["items"]
    server.rpc("collection.add", id=collection, request_ids=ids, organize_by=["endpoint"])
    assert server.rpc("collection.list")["items"] == before
    assert server.rpc("collection.get", id=collection) == document


def test_postcapctl_export_and_diff(captured: tuple[PostcapProcess, dict[str, Any], str],
                                    tmp_path: Path) -> None:
    server, session, _ = captured
    out = tmp_path / "api.yaml"
    result = ctl(server, "export", "openapi", session["id"], "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "api.yaml" in result.stdout
    written = yaml.safe_load(out.read_text())
    validate(written)
    assert not [s for s in SECRETS if s in out.read_text()]
    assert json.loads(ctl(server, "export", "openapi", session["id"]).stdout) == written
    same = ctl(server, "api", "diff", session["id"], str(TRUE_SPEC))
    assert (same.returncode, same.stdout.strip()) == (0, "no drift: the traffic matches the spec")
    drifted = yaml.safe_load(TRUE_SPEC.read_text())
    del drifted["paths"]["/login"]
    spec = tmp_path / "drifted.json"
    spec.write_text(json.dumps(drifted))
    result = ctl(server, "api", "diff", session["id"], str(spec))
    assert result.returncode == 1, result.stderr
    assert "Undocumented (seen in traffic, not in the spec): 1" in result.stdout
    assert "POST /login is not in the spec" in result.stdout
    as_json = ctl(server, "--json", "api", "diff", session["id"], str(spec))
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["undocumented"][0]["path"] == "/login"
    assert not os.path.exists(str(out) + ".part")
    bad = ctl(server, "api", "diff", session["id"], str(tmp_path / "missing.yaml"))
    assert bad.returncode == 1 and "missing.yaml" in bad.stderr


def test_the_har_keeps_what_was_sent(captured: tuple[PostcapProcess, dict[str, Any], str]) -> None:
    """The secrets the other tests look for were really sent: the HAR, a faithful record
    of the wire, has them; the API description and the collection do not."""
    server, session, _ = captured
    har = json.dumps(server.rpc("session.export", id=session["id"]))
    assert TOKEN in har  # the HAR is a faithful record, so the secrets above were really sent
