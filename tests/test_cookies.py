"""RFC 6265 parsing, matching and cookies.txt, and the jar/sync/capture sinks over a
real SQLite history store."""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from postcap.cookies import (
    Cookie,
    cookie_header,
    default_path,
    domain_matches,
    netscape_file,
    parse_cookie_header,
    LATEST_EXPIRY,
    parse_set_cookie,
    parse_set_cookies,
    path_matches,
)
from postcap.sinks.cookies import CookieCapture, CookieJar, CookieSync, cookies_of, select_captured
from postcap.sinks.history import SQLiteHistoryStore
from postcap.testing import make_session, make_transaction

NOW = 1_800_000_000.0


class ParsingTests(SynchronousTestCase):
    def test_cookie_header_pairs(self) -> None:
        self.assertEqual(parse_cookie_header("a=1; b=two=2;bad; c="),
                         [("a", "1"), ("b", "two=2"), ("c", "")])

    def test_host_only_cookie_with_default_path(self) -> None:
        cookie = parse_set_cookie("sid=abc; HttpOnly", "http://api.example.com/v1/login", NOW)
        self.assertEqual(cookie, Cookie("sid", "abc", "api.example.com", "/v1", None,
                                        http_only=True, host_only=True))

    def test_domain_cookie_with_every_attribute(self) -> None:
        cookie = parse_set_cookie(
            "t=1; Domain=.Example.com; Path=/; Secure; SameSite=lax; Max-Age=60; "
            "Expires=Wed, 09 Jun 2021 10:18:14 GMT", "https://www.example.com/", NOW)
        assert cookie is not None
        self.assertEqual((cookie.domain, cookie.host_only, cookie.secure, cookie.same_site),
                         ("example.com", False, True, "Lax"))
        self.assertEqual(cookie.expires, NOW + 60)  # Max-Age wins over Expires

    def test_expires_and_deletion(self) -> None:
        cookie = parse_set_cookie("a=1; Expires=Wed, 09 Jun 2021 10:18:14 GMT", "http://h/", NOW)
        assert cookie is not None and cookie.expired(NOW)
        gone = parse_set_cookie("a=; Max-Age=0", "http://h/", NOW)
        assert gone is not None and gone.expired(NOW)

    def test_foreign_domain_and_nameless_are_ignored(self) -> None:
        self.assertIsNone(parse_set_cookie("a=1; Domain=evil.com", "http://example.com/", NOW))
        self.assertIsNone(parse_set_cookie("novalue", "http://example.com/", NOW))
        self.assertIsNone(parse_set_cookie("a=1; Domain=0.0.1", "http://127.0.0.1/", NOW))

    def test_huge_max_age_is_capped(self) -> None:
        for digits in ("1" + "0" * 400, "9" * 5000, "253402300800"):
            cookie = parse_set_cookie(f"huge=1; Max-Age={digits}", "http://h/", NOW)
            assert cookie is not None
            self.assertEqual(cookie.expires, LATEST_EXPIRY)
            self.assertEqual(cookie.to_json()["expires"], "9999-12-31T23:59:59Z")
        zeros = parse_set_cookie("z=1; Max-Age=" + "0" * 400, "http://h/", NOW)
        assert zeros is not None and zeros.expired(NOW)
        self.assertEqual(parse_set_cookie("m=1; Max-Age=-" + "9" * 400, "http://h/", NOW).expires, 0.0)

    def test_one_bad_cookie_costs_only_itself(self) -> None:
        headers = ((b"Set-Cookie", b"huge=1; Max-Age=1" + b"0" * 400), (b"Set-Cookie", b"ok=1"))
        found = cookies_of(make_transaction(url="http://h.test/", response_headers=headers), NOW)
        self.assertEqual([(source, c.name) for source, c in found],
                         [("response", "huge"), ("response", "ok")])
        self.assertEqual([c.name for c in parse_set_cookies(
            ["a=1; Domain=evil.example", "b=2", "=nameless"], "http://h.test/", NOW)], ["b"])

    def test_matching_rules(self) -> None:
        self.assertTrue(domain_matches("a.b.example.com", "example.com"))
        self.assertFalse(domain_matches("badexample.com", "example.com"))
        self.assertTrue(path_matches("/api/x", "/api"))
        self.assertFalse(path_matches("/apix", "/api"))
        self.assertEqual(default_path("/a/b/c"), "/a/b")
        secure = Cookie("s", "1", "example.com", "/", None, secure=True, host_only=False)
        self.assertTrue(secure.matches("https://x.example.com/p", NOW))
        self.assertFalse(secure.matches("http://x.example.com/p", NOW))
        self.assertEqual(cookie_header([Cookie("a", "1", "h", "/"), Cookie("b", "2", "h", "/deep")]),
                         "b=2; a=1")


class NetscapeTests(SynchronousTestCase):
    def test_python_cookiejar_reads_the_file(self) -> None:
        cookies = [
            Cookie("sid", "abc", "example.com", "/", NOW + 3600, http_only=True, host_only=False),
            Cookie("host", "v", "api.example.com", "/v1", None, secure=True),
        ]
        text = netscape_file(cookies)
        self.assertTrue(text.startswith("# Netscape HTTP Cookie File\n"))
        self.assertIn("#HttpOnly_.example.com\tTRUE\t/\tFALSE\t", text)
        self.assertIn("api.example.com\tFALSE\t/v1\tTRUE\t0\thost\tv\n", text)
        path = os.path.join(tempfile.mkdtemp(), "cookies.txt")
        with open(path, "w") as handle:
            handle.write(text)
        jar = http.cookiejar.MozillaCookieJar(path)
        jar.load(ignore_discard=True, ignore_expires=True)
        self.assertEqual(sorted(c.name for c in jar), ["host", "sid"])


