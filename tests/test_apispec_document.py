"""The API model, the OpenAPI document, drift and endpoint collections (pure, in memory)."""

from __future__ import annotations

import json
from typing import Any

from openapi_spec_validator import validate
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from postcap.apispec.document import openapi_document
from postcap.apispec.drift import api_diff
from postcap.apispec.model import MAX_PARAMETERS, ApiModel
from postcap.apispec.spec import SpecError, load_spec
from postcap.export.openapi import model_from_pages
from postcap.export.postman import collection_document
from postcap.export.postman_endpoints import lift_endpoint_variables, plan_endpoint_items
from postcap.testing import make_transaction
from tests.schemas import assert_valid

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZQ"
BEARER = ((b"Authorization", f"Bearer {TOKEN}".encode()),)
JSON = (b"Content-Type", b"application/json")


def detail(url: str, method: str = "GET", status: int = 200, body: Any = None, response: Any = None,
           headers: tuple[tuple[bytes, bytes], ...] = BEARER, **kwargs: Any) -> dict[str, Any]:
    request_body = json.dumps(body).encode() if body is not None else b""
    request_headers = headers + ((JSON,) if body is not None else ())
    response_body = json.dumps(response).encode() if response is not None else b""
    return make_transaction(url=url, method=method, status=status, request_body=request_body,
                            request_headers=request_headers, response_body=response_body,
                            response_headers=(JSON,) if response is not None else (), **kwargs).detail()


def traffic() -> list[dict[str, Any]]:
    details = [detail(f"https://api.test/users/{i}?expand=true", id=f"u{i}",
                      response={"id": i, "email": f"u{i}@x.io", "at": "2026-01-01T00:00:00Z"})
               for i in range(1, 4)]
    details += [
        detail("https://api.test/users", "POST", 201, body={"email": "n@x.io", "password": "hunter2"},
               response={"id": 9, "email": "n@x.io", "at": "2026-01-01T00:00:00Z"}, id="p1"),
        detail("https://api.test/users/7", status=404, response={"error": "no"}, id="n1"),
        detail("https://api.test/users/7?expand=1&expand=2", "DELETE", 204, id="d1"),
        detail("https://api.test/health", headers=(), response={"ok": True}, id="h1"),
        detail("http://other.test:8080/ping?api_key=k3y", headers=((b"X-Trace", b"1"),), id="o1"),
        detail("https://api.test/app.js", id="static"),
        detail("https://api.test/users", "OPTIONS", 204, id="pre",
               headers=((b"Access-Control-Request-Method", b"POST"),)),
    ]
    return details


def model_of(details: list[dict[str, Any]]) -> ApiModel:
    model = ApiModel()
    for d in details:
        model.add(d)
    return model


