"""Merged schemas, redaction, security schemes and body parsing (pure, in memory)."""

from __future__ import annotations

import base64
import gzip
import json

from twisted.trial.unittest import SynchronousTestCase

from postcap.apispec.redact import known_secrets, redact_json, redact_text, redact_value
from postcap.apispec.schema import MAX_PROPERTIES, SchemaAccumulator
from postcap.apispec.security import recognise
from postcap.apispec.traffic import decoded_content, observe, parse_body
from postcap.testing import make_transaction


def schema_of(*values: object) -> dict[str, object]:
    accumulator = SchemaAccumulator()
    for index, value in enumerate(values):
        accumulator.add(value, f"t{index}")
    return accumulator.schema()


class SchemaTests(SynchronousTestCase):
    def test_scalars_and_formats(self) -> None:
        self.assertEqual(schema_of(1, 2), {"type": "integer"})
        self.assertEqual(schema_of(1, 2.5), {"type": "number"})
        self.assertEqual(schema_of(True), {"type": "boolean"})
        self.assertEqual(schema_of("2026-01-01", "2026-02-03"), {"type": "string", "format": "date"})
        self.assertEqual(schema_of("2026-01-01", "x"), {"type": "string"})
        self.assertEqual(schema_of("a@b.io", None), {"type": ["string", "null"], "format": "email"})
        self.assertEqual(schema_of(), {})

    def test_enums_for_small_closed_sets_only(self) -> None:
        self.assertEqual(schema_of(*["open", "closed"] * 3), {"type": "string", "enum": ["closed", "open"]})
        self.assertEqual(schema_of("open", "closed"), {"type": "string"})  # too few samples
        self.assertEqual(schema_of(*[f"v{i}" for i in range(8)] * 5), {"type": "string"})
        secret = SchemaAccumulator()
        for _ in range(6):
            secret.add({"token": "abc"})
        self.assertEqual(secret.schema()["properties"]["token"], {"type": "string"})

    def test_objects_required_nullable_and_arrays(self) -> None:
        schema = schema_of({"id": 1, "tags": ["a"], "note": None},
                           {"id": 2, "tags": [], "note": "x", "extra": True})
        self.assertEqual(schema, {
            "type": "object",
            "properties": {"extra": {"type": "boolean"}, "id": {"type": "integer"},
                           "note": {"type": ["string", "null"]},
                           "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["id", "note", "tags"],
        })
        self.assertEqual(schema_of([{"a": 1}, {"a": 2, "b": "x"}]), {
            "type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"},
                                                                         "b": {"type": "string"}},
                                       "required": ["a"]}})

    def test_one_of_only_when_shapes_share_nothing(self) -> None:
        schema = schema_of({"id": 1, "name": "a"}, {"error": "nope"}, {"id": 2})
        self.assertEqual([alt["required"] for alt in schema["oneOf"]], [["id"], ["error"]])
        self.assertNotIn("oneOf", schema_of({"id": 1}, {"id": 2, "b": 1}))

    def test_objects_keyed_by_ids_or_too_wide_become_maps(self) -> None:
        self.assertEqual(schema_of({"17": {"n": 1}, "18": {"n": 2}}),
                         {"type": "object", "additionalProperties": {
                             "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}})
        wide = SchemaAccumulator()
        wide.add({f"key{index}": index for index in range(MAX_PROPERTIES - 5)})
        wide.add({f"key{index}": index for index in range(10, MAX_PROPERTIES + 10)})
        self.assertEqual(wide.schema(), {"type": "object", "additionalProperties": {"type": "integer"}})

    def test_samples_point_at_the_transaction(self) -> None:
        accumulator = SchemaAccumulator()
        accumulator.add({"a": 1, "b": "x"}, "first")
        accumulator.add({"a": "text"}, "second")
        shape = accumulator.shapes[0]
        self.assertEqual(shape.properties["a"].kinds["string"].sample, "second")
        self.assertEqual(shape.missing["b"], "second")

    def test_merge_equals_adding_everything(self) -> None:
        values = [{"id": 1, "at": "2026-01-01"}, {"id": 2}, {"id": None, "x": [1, 2.5]}, "s"]
        whole = SchemaAccumulator()
        for value in values:
            whole.add(value)
        left, right = SchemaAccumulator(), SchemaAccumulator()
        for value in values[:2]:
            left.add(value)
        for value in values[2:]:
            right.add(value)
        left.merge(right)
        self.assertEqual(left.schema(), whole.schema())


class RedactionTests(SynchronousTestCase):
    def test_json_by_name_and_by_shape(self) -> None:
        given = {"user": {"name": "a", "password": "hunter2", "api_key": 12345},
                 "items": [{"session": "x"}], "note": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
                 "ok": True, "id": "123e4567-e89b-12d3-a456-426614174000"}
        self.assertEqual(redact_json(given), {
            "user": {"name": "a", "password": "REDACTED", "api_key": "REDACTED"},
            "items": [{"session": "REDACTED"}], "note": "REDACTED", "ok": True,
            "id": "123e4567-e89b-12d3-a456-426614174000"})

    def test_values_the_transaction_carried_as_credentials(self) -> None:
        known = known_secrets([["Cookie", "sid=abc123; theme=dark"], ["Authorization", "Token s3cr3t-v4lue"]],
                              [["Set-Cookie", "fresh=zzz999; Path=/"]], [("access_token", "qqq111")],
                              {"pin": "9876", "name": "bob"})
        self.assertEqual(known, {"abc123", "dark", "Token s3cr3t-v4lue", "s3cr3t-v4lue", "zzz999", "qqq111",
                                 "9876"})
        self.assertEqual(redact_json({"set": [["sid", "abc123"]], "note": "your key is s3cr3t-v4lue"}, known=known),
                         {"set": [["sid", "REDACTED"]], "note": "REDACTED"})
        self.assertEqual(redact_text("cookie abc123 ok", "text/plain", known), "cookie REDACTED ok")

    def test_values_and_text(self) -> None:
        self.assertEqual(redact_value("Cookie", "a=b"), "REDACTED")
        self.assertEqual(redact_value("X-Trace", "abc"), "abc")
        self.assertEqual(redact_text("user=bob&password=hunter2", "application/x-www-form-urlencoded"),
                         "user=bob&password=REDACTED")
        self.assertEqual(json.loads(redact_text('{"token": "t"}', "application/json")), {"token": "REDACTED"})
        self.assertEqual(redact_text("auth Bearer abcdefgh12345678 password: hunter2 ok", "text/plain"),
                         "auth REDACTED password: REDACTED ok")


class SecurityTests(SynchronousTestCase):
    def test_schemes(self) -> None:
        found = dict(recognise([["Authorization", "Bearer eyJa.eyJb.c"], ["X-API-Key", "k"],
                                ["Cookie", "sessionid=1; theme=dark"]], [("api_key", "k"), ("page", "1")]))
        self.assertEqual(found, {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "xApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "sessionidCookie": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
        })
        self.assertEqual(recognise([["authorization", "Basic YTpi"]], []),
                         [("basicAuth", {"type": "http", "scheme": "basic"})])
        self.assertEqual(recognise([["Authorization", "Token abc"]], [])[0][1]["type"], "apiKey")
        self.assertEqual(recognise([["Accept", "*/*"]], []), [])


class TrafficTests(SynchronousTestCase):
    def test_gzip_bodies_are_decoded(self) -> None:
        packed = gzip.compress(b'{"a": 1}')
        body = {"size": len(packed), "captured": True, "truncated": False, "encoding": "base64",
                "text": base64.b64encode(packed).decode(), "content_encoding": "gzip"}
        headers = [["Content-Encoding", "gzip"], ["Content-Type", "application/json"]]
        self.assertEqual(decoded_content(body), b'{"a": 1}')
        parsed = parse_body(body, headers)
        assert parsed is not None
        self.assertEqual((parsed.media_type, parsed.value, parsed.structured), ("application/json", {"a": 1}, True))
        self.assertIsNone(decoded_content(dict(body, truncated=True)))
        self.assertIsNone(decoded_content(dict(body, text=base64.b64encode(b"not gzip").decode())))
        stored = dict(body, decoded={"size": 8, "truncated": False, "encoding": "utf-8", "text": '{"b": 2}'})
        self.assertEqual(decoded_content(stored), b'{"b": 2}')

    def test_forms_and_multipart(self) -> None:
        form = parse_body({"size": 9, "captured": True, "encoding": "utf-8", "text": "a=1&b=two"},
                          [["Content-Type", "application/x-www-form-urlencoded"]])
        assert form is not None
        self.assertEqual(form.value, {"a": 1, "b": "two"})
        data = (b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"
                b"--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n")
        multipart = parse_body({"size": len(data), "captured": True, "encoding": "utf-8", "text": data.decode()},
                               [["Content-Type", "multipart/form-data; boundary=XyZ"]])
        assert multipart is not None
        self.assertEqual((multipart.value, multipart.files), ({"field": "value", "upload": ""}, ("upload",)))

    def test_observation(self) -> None:
        detail = make_transaction(url="https://api.test:8443/a/b?x=1&y=", id="t1").detail()
        obs = observe(detail)
        assert obs is not None
        self.assertEqual((obs.origin, obs.host, obs.segments, obs.query),
                         ("https://api.test:8443", "api.test:8443", ("a", "b"), [("x", "1"), ("y", "")]))
        self.assertIsNone(observe(make_transaction(kind="tunnel").detail()))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.sampled_from(["a", "b", "2026-01-02", "x@y.io", "123e4567-e89b-12d3-a456-426614174000"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "n", "t", "u"]), inner,
                                                                max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_JSON, min_size=1, max_size=8), st.integers(min_value=0, max_value=8))
def test_merging_two_halves_equals_folding_all(values: list[object], cut: int) -> None:
    whole, left, right = SchemaAccumulator(), SchemaAccumulator(), SchemaAccumulator()
    for value in values:
        whole.add(value)
    for value in values[:cut]:
        left.add(value)
    for value in values[cut:]:
        right.add(value)
    left.merge(right)
    assert left.schema() == whole.schema()
    assert left.count == whole.count == len(values)