class StoreBackedTests(TestCase):
    async def open_store(self) -> SQLiteHistoryStore:
        directory = tempfile.mkdtemp(prefix="postcap-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        store = SQLiteHistoryStore(os.path.join(directory, "h.sqlite3"))
        await store.open()
        self.addCleanup(store.close)
        return store

    async def test_jar_keys_persist_and_drop_expired(self) -> None:
        store = await self.open_store()
        now = [NOW]
        jar = CookieJar(store, clock=lambda: now[0])
        await jar.add([Cookie("a", "1", "example.com", "/", NOW + 10),
                       Cookie("a", "2", "example.com", "/", None),  # same key: replaces
                       Cookie("b", "x", "example.com", "/", NOW - 1)])  # expired: not kept
        self.assertEqual([(c.name, c.value) for c in jar.cookies()], [("a", "2")])
        reloaded = CookieJar(store, clock=lambda: now[0])
        await reloaded.load()
        self.assertEqual(reloaded.cookies(), jar.cookies())
        await jar.add([Cookie("t", "1", "example.com", "/", NOW + 5)])
        now[0] = NOW + 6
        self.assertEqual([c.name for c in jar.cookies("example.com")], ["a"])
        self.assertEqual(await jar.delete("example.com", "a"), 1)
        self.assertEqual(jar.cookies(), [])

    async def test_failed_add_leaves_the_jar_as_it_was_across_a_restart(self) -> None:
        directory = tempfile.mkdtemp(prefix="postcap-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "h.sqlite3")
        store = SQLiteHistoryStore(path)
        await store.open()
        jar = CookieJar(store, clock=lambda: NOW)
        await jar.load()
        await jar.add([Cookie("kept", "1", "example.com")])
        before = jar.cookies()
        await store.close()  # every write now fails
        with self.assertRaises(Exception):
            await jar.add([Cookie("new", "2", "example.com"),
                           Cookie("kept", "changed", "example.com")])
        with self.assertRaises(Exception):
            await jar.delete("example.com", None)
        self.assertEqual(jar.cookies(), before)
        restarted_store = SQLiteHistoryStore(path)
        await restarted_store.open()
        self.addCleanup(restarted_store.close)
        restarted = CookieJar(restarted_store, clock=lambda: NOW)
        await restarted.load()
        self.assertEqual(restarted.cookies(), before)

    async def test_last_cookie_of_a_key_wins_in_memory_and_on_disk(self) -> None:
        store = await self.open_store()
        jar = CookieJar(store, clock=lambda: NOW)
        kept = await jar.add([Cookie("a", "old", "example.com", "/", NOW - 1),
                              Cookie("a", "new", "example.com", "/", None)])
        self.assertEqual(kept, 1)
        reloaded = CookieJar(store, clock=lambda: NOW)
        await reloaded.load()
        self.assertEqual(reloaded.cookies(), jar.cookies())
        self.assertEqual([c.value for c in jar.cookies()], ["new"])

    async def test_sync_takes_set_cookie_of_chosen_domains_only(self) -> None:
        store = await self.open_store()
        jar = CookieJar(store, clock=lambda: NOW)
        sync = CookieSync(jar, store, clock=lambda: NOW)
        self.assertFalse(sync.wants_all)
        await sync.set(True, ["example.com"])
        self.assertTrue(sync.wants_all)
        for url, header in (("http://api.example.com/", b"s=1"), ("http://other.test/", b"o=1"),
                            ("http://example.com/", b"gone=1; Max-Age=0")):
            sync.observe(make_transaction(session_id=None, url=url,
                                          response_headers=((b"Set-Cookie", header),)))
        await store.flush()
        await store.run(lambda cursor: None)
        self.assertEqual([(c.domain, c.name) for c in jar.cookies()], [("api.example.com", "s")])
        again = CookieSync(jar, store)
        await again.load()
        self.assertEqual(again.state(), {"enabled": True, "domains": ["example.com"]})

    async def test_capture_records_request_and_response_cookies(self) -> None:
        store = await self.open_store()
        session = make_session()
        await store.save_session(session)
        announced: list[Any] = []
        capture = CookieCapture(store, lambda sid: sid == session.id, clock=lambda: NOW)
        capture.add_listener(announced.extend)
        txn = make_transaction(session_id=session.id, url="http://h.test/a/b",
                               request_headers=((b"Cookie", b"c1=v1; c2=v2"),),
                               response_headers=((b"Set-Cookie", b"n=1; Path=/; Secure"),))
        await store.transactionCompleted(txn)
        await capture.transactionCompleted(txn)
        total, items = await store.run(select_captured, session.id, 10, 0)
        self.assertEqual(total, 3)
        self.assertEqual([(i["source"], i["name"]) for i in items],
                         [("request", "c1"), ("request", "c2"), ("response", "n")])
        self.assertEqual(items[2]["secure"], True)
        self.assertEqual(announced, items)
        self.assertEqual(await store.delete_transactions([txn.id]), 1)
        self.assertEqual((await store.run(select_captured, session.id, 10, 0))[0], 0)