class DocumentTests(SynchronousTestCase):
    def test_document_is_valid_openapi_3_1_and_complete(self) -> None:
        document = openapi_document(model_of(traffic()), "t")
        validate(document)
        self.assertEqual([s["url"] for s in document["servers"]], ["https://api.test", "http://other.test:8080"])
        self.assertEqual(sorted(document["paths"]), ["/health", "/ping", "/users", "/users/{userId}"])
        user = document["paths"]["/users/{userId}"]
        self.assertEqual(sorted(user), ["delete", "get", "servers"])
        self.assertEqual(user["get"]["tags"], ["users"])
        self.assertEqual(sorted(user["get"]["responses"]), ["200", "404"])
        self.assertEqual([(p["name"], p["in"], p["required"]) for p in user["get"]["parameters"]],
                         [("userId", "path", True), ("expand", "query", False)])
        ok = user["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        self.assertEqual(ok["properties"]["at"], {"type": "string", "format": "date-time"})
        self.assertEqual(user["get"]["security"], [{"bearerAuth": []}])
        self.assertNotIn("content", user["delete"]["responses"]["204"])
        self.assertNotIn("security", document["paths"]["/health"]["get"])
        ping = document["paths"]["/ping"]["get"]
        self.assertEqual(ping["security"], [{"apiKeyQuery": []}])
        self.assertEqual([p["name"] for p in ping["parameters"]], ["X-Trace"])
        self.assertEqual(document["paths"]["/ping"]["servers"], [{"url": "http://other.test:8080"}])
        post = document["paths"]["/users"]["post"]["requestBody"]
        self.assertEqual(post["content"]["application/json"]["example"], {"email": "n@x.io", "password": "REDACTED"})
        text = json.dumps(document)
        self.assertNotIn(TOKEN, text)
        self.assertNotIn("hunter2", text)
        self.assertNotIn("k3y", text)

    def test_a_repeated_query_parameter_is_required_only_when_every_request_had_it(self) -> None:
        model = model_of([detail("https://h.test/s?tag=a&tag=b", id="1"), detail("https://h.test/s", id="2")])
        (parameter,) = openapi_document(model, "t")["paths"]["/s"]["get"]["parameters"]
        self.assertEqual((parameter["name"], parameter["required"]), ("tag", False))

    def test_parameters_per_operation_are_bounded(self) -> None:
        model = model_of([detail(f"https://h.test/s?k{n}=1", id=str(n)) for n in range(MAX_PARAMETERS + 20)])
        (operation,) = model.operations().values()
        self.assertEqual(len(operation.query), MAX_PARAMETERS)

    def test_deeply_nested_bodies_cost_their_depth_only(self) -> None:
        deep = make_transaction(url="https://h.test/deep", response_body=b"[" * 50_000 + b"]" * 50_000,
                                response_headers=(JSON,)).detail()
        nested = make_transaction(url="https://h.test/nested", response_body=b"[" * 900 + b"]" * 900,
                                  response_headers=(JSON,)).detail()
        document = openapi_document(model_of([deep, nested]), "t")
        validate(document)
        self.assertEqual(document["paths"]["/deep"]["get"]["responses"]["200"]["content"]["application/json"],
                         {"schema": {}})
        self.assertEqual(plan_endpoint_items([], [deep, nested], ["endpoint"])[1][0][1]["name"], "GET /deep")

    def test_streaming_from_pages_folds_everything_once(self) -> None:
        details = traffic()

        def pages(after: int, limit: int) -> Deferred[tuple[int, list[dict[str, Any]]]]:
            return succeed((after + limit, details[after:after + limit]))

        model = self.successResultOf(Deferred.fromCoroutine(model_from_pages(pages, page=3)))
        self.assertEqual(model.transactions, 8)
        self.assertEqual(openapi_document(model, "t"), openapi_document(model_of(details), "t"))

    def test_provisional_endpoints_merge_once_the_threshold_is_crossed(self) -> None:
        model = ApiModel(threshold=3)
        for name in ("ann", "bea", "cid", "dov", "eve", "fay"):
            model.add(detail(f"https://api.test/people/{name}", response={"name": name}))
        (operation,) = model.operations().values()
        self.assertEqual(operation.count, 6)
        self.assertLessEqual(len(model._provisional), 4)
        parameters = openapi_document(model, "t")["paths"]["/people/{personId}"]["get"]["parameters"]
        self.assertEqual(parameters[0]["schema"], {"type": "string"})


class DriftTests(SynchronousTestCase):
    def spec(self) -> dict[str, Any]:
        document = openapi_document(model_of(traffic()), "t")
        return json.loads(json.dumps(document))

    def test_own_document_has_no_drift(self) -> None:
        self.assertEqual(api_diff(model_of(traffic()), self.spec()),
                         {"undocumented": [], "mismatches": [], "unused": []})

    def test_findings(self) -> None:
        spec = self.spec()
        get = spec["paths"]["/users/{userId}"]["get"]
        get["parameters"] = [p for p in get["parameters"] if p["name"] != "expand"]
        get["parameters"].append({"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}})
        del get["responses"]["404"]
        body = get["responses"]["200"]["content"]["application/json"]["schema"]
        body["properties"]["at"]["format"] = "date"
        body["properties"]["email"] = {"type": "string", "format": "uuid"}
        body["required"].append("name")
        body["properties"]["name"] = {"type": "string"}
        del body["properties"]["id"]
        spec["paths"]["/users/{userId}"]["get"]["parameters"][0]["schema"] = {"type": "string", "format": "uuid"}
        spec["paths"]["/users/{userId}"]["delete"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        report = api_diff(model_of(traffic()), spec)
        undocumented = {(u["kind"], u.get("name") or u.get("field") or u.get("status")) for u in report["undocumented"]}
        self.assertEqual(undocumented, {("parameter", "expand"), ("status", 404), ("field", "id")})
        mismatches = {(m["kind"], m["where"], m["field"], m["sample"]) for m in report["mismatches"]}
        self.assertEqual(mismatches, {
            ("required", "query parameter tenant", "", "u1"),
            ("format", "response 200 body", "at", "u1"),
            ("format", "response 200 body", "email", "u1"),
            ("required", "response 200 body", "name", "u1"),
            ("type", "path parameter userId", "", "u1"),
            ("required", "request body", "", "d1"),
        })
        self.assertEqual(report["unused"], [])

    def test_openapi_3_0_yaml_with_base_path_refs_and_ranges(self) -> None:
        spec = """
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "https://api.test/v1"}]
paths:
  /items/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses:
        200: {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
        2XX: {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /unused: {post: {responses: {default: {description: x}}}}
components:
  schemas:
    Item:
      allOf:
        - {type: object, required: [id], properties: {id: {type: integer}}}
        - {type: object, properties: {note: {type: string, nullable: true}}}
"""
        details = [detail("https://api.test/v1/items/1", response={"id": 1, "note": None}, id="a"),
                   detail("https://api.test/v1/items/2", status=201, response={"id": 2, "note": "x"}, id="b"),
                   detail("https://elsewhere.test/x", id="c")]
        report = api_diff(model_of(details), spec)
        self.assertEqual(report["undocumented"], [])
        self.assertEqual(report["mismatches"], [])
        self.assertEqual([(u["method"], u["path"]) for u in report["unused"]], [("POST", "/unused")])

    def test_self_referencing_schemas_end(self) -> None:
        spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
                "paths": {"/a": {"get": {"responses": {"200": {"description": "", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}}},
                "components": {"schemas": {"A": {"allOf": [{"$ref": "#/components/schemas/A"}],
                                                 "properties": {"x": {"$ref": "#/components/schemas/A"}}}}}}
        report = api_diff(model_of([detail("https://h.test/a", response={"x": {"x": {"x": 1}}}, id="r")]), spec)
        self.assertEqual([(m["kind"], m["field"], m["observed"]) for m in report["mismatches"]],
                         [("type", "x.x.x", "integer")])

    def test_shared_all_of_parts_are_flattened_once(self) -> None:
        part: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}}}
        for _ in range(12):  # 10^12 paths through the allOf tree, one object per level
            part = {"allOf": [part] * 10}
        spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
                "paths": {"/a": {"get": {"responses": {"200": {"description": "", "content": {
                    "application/json": {"schema": part}}}}}}}}
        report = api_diff(model_of([detail("https://h.test/a", response={"x": "one"}, id="r")]), spec)
        self.assertEqual([(m["kind"], m["field"]) for m in report["mismatches"]], [("type", "x")])

    def test_bad_specs_say_why(self) -> None:
        for given, why in (("swagger: '2.0'", "Swagger 2.0"), ("{", "neither JSON nor YAML"),
                           ({"openapi": "4.0"}, "3.0.x or 3.1.x"), ([], "must be an OpenAPI document"),
                           ({"openapi": "3.1.0", "paths": {"x": {}}}, "must start with"),
                           ({"openapi": "3.1.0", "paths": []}, '"paths" must be an object'),
                           ("[" * 100_000, "nested too deeply")):
            with self.assertRaises(SpecError) as raised:
                load_spec(given)
            self.assertIn(why, str(raised.exception))


class EndpointCollectionTests(SynchronousTestCase):
    def test_one_item_per_endpoint_examples_per_status_and_no_secrets(self) -> None:
        details = traffic() + [detail("https://api.test/login", "POST", headers=(
            (b"Content-Type", b"application/x-www-form-urlencoded"),), id="l1") | {
            "request": dict(detail("https://api.test/login")["request"], headers=[
                ["Content-Type", "application/x-www-form-urlencoded"], ["Authorization", "Basic YWxpY2U6aHVudGVyMg=="]],
                body={"size": 28, "captured": True, "truncated": False, "encoding": "utf-8",
                      "text": "user=alice&password=hunter2"})}]
        updates, inserts = plan_endpoint_items([], details[:5], ["domain", "endpoint"])
        self.assertEqual(updates, [])
        self.assertEqual([(f, i["name"], [r["code"] for r in i["response"]]) for f, i in inserts], [
            (["api.test"], "GET /users/:userId", [200, 404]), (["api.test"], "POST /users", [201])])
        existing = [(n, f, i) for n, (f, i) in enumerate(inserts, 1)]
        updates, more = plan_endpoint_items(existing, details[5:], ["domain", "endpoint"])
        self.assertEqual(updates, [])
        self.assertEqual([i["name"] for _, i in more],
                         ["DELETE /users/:userId", "GET /health", "GET /ping", "GET /app.js", "OPTIONS /users",
                          "POST /login"])
        again, none = plan_endpoint_items(existing, details[:5], ["domain", "endpoint"])
        self.assertEqual((again, none), ([], []))
        updates, _ = plan_endpoint_items(existing, [detail("https://api.test/users/5", status=500, id="e")],
                                         ["domain", "endpoint"])
        self.assertEqual([(seq, [r["code"] for r in item["response"]]) for seq, item in updates],
                         [(1, [200, 404, 500])])
        document = lift_endpoint_variables(collection_document(
            "abc", "c", [(f, i) for _, f, i in existing] + more))
        assert_valid("collection", document)
        variables = {v["key"]: v["value"] for v in document["variable"]}
        self.assertEqual(variables, {"baseUrl": "https://api.test", "baseUrl2": "http://other.test:8080",
                                     "bearerToken": "", "apiKey": "", "basicUsername": "", "basicPassword": ""})
        self.assertNotIn("auth", document)  # lifted to each host's folder
        folders = {f["name"]: f for f in document["item"]}
        self.assertEqual(folders["api.test"]["auth"]["type"], "bearer")
        self.assertEqual(folders["other.test:8080"]["auth"]["apikey"][2], {"key": "in", "value": "query",
                                                                           "type": "string"})
        text = json.dumps(document)
        for secret in (TOKEN, "hunter2", "k3y", "YWxpY2U6aHVudGVyMg=="):
            self.assertNotIn(secret, text)
        login = next(i for f in document["item"] for i in f["item"] if i["name"] == "POST /login")
        self.assertEqual(login["request"]["body"]["urlencoded"][1]["value"], "{{password}}")
        self.assertEqual(login["request"]["auth"]["type"], "basic")
