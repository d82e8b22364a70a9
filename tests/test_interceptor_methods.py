"""InterceptorMethods over the in-memory store and a Clock: frames in, transactions out."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Coroutine

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from postcap.control.dispatch import JSONRPCDispatcher, INVALID_PARAMS, InvalidParams
from postcap.interceptor import crypto
from postcap.interceptor.methods import BRIDGE_STALE_S, BrowserCookieChange, InterceptorMethods
from postcap.session import SessionManager
from postcap.testing import MemoryHistoryStore

T0 = 1_700_000_000.0
KEYS: dict[str, bytes] = {}


def derive(passphrase: str) -> Deferred[bytes]:
    if passphrase not in KEYS:
        KEYS[passphrase] = crypto.derive_key(passphrase)
    return succeed(KEYS[passphrase])


def record(**changes: Any) -> dict[str, Any]:
    base = {
        "method": "POST", "url": "http://shop.test:8080/cart?x=1", "type": "xmlhttprequest",
        "started": T0 * 1000, "sent": T0 * 1000 + 2, "headers_received": T0 * 1000 + 30,
        "ended": T0 * 1000 + 35, "request_headers": [["Content-Type", "text/plain"]],
        "body": {"base64": "aGVsbG8=", "size": 5, "truncated": False},
        "status": 201, "status_line": "HTTP/1.1 201 Created",
        "response_headers": [["Content-Type", "application/json"], ["Content-Length", "12"],
                             ["Set-Cookie", "a=b; Path=/"]],
    }
    base.update(changes)
    return base


class InterceptorMethodsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryHistoryStore()
        self.sessions = SessionManager(self.clock, self.store)
        self.wait(self.sessions.open())
        # outside the checkout (trial's mktemp writes under the cwd)
        self.data_dir = tempfile.mkdtemp(prefix="postcap-test-")
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.link = InterceptorMethods(self.clock, self.sessions, self.data_dir, 1000, derive=derive)
        self.wait(self.link.open())
        self.key = KEYS[crypto.DEFAULT_KEY]
        self.extension = crypto.LinkCounter()  # the extension's side of the link

    def wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.successResultOf(ensureDeferred(coroutine))

    def submit(self, message: dict[str, Any], key: bytes | None = None) -> Any:
        frame = self.extension.seal(key or self.key, message, crypto.TO_SERVER)
        return self.wait(self.link.submit(frame=frame, bridge_id="b1"))["reply"]

    def test_a_replayed_frame_is_stored_once(self) -> None:
        session = self.wait(self.sessions.start({"source": "interceptor"}))
        frame = self.extension.seal(self.key, {"type": "request", "record": record()},
                                    crypto.TO_SERVER)
        replies = [self.wait(self.link.submit(frame=frame, bridge_id="b1"))["reply"]
                   for _ in range(4)]
        assert replies[0] is None
        assert [r["code"] for r in replies[1:]] == ["replayed_frame"] * 3
        assert "already received" in replies[1]["message"]
        total, _ = self.successResultOf(self.store.list_transactions(session.id))
        assert total == 1
        status = self.wait(self.link.status())
        assert status["replayed_frames"] == 3 and status["captured_requests"] == 1
        assert status["rejected_frames"] == 0  # authentic frames: the keys are fine

    def test_out_of_order_frames_pass_old_and_counterless_ones_do_not(self) -> None:
        frames = [self.extension.seal(self.key, {"type": "ping"}, crypto.TO_SERVER)
                  for _ in range(300)]
        for frame in (frames[5], frames[3], frames[4], frames[299]):
            assert self.wait(self.link.submit(frame=frame))["reply"]["type"] == "sealed"
        too_old = self.wait(self.link.submit(frame=frames[10]))["reply"]
        assert too_old["code"] == "replayed_frame" and "older than" in too_old["message"]
        bare = crypto.seal(self.key, {"type": "ping"}, crypto.TO_SERVER)
        assert self.wait(self.link.submit(frame=bare))["reply"]["code"] == "replayed_frame"
        other_link = crypto.LinkCounter().seal(self.key, {"type": "ping"}, crypto.TO_SERVER)
        assert self.wait(self.link.submit(frame=other_link))["reply"]["type"] == "sealed"

    def test_server_frames_carry_its_own_increasing_counter(self) -> None:
        first = crypto.open_sealed(self.key, self.wait(self.link.config())["frame"],
                                   crypto.TO_EXTENSION)
        second = crypto.open_sealed(self.key, self.wait(self.link.config())["frame"],
                                    crypto.TO_EXTENSION)
        assert first["link"] == second["link"] and second["seq"] == first["seq"] + 1

    def test_a_request_record_becomes_an_interceptor_transaction(self) -> None:
        session = self.wait(self.sessions.start({"source": "interceptor"}))
        assert self.submit({"type": "request", "record": record()}) is None
        total, (item,) = self.successResultOf(self.store.list_transactions(session.id))
        assert total == 1
        assert item["url"] == "http://shop.test:8080/cart?x=1" and item["status"] == 201
        detail = self.successResultOf(self.store.get_transaction(item["id"]))
        assert detail["request"]["body"]["text"] == "hello"
        assert ["Set-Cookie", "a=b; Path=/"] in detail["response"]["headers"]
        assert self.wait(self.link.status())["captured_requests"] == 1
        assert self.sessions.active is not None and self.sessions.active.request_count == 1

    def test_transaction_fields(self) -> None:
        from postcap.interceptor.records import transaction_from_record

        txn = transaction_from_record(record(), "s1", body_limit=3)
        assert txn.url == "http://shop.test:8080/cart?x=1"
        assert txn.method == "POST" and txn.status == 201
        assert txn.request.target == b"/cart?x=1"
        assert txn.server.host == "shop.test" and txn.server.port == 8080
        assert txn.request.body.size == 5 and txn.request.body.content == b"hel"
        assert txn.request.body.truncated
        assert txn.response is not None and txn.response.reason == "Created"
        assert txn.response.body.size == 12 and not txn.response.body.captured
        assert txn.duration_ms == 35 and txn.timings.wait_ms == 28
        assert txn.started_at == T0
        form = transaction_from_record(record(body={"form": {"a": ["1", "2"], "b": ["é"]}}), "s1", 100)
        assert form.request.body.content == b"a=1&a=2&b=%C3%A9"
        failed = transaction_from_record(record(status=None, error="net::ERR_CONNECTION_REFUSED"), "s1", 10)
        assert failed.response is None and failed.error == "net::ERR_CONNECTION_REFUSED"

    def test_requests_outside_an_interceptor_session_or_its_filters_are_ignored(self) -> None:
        self.submit({"type": "request", "record": record()})
        self.wait(self.sessions.start({"source": "proxy"}))
        self.submit({"type": "request", "record": record()})
        self.wait(self.sessions.stop())
        self.wait(self.sessions.start({"source": "interceptor",
                                      "filters": {"methods": ["GET"], "status_codes": ["2xx"]}}))
        self.submit({"type": "request", "record": record()})
        self.submit({"type": "request", "record": record(method="GET", status=404)})
        self.submit({"type": "request", "record": record(method="GET")})
        status = self.wait(self.link.status())
        assert status["ignored_requests"] == 4 and status["captured_requests"] == 1

    def test_hello_gets_the_sealed_filters_back(self) -> None:
        self.wait(self.sessions.start({"source": "interceptor",
                                      "filters": {"url_contains": "api", "methods": ["POST"]}}))
        reply = self.submit({"type": "hello", "extension_version": "1.0.0", "user_agent": "UA"})
        config = crypto.open_sealed(self.key, reply, crypto.TO_EXTENSION)
        assert config.pop("link") == self.link.counter.link and config.pop("seq") >= 1
        assert config == {"type": "config", "session_active": True,
                          "filters": {"url_contains": "api", "url_excludes": None, "methods": ["POST"]}}
        assert self.wait(self.link.status())["extension"] == {"version": "1.0.0", "user_agent": "UA"}

    def test_config_digest_changes_with_the_session(self) -> None:
        first = self.wait(self.link.config(bridge_id="b1"))
        again = self.wait(self.link.config(bridge_id="b1"))
        assert first["digest"] == again["digest"] and first["frame"] != again["frame"]
        self.wait(self.sessions.start({"source": "interceptor"}))
        assert self.wait(self.link.config())["digest"] != first["digest"]

    def test_wrong_key_frames_are_rejected_counted_and_reported(self) -> None:
        self.wait(self.sessions.start({"source": "interceptor"}))
        self.wait(self.link.bridge(event="connect", bridge_id="b1"))
        reply = self.submit({"type": "request", "record": record()}, key=crypto.derive_key("WrongKey1234"))
        assert reply["type"] == "error" and reply["code"] == "authentication_failed"
        status = self.wait(self.link.status())
        assert status["connected"] is True and status["secure"] is False
        assert status["rejected_frames"] == 1 and status["captured_requests"] == 0
        assert "failed authentication" in status["last_error"]
        self.submit({"type": "ping"})
        status = self.wait(self.link.status())
        assert status["secure"] is True and status["last_error"] is None

    def test_connected_follows_the_bridges(self) -> None:
        assert self.wait(self.link.status())["connected"] is False
        self.wait(self.link.bridge(event="connect", bridge_id="b1"))
        assert self.wait(self.link.status())["connected"] is True
        self.clock.advance(BRIDGE_STALE_S + 1)
        assert self.wait(self.link.status())["connected"] is False
        self.wait(self.link.config(bridge_id="b1"))
        assert self.wait(self.link.status())["connected"] is True
        self.wait(self.link.bridge(event="disconnect", bridge_id="b1"))
        assert self.wait(self.link.status())["connected"] is False

    def test_set_key_validates_persists_and_switches(self) -> None:
        for bad in (None, "short", "not alnum!!", 12345678901):
            failure = self.failureResultOf(ensureDeferred(self.link.set_key(key=bad)), InvalidParams)
            assert failure.value.code == INVALID_PARAMS and "'key'" in failure.value.message
        assert self.wait(self.link.set_key(key="CustomKey123")) == {"secure": True, "custom_key": True}
        path = Path(self.data_dir, "interceptor.key")
        assert path.read_text().strip() == "CustomKey123"
        assert path.stat().st_mode & 0o777 == 0o600
        assert self.submit({"type": "ping"})["code"] == "authentication_failed"
        assert self.submit({"type": "ping"}, key=KEYS["CustomKey123"])["type"] == "sealed"
        reloaded = InterceptorMethods(self.clock, self.sessions, self.data_dir, 1000, derive=derive)
        self.wait(reloaded.open())
        assert reloaded.custom_key is True
        assert self.wait(self.link.clear_key()) == {"secure": True, "custom_key": False}
        assert not path.exists()
        assert self.submit({"type": "ping"})["type"] == "sealed"

    def test_bad_records_and_cookies_reach_their_counters_and_listeners(self) -> None:
        changes: list[BrowserCookieChange] = []
        self.link.add_cookie_listener(changes.append)
        self.wait(self.sessions.start({"source": "interceptor"}))
        self.submit({"type": "request", "record": record(url="ftp://x/")})
        self.submit({"type": "request", "record": record(status="x")})
        cookie = {"name": "a", "value": "b", "domain": "shop.test", "path": "/", "httpOnly": True}
        self.submit({"type": "cookie", "removed": False, "cause": "explicit", "cookie": cookie})
        status = self.wait(self.link.status())
        assert status["bad_records"] == 2 and status["cookies_received"] == 1
        assert changes == [BrowserCookieChange(self.sessions.active.id, False, "explicit", cookie)]

    def test_messages_the_store_cannot_hold_are_bad_records(self) -> None:
        session = self.wait(self.sessions.start({"source": "interceptor"}))
        for message in (
            {"type": "request", "record": record(request_headers=[["X-A", "\ud800"]])},
            {"type": "request", "record": record(url="http://shop.test/\udfff")},
            {"type": "request", "record": record(status=10**30)},
            {"type": "cookie", "removed": False, "cause": "explicit",
             "cookie": {"name": "\ud800", "value": "b", "domain": "shop.test", "path": "/"}},
        ):
            # As the browser's JSON.stringify writes them: lone surrogates as \u escapes.
            iv = os.urandom(12)
            plaintext = json.dumps(self.extension.stamp(message)).encode("ascii")
            sealed = AESGCM(self.key).encrypt(iv, plaintext, crypto.TO_SERVER)
            frame = {"type": "sealed", "v": crypto.VERSION, "iv": base64.b64encode(iv).decode(),
                     "ct": base64.b64encode(sealed).decode()}
            assert self.wait(self.link.submit(frame=frame))["reply"] is None
        status = self.wait(self.link.status())
        assert (status["bad_records"], status["captured_requests"], status["cookies_received"]) == (4, 0, 0)
        assert "lone surrogate" in status["last_error"]
        assert self.successResultOf(self.store.list_transactions(session.id))[0] == 0

    def test_bridge_params_are_validated(self) -> None:
        dispatcher = JSONRPCDispatcher()
        self.link.install(dispatcher)

        def error(method: str, **params: Any) -> dict[str, Any]:
            call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            return self.wait(dispatcher.handle_object(call))["error"]

        assert error("interceptor.bridge", event="boot", bridge_id="b")["data"] == {"param": "event"}
        assert error("interceptor.submit", frame="x")["data"] == {"param": "frame"}
        assert error("interceptor.bridge", event="connect", bridge_id="b" * 101)["code"] == INVALID_PARAMS


def test_browser_cookies_map_to_jar_cookies() -> None:
    from postcap.interceptor.cookies import cookie_from_browser

    cookie = cookie_from_browser({
        "name": "sid", "value": "v", "domain": ".Example.test", "hostOnly": False, "path": "/app",
        "secure": True, "httpOnly": True, "sameSite": "no_restriction", "session": False,
        "expirationDate": 1_900_000_000.5, "storeId": "0"})
    assert cookie is not None
    assert (cookie.domain, cookie.path, cookie.expires, cookie.same_site) == (
        "example.test", "/app", 1_900_000_000.5, "None")
    assert cookie.http_only and cookie.secure and not cookie.host_only
    session = cookie_from_browser({"name": "a", "value": "b", "domain": "x.test", "session": True,
                                   "sameSite": "unspecified", "hostOnly": True, "path": "/"})
    assert session is not None and session.expires is None and session.same_site is None
    assert cookie_from_browser({"name": "a", "domain": "x.test"}) is None
    assert cookie_from_browser({"name": "a", "value": "b", "domain": "."}) is None
