"""Postman collection and HAR builders, checked against the reference schemas."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from postcap.export.har import entry_from_detail, har_document
from postcap.export.postman import collection_document, endpoint_label, folders_for, item_from_detail
from postcap.model import Body
from postcap.testing import make_transaction
from tests.schemas import assert_valid

MULTIPART = (
    b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue one\r\n"
    b"--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
    b"Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n"
)


def detail(url: str = "http://api.example.test/users/42?page=2", method: str = "POST",
           body: bytes = b"", content_type: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
    headers = ((b"Content-Type", content_type),) if content_type else ()
    txn = make_transaction(url=url, method=method, request_body=body, request_headers=headers,
                           **kwargs)
    return txn.detail()


class PostmanTests(SynchronousTestCase):
    def test_endpoint_labels_use_the_endpoint_templates_and_drop_queries(self) -> None:
        self.assertEqual(endpoint_label("GET", "http://h/users/17?page=2"), "GET /users/:userId")
        self.assertEqual(endpoint_label("GET", "http://h/users/42/orders/9f8e7d6c5b4a39281706"),
                         "GET /users/:userId/orders/:orderId")
        self.assertEqual(
            endpoint_label("DELETE", "http://h/items/123e4567-e89b-12d3-a456-426614174000"),
            "DELETE /items/:itemId")
        self.assertEqual(endpoint_label("GET", "http://h/v2/users"), "GET /v2/users")
        self.assertEqual(folders_for(detail(url="https://h.test:8443/x"), ["domain", "endpoint"]),
                         ["h.test:8443"])

    def test_body_modes_round_trip(self) -> None:
        raw_json = item_from_detail(detail(body=b'{"a": 1}', content_type=b"application/json"))
        self.assertEqual(raw_json["request"]["body"],
                         {"mode": "raw", "raw": '{"a": 1}', "options": {"raw": {"language": "json"}}})
        form = item_from_detail(detail(body=b"a=1&b=two+words",
                                       content_type=b"application/x-www-form-urlencoded"))
        self.assertEqual(form["request"]["body"]["urlencoded"],
                         [{"key": "a", "value": "1", "type": "text"},
                          {"key": "b", "value": "two words", "type": "text"}])
        multipart = item_from_detail(detail(body=MULTIPART,
                                            content_type=b"multipart/form-data; boundary=XyZ"))
        self.assertEqual(multipart["request"]["body"]["formdata"],
                         [{"key": "field", "value": "value one", "type": "text"},
                          {"key": "upload", "type": "file", "src": "a.txt"}])
        text = item_from_detail(detail(body=b"hello", content_type=b"text/plain"))
        self.assertEqual(text["request"]["body"]["raw"], "hello")
        self.assertEqual(text["request"]["body"]["options"]["raw"]["language"], "text")
        none = item_from_detail(detail(method="GET"))
        self.assertNotIn("body", none["request"])

    def test_example_carries_the_response(self) -> None:
        item = item_from_detail(detail(response_body=b'{"ok": true}', status=201))
        (example,) = item["response"]
        self.assertEqual((example["code"], example["body"]), (201, '{"ok": true}'))
        self.assertEqual(example["originalRequest"], item["request"])

    def test_collection_with_domain_folders_is_valid(self) -> None:
        details = [detail(url="http://a.test/users/1"), detail(url="http://a.test/users/2"),
                   detail(url="http://b.test/", method="GET"),
                   detail(url="http://a.test/login", body=b"u=1",
                          content_type=b"application/x-www-form-urlencoded")]
        document = collection_document("01a205cd7a0d153b4f16", "captured", [
            (folders_for(d, ["domain"]), item_from_detail(d)) for d in details])
        assert_valid("collection", document)
        tree = {f["name"]: [g["name"] for g in f["item"]] for f in document["item"]}
        self.assertEqual(tree, {"a.test": ["POST /users/1", "POST /users/2", "POST /login"],
                                "b.test": ["GET /"]})


class HARTests(SynchronousTestCase):
    def test_entries_are_valid_har(self) -> None:
        entries = [
            entry_from_detail(detail(body=b"a=1", content_type=b"application/x-www-form-urlencoded",
                                     response_headers=((b"Set-Cookie", b"s=1; Path=/; HttpOnly"),
                                                       (b"Content-Type", b"application/json")))),
            entry_from_detail(detail(method="GET", response_body=b"\x89PNG\x00\xff",
                                     response_headers=((b"Content-Type", b"image/png"),))),
            entry_from_detail(detail(method="GET", with_response=False, error="connection refused")),
            entry_from_detail(detail(method="GET", response_body=Body(size=10, captured=False))),
        ]
        document = har_document([e for e in entries if e is not None])
        assert_valid("har", json.loads(json.dumps(document)))
        first, binary, failed, unstored = document["log"]["entries"]
        self.assertEqual(first["request"]["postData"]["params"], [{"name": "a", "value": "1"}])
        self.assertEqual(first["response"]["cookies"][0]["httpOnly"], True)
        self.assertEqual(binary["response"]["content"]["encoding"], "base64")
        self.assertEqual((failed["response"]["status"], failed["response"]["_error"]),
                         (0, "connection refused"))
        self.assertNotIn("text", unstored["response"]["content"])
        self.assertEqual(document["log"]["creator"]["name"], "postcap")

    def test_http2_version_and_trailers(self) -> None:
        entry = entry_from_detail(detail(http_version="HTTP/2", response_trailers=((b"grpc-status", b"0"),),
                                         request_trailers=((b"x-sum", b"1"),)))
        assert entry is not None
        assert_valid("har", json.loads(json.dumps(har_document([entry]))))
        self.assertEqual((entry["request"]["httpVersion"], entry["response"]["httpVersion"]), ("HTTP/2", "HTTP/2"))
        self.assertEqual(entry["response"]["_trailers"], [{"name": "grpc-status", "value": "0"}])
        self.assertEqual(entry["request"]["_trailers"], [{"name": "x-sum", "value": "1"}])
        self.assertNotIn("_trailers", entry_from_detail(detail())["response"])  # type: ignore[index]

    def test_tunnels_have_no_entry(self) -> None:
        self.assertIsNone(entry_from_detail(detail(kind="tunnel")))
