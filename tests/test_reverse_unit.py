"""In-memory unit tests of reverse mode (postcap.proxy.reverse and its hook in the
proxy server), on the harness of tests/test_proxy_unit.py."""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from postcap.proxy.framing import ProtocolError, RequestHead
from postcap.proxy.reverse import ModeError, ReverseTarget, parse_mode
from postcap.proxy.targets import Target
from postcap.proxy.upstream import Origin
from tests.test_proxy_unit import OK_HELLO, OK_HELLO_TO_CLIENT, ProxyTestCase, forwarded, request

API = parse_mode("reverse:http://api.internal:8080/v1/")


class ParseModeTests(SynchronousTestCase):
    def test_regular_and_reverse(self) -> None:
        self.assertIsNone(parse_mode("regular"))
        self.assertEqual(API, ReverseTarget(Target(Origin("http", "api.internal", 8080), b"/v1/")))
        https = parse_mode("reverse:https://Staging.Example")
        assert https is not None
        self.assertEqual(https.target.origin, Origin("https", "staging.example", 443))
        self.assertEqual(https.url, "https://staging.example/")

    def test_invalid_modes(self) -> None:
        for text in ("transparent", "reverse:", "reverse:ftp://x/", "reverse:http://x/?q=1",
                     "reverse:http://user@x/", "Reverse:http://x/"):
            with self.assertRaises(ModeError, msg=text):
                parse_mode(text)

    def test_resolve(self) -> None:
        assert API is not None

        def head(method: bytes, target: bytes, *headers: tuple[bytes, bytes]) -> RequestHead:
            return RequestHead(method, target, b"HTTP/1.1", list(headers), "none", 0)

        self.assertEqual(API.resolve(head(b"GET", b"/users?id=1")).url,
                         "http://api.internal:8080/v1/users?id=1")
        kept = dataclasses.replace(API, keep_host=True).resolve(
            head(b"GET", b"/", (b"Host", b"front.example")))
        self.assertEqual(kept.host_header, b"front.example")
        self.assertIsNone(API.resolve(head(b"GET", b"/", (b"Host", b"front.example"))).host_header)
        for method, target in ((b"CONNECT", b"api.internal:443"), (b"GET", b"http://other.test/")):
            with self.assertRaises(ProtocolError) as raised:
                API.resolve(head(method, target))
            self.assertEqual(raised.exception.status, 400)


class ReverseProxyTests(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_proxy(reverse=API)

    def test_origin_form_goes_to_the_one_server_with_its_host(self) -> None:
        client = self.client()
        client.send(request(target=b"/users", headers=(b"Host: front.example", b"X-A: 1")))
        upstream = self.network.active()
        self.assertEqual(upstream.origin, Origin("http", "api.internal", 8080))
        self.assertEqual(upstream.sent(), forwarded(
            path=b"/v1/users", headers=(b"Host: api.internal:8080", b"X-A: 1")))
        upstream.respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
        (transaction,) = self.recorder.transactions
        self.assertEqual(self.recorder.begun, [("GET", "http://api.internal:8080/v1/users")])
        self.assertEqual(transaction.request.headers[0], (b"Host", b"front.example"))

    def test_keep_host(self) -> None:
        assert API is not None
        self.make_proxy(reverse=dataclasses.replace(API, keep_host=True))
        self.client().send(request(target=b"/", headers=(b"Host: front.example",)))
        self.assertEqual(self.network.active().sent(),
                         forwarded(path=b"/v1/", headers=(b"Host: front.example",)))

    def test_absolute_form_and_connect_are_400_and_the_listener_serves_on(self) -> None:
        for data in (request(target=b"http://example.test/"),
                     request(method=b"CONNECT", target=b"example.test:443")):
            client = self.client()
            client.send(data)
            self.assert_error(client.received(), b"400", b"bad-request")
            self.assertIn(b"reverse proxy", client.received())
        self.assertEqual(self.network.attempts, [])
        client = self.client()
        client.send(request(target=b"/ok"))
        self.network.active().respond(OK_HELLO)
        self.assertEqual(client.received(), OK_HELLO_TO_CLIENT)
