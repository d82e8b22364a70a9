"""What every IHistoryStore must do, as a mixin for trial test cases.

Use it as ``class MyStoreTests(HistoryStoreConformance, TestCase)`` and define
``make_store()``, which returns an opened store or a Deferred firing with one
(and registers whatever cleanup the store needs; ``close()`` may be called
twice).  The mixin includes :class:`CaptureSinkConformance`, since a history
store is a capture sink.

Only the interface's behaviour is checked here, plus the extras both stores
share (``update_session``, ``list_details``, ``delete_transactions`` and the
``list_transactions`` filters).  How a store gets there (batching, schema
migrations, files) is tested with the store itself.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from postcap.interfaces import IHistoryStore
from postcap.encodings import decode
from postcap.model import Body, Transaction
from postcap.sinks.history import HistoryStoreClosed
from postcap.testing import make_session, make_transaction, spooled_body
from tests.sink_conformance import CaptureSinkConformance


class ExplodingBody(Body):
    """A captured body whose stored copy cannot be read (not an OSError): a bug."""

    __slots__ = ()

    def read(self) -> bytes:
        raise RuntimeError("disk on fire")


def expected_detail(txn: Transaction) -> dict[str, Any]:
    """The detail a store must give back for ``txn``, bodies included."""
    response_body = b"" if txn.response is None else txn.response.body.read()
    return txn.detail(txn.request.body.read(), response_body)


def encoded_transaction(response_body: bytes | Body, coding: str = "gzip", **fields: Any) -> Transaction:
    """A transaction whose response was sent with ``Content-Encoding: coding``."""
    headers = ((b"Content-Type", b"text/plain"), (b"Content-Encoding", coding.encode()))
    return make_transaction(response_headers=headers, response_body=response_body, **fields)


def ends_at(txn: Transaction) -> float:
    return txn.started_at + txn.duration_ms / 1000.0


class HistoryStoreConformance(CaptureSinkConformance):
    """Tests run against every history store implementation."""

    def make_store(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define make_store()")

    def make_sink(self) -> Any:
        return self.make_store()

    async def store(self) -> Any:
        return await maybeDeferred(self.make_store)

    def temp_dir(self) -> str:
        directory = tempfile.mkdtemp(prefix="postcap-conformance-")
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    # -- the interface ---------------------------------------------------------------

    async def test_provides_history_interface(self) -> None:
        store = await self.store()
        self.assertTrue(verifyObject(IHistoryStore, store))

    async def test_open_again_is_harmless(self) -> None:
        store = await self.store()
        record = make_session()
        await store.save_session(record)
        await store.open()
        self.assertEqual(await store.get_session(record.id), record)

    async def test_stats_count_written_and_dropped(self) -> None:
        store = await self.store()
        await store.save_session(make_session(id="counted"))
        for _ in range(2):
            store.transactionCompleted(make_transaction(session_id="counted"))
        store.transactionCompleted(make_transaction(session_id=None))  # not a capture
        await store.flush()
        self.assertEqual((store.stats.written, store.stats.pending, store.stats.dropped),
                         (2, 0, 0))
        self.assertTrue(store.stats.available)
        await store.close()
        await self.assertFailure(
            store.transactionCompleted(make_transaction(session_id="counted")), HistoryStoreClosed)
        self.assertEqual(store.stats.dropped, 1)

    async def test_closed_store_refuses_work(self) -> None:
        store = await self.store()
        await store.close()
        await self.assertFailure(
            store.transactionCompleted(make_transaction()), HistoryStoreClosed
        )
        await self.assertFailure(store.get_session("x"), HistoryStoreClosed)
        await self.assertFailure(store.save_session(make_session()), HistoryStoreClosed)
        await self.assertFailure(store.list_transactions(None), HistoryStoreClosed)
        await store.flush()

    # -- sessions ----------------------------------------------------------------------

    async def test_session_round_trip(self) -> None:
        store = await self.store()
        record = make_session(state="stopped", stopped_at=1_700_000_100.5, last_activity=None)
        await store.save_session(record)
        self.assertEqual(await store.get_session(record.id), record)

    async def test_missing_session(self) -> None:
        store = await self.store()
        self.assertIsNone(await store.get_session("nope"))

    async def test_save_replaces_every_field(self) -> None:
        store = await self.store()
        record = make_session()
        await store.save_session(record)
        changed = replace(
            record,
            name="renamed",
            state="paused",
            options={**record.options, "save_responses": False},
            request_count=7,
            total_bytes=700,
            last_activity=1_700_000_009.0,
        )
        await store.save_session(changed)
        self.assertEqual(await store.get_session(record.id), changed)

    async def test_session_results_are_copies(self) -> None:
        store = await self.store()
        record = make_session()
        await store.save_session(record)
        record.options["filters"]["methods"].append("GET")
        fetched = await store.get_session(record.id)
        self.assertEqual(fetched.options["filters"]["methods"], [])
        fetched.options["name"] = "changed behind the store's back"
        again = await store.get_session(record.id)
        self.assertEqual(again.options["name"], "Proxy debug session")

    async def test_update_session_changes_only_given_fields(self) -> None:
        store = await self.store()
        record = make_session(request_count=3, total_bytes=30)
        await store.save_session(record)
        updated = await store.update_session(record.id, state="stopped", stopped_at=5.0)
        self.assertEqual(updated, replace(record, state="stopped", stopped_at=5.0))
        self.assertEqual(await store.get_session(record.id), updated)
        options = {**record.options, "name": "renamed"}
        renamed = await store.update_session(record.id, name="renamed", options=options)
        self.assertEqual(renamed, replace(updated, name="renamed", options=options))
        self.assertEqual(await store.update_session(record.id), renamed)
        self.assertIsNone(await store.update_session("nope", state="stopped"))
        await self.assertFailure(store.update_session(record.id, colour="red"), TypeError)
        self.assertEqual(await store.get_session(record.id), renamed)

    async def test_list_sessions_newest_first_with_paging(self) -> None:
        store = await self.store()
        self.assertEqual(await store.list_sessions(10, 0), (0, []))
        records = [make_session(started_at=1_700_000_000.0 + n) for n in (3, 1, 4, 0, 2)]
        for record in records:
            await store.save_session(record)
        newest_first = sorted(records, key=lambda r: r.started_at, reverse=True)
        self.assertEqual(await store.list_sessions(10, 0), (5, newest_first))
        self.assertEqual(await store.list_sessions(2, 1), (5, newest_first[1:3]))
        self.assertEqual(await store.list_sessions(2, 10), (5, []))
        self.assertEqual(await store.list_sessions(0, 0), (5, []))
        self.assertEqual(await store.list_sessions(), (5, newest_first))

    async def test_delete_session_removes_its_transactions(self) -> None:
        store = await self.store()
        doomed, kept = make_session(), make_session()
        await store.save_session(doomed)
        await store.save_session(kept)
        gone = make_transaction(session_id=doomed.id, request_body=b"payload")
        stays = make_transaction(session_id=kept.id)
        store.transactionCompleted(gone)
        store.transactionCompleted(stays)

        self.assertIs(await store.delete_session(doomed.id), True)

        self.assertIsNone(await store.get_session(doomed.id))
        self.assertIsNone(await store.get_transaction(gone.id))
        self.assertEqual(await store.list_transactions(doomed.id), (0, []))
        self.assertEqual(await store.list_sessions(), (1, [await store.get_session(kept.id)]))
        self.assertEqual(await store.get_transaction(stays.id), expected_detail(stays))
        self.assertIs(await store.delete_session(doomed.id), False)

    async def test_clear_session(self) -> None:
        store = await self.store()
        cleared, other = make_session(), make_session()
        await store.save_session(cleared)
        await store.save_session(other)
        for session in (cleared, other, cleared):
            store.transactionCompleted(make_transaction(session_id=session.id))
        self.assertEqual((await store.get_session(cleared.id)).request_count, 2)

        record = await store.clear_session(cleared.id)

        self.assertEqual(
            record, replace(cleared, request_count=0, total_bytes=0, last_activity=None)
        )
        self.assertEqual(await store.get_session(cleared.id), record)
        self.assertEqual(await store.list_transactions(cleared.id), (0, []))
        total, _ = await store.list_transactions(other.id)
        self.assertEqual(total, 1)
        self.assertEqual((await store.get_session(other.id)).request_count, 1)
        self.assertIsNone(await store.clear_session("nope"))

    async def test_cleared_session_counts_again(self) -> None:
        store = await self.store()
        record = make_session()
        await store.save_session(record)
        store.transactionCompleted(make_transaction(session_id=record.id))
        await store.clear_session(record.id)
        later = make_transaction(session_id=record.id, started_at=2_000.0)
        store.transactionCompleted(later)
        again = await store.get_session(record.id)
        self.assertEqual(
            (again.request_count, again.total_bytes, again.last_activity),
            (1, later.response_bytes, ends_at(later)),
        )

    # -- recovery ------------------------------------------------------------------------

    async def test_live_sessions_come_back_stopped(self) -> None:
        store = await self.store()
        running = make_session(state="running", started_at=100.0)
        paused = make_session(state="paused", started_at=200.0)
        stopped = make_session(state="stopped", started_at=50.0, stopped_at=60.0)
        for record in (running, paused, stopped):
            await store.save_session(record)
        store.transactionCompleted(
            make_transaction(session_id=running.id, started_at=110.0, duration_ms=500.0)
        )
        store.transactionCompleted(
            make_transaction(session_id=running.id, started_at=105.0, duration_ms=250.0)
        )

        recovered = await store.recover_interrupted()

        self.assertEqual(sorted(recovered), sorted([running.id, paused.id]))
        after_running = await store.get_session(running.id)
        self.assertEqual((after_running.state, after_running.stopped_at), ("stopped", 110.5))
        self.assertEqual(after_running.request_count, 2)
        after_paused = await store.get_session(paused.id)
        self.assertEqual((after_paused.state, after_paused.stopped_at), ("stopped", 200.0))
        self.assertEqual(await store.get_session(stopped.id), stopped)
        self.assertEqual(await store.recover_interrupted(), [])

    async def test_recovery_falls_back_to_last_transaction(self) -> None:
        store = await self.store()
        record = make_session(started_at=100.0)
        await store.save_session(record)
        store.transactionCompleted(
            make_transaction(session_id=record.id, started_at=120.0, duration_ms=2000.0)
        )
        # A later save from a record that never saw the activity time.
        await store.save_session(replace(record, request_count=1, last_activity=None))
        self.assertEqual(await store.recover_interrupted(), [record.id])
        self.assertEqual((await store.get_session(record.id)).stopped_at, 122.0)

    async def test_nothing_to_recover(self) -> None:
        store = await self.store()
        self.assertEqual(await store.recover_interrupted(), [])

    # -- transactions --------------------------------------------------------------------

    async def stored(self, store: Any, txn: Transaction) -> None:
        """``txn`` reads back as its own summary and detail."""
        await store.transactionCompleted(txn)
        total, items = await store.list_transactions(txn.session_id)
        self.assertEqual(items[-1], txn.summary())
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))

    async def test_transaction_round_trip(self) -> None:
        store = await self.store()
        await self.stored(store, make_transaction(method="POST", request_body=b'{"a": 1}'))

    async def test_https_round_trip(self) -> None:
        store = await self.store()
        await self.stored(store, make_transaction(url="https://api.example.test:8443/v1?q=é"))

    async def test_http2_with_trailers_round_trip(self) -> None:
        store = await self.store()
        txn = make_transaction(
            url="https://grpc.example.test/pkg.Service/Call", method="POST", http_version="HTTP/2",
            request_trailers=((b"x-sum", b"1"),),
            response_trailers=((b"grpc-status", b"0"), (b"grpc-message", b"")),
        )
        await self.stored(store, txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail["response"]["trailers"], [["grpc-status", "0"], ["grpc-message", ""]])
        self.assertEqual(detail["request"]["trailers"], [["x-sum", "1"]])
        self.assertEqual(detail["request"]["http_version"], "HTTP/2")

    async def test_binary_bodies(self) -> None:
        store = await self.store()
        txn = make_transaction(request_body=b"\xff\x00\xfe", response_body=bytes(range(256)))
        await self.stored(store, txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail["response"]["body"]["encoding"], "base64")

    async def test_spooled_bodies(self) -> None:
        store = await self.store()
        spool_dir = self.temp_dir()
        data = b"spooled \xe2\x9c\x93 " * 5000
        txn = make_transaction(
            request_body=spooled_body(b"req" * 10, spool_dir),
            response_body=spooled_body(data, spool_dir),
        )
        expected = expected_detail(txn)
        await store.transactionCompleted(txn)
        txn.discard_spools()
        self.assertEqual(os.listdir(spool_dir), [])
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail, expected)
        self.assertEqual(detail["response"]["body"]["text"], data.decode("utf-8"))

    async def test_bodies_not_captured(self) -> None:
        store = await self.store()
        txn = make_transaction(
            response_body=Body(size=1234, captured=False),
            content_type="image/png",
        )
        await self.stored(store, txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail["response"]["body"]["text"], "")
        self.assertEqual(detail["response_bytes"], 1234)

    async def test_truncated_body(self) -> None:
        store = await self.store()
        cut = Body(size=10_000, captured=True, truncated=True, content=b"x" * 100)
        await self.stored(store, make_transaction(response_body=cut))

    async def test_error_transaction(self) -> None:
        store = await self.store()
        await self.stored(store, make_transaction(error="upstream timed out", status=504))

    async def test_missing_spool_keeps_the_transaction(self) -> None:
        store = await self.store()
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        lost = Body(size=5, captured=True, spool_path=os.path.join(self.temp_dir(), "gone"))
        txn = make_transaction(response_body=lost)
        await store.transactionCompleted(txn)
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail, txn.detail(b"", b""))
        logged = [e for e in events if e.get("txn_id") == txn.id]
        self.assertEqual([e["part"] for e in logged], ["response"])

    async def test_unreadable_body_fails_that_transaction_only(self) -> None:
        store = await self.store()
        session = make_session()
        await store.save_session(session)
        bad = store.transactionCompleted(
            make_transaction(session_id=session.id, response_body=ExplodingBody(3, True))
        )
        await self.assertFailure(bad, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        self.assertEqual(await store.list_transactions(session.id), (0, []))
        self.assertEqual(await store.get_session(session.id), session)
        later = make_transaction(session_id=session.id)
        await store.transactionCompleted(later)
        self.assertEqual(await store.list_transactions(session.id), (1, [later.summary()]))

    async def test_list_in_capture_order_with_paging(self) -> None:
        store = await self.store()
        session = make_session()
        # Later captures may have started earlier: capture order wins.
        txns = [
            make_transaction(session_id=session.id, started_at=1000.0 - n, url=f"http://a.test/{n}")
            for n in range(7)
        ]
        for txn in txns:
            store.transactionCompleted(txn)
        store.transactionCompleted(make_transaction(session_id="another"))
        total, items = await store.list_transactions(session.id, 3, 3)
        self.assertEqual(total, 7)
        self.assertEqual(items, [txn.summary() for txn in txns[3:6]])
        self.assertEqual(
            await store.list_transactions(session.id), (7, [t.summary() for t in txns])
        )
        self.assertEqual(await store.list_transactions(session.id, 0), (7, []))
        self.assertEqual(await store.list_transactions(session.id, 5, 100), (7, []))
        total, _ = await store.list_transactions(None)
        self.assertEqual(total, 8)

    async def test_list_filters(self) -> None:
        store = await self.store()
        sid = "s"
        txns = {
            "get": make_transaction(session_id=sid, url="http://api.example.test/users?q=100%"),
            "post": make_transaction(session_id=sid, method="POST", url="http://example.test/x"),
            "missing": make_transaction(session_id=sid, status=404, url="http://other.test/y"),
            "broken": make_transaction(session_id=sid, status=503, url="http://badexample.test/"),
            "failed": make_transaction(
                session_id=sid, error="refused", url="http://example.test/down"
            ),
        }
        for txn in txns.values():
            store.transactionCompleted(txn)
        store.transactionCompleted(make_transaction(session_id="other", url="http://example.test/"))

        async def ids(**filters: Any) -> list[str]:
            _, items = await store.list_transactions(sid, **filters)
            return [item["id"] for item in items]

        self.assertEqual(await ids(query="USERS"), [txns["get"].id])
        self.assertEqual(await ids(query="100%"), [txns["get"].id])
        self.assertEqual(await ids(query="_"), [])
        self.assertEqual(await ids(method="post"), [txns["post"].id])
        self.assertEqual(await ids(status=404), [txns["missing"].id])
        self.assertEqual(await ids(status="404"), [txns["missing"].id])
        self.assertEqual(await ids(status="5xx"), [txns["broken"].id])
        self.assertEqual(
            await ids(domain="example.test"),
            [txns["get"].id, txns["post"].id, txns["failed"].id],
        )
        self.assertEqual(await ids(domain="EXAMPLE.test."), await ids(domain="example.test"))
        both = await ids(status="2xx", domain="example.test", method="GET")
        self.assertEqual(both, [txns["get"].id])
        self.assertEqual(len(await ids(query="", method="", domain="")), 5)
        total, _ = await store.list_transactions(None, domain="example.test")
        self.assertEqual(total, 4)
        total, items = await store.list_transactions(sid, 1, 1, domain="example.test")
        self.assertEqual((total, [i["id"] for i in items]), (3, [txns["post"].id]))
        await self.assertFailure(store.list_transactions(sid, status="teapot"), ValueError)

    async def test_encoded_bodies_keep_their_bytes_and_gain_decoded_copies(self) -> None:
        store = await self.store()
        text = "caf\u00e9 " * 200
        sent = gzip.compress(text.encode("utf-8"))
        txn = encoded_transaction(sent, "GZIP")
        await store.transactionCompleted(txn)
        body = (await store.get_transaction(txn.id))["response"]["body"]
        expected = expected_detail(txn)["response"]["body"]
        self.assertEqual({k: body[k] for k in expected}, expected)
        self.assertEqual(body["content_encoding"], "gzip")
        self.assertEqual(body["encoding"], "base64")  # the bytes as sent
        self.assertEqual(body["decoded"], {"size": len(text.encode()), "truncated": False,
                                           "encoding": "utf-8", "text": text})
        self.assertNotIn("decode_error", body)

    async def test_spooled_encoded_body_is_decoded(self) -> None:
        store = await self.store()
        text = b"spooled and gzipped " * 40_000
        txn = encoded_transaction(spooled_body(gzip.compress(text), self.temp_dir()))
        await store.transactionCompleted(txn)
        txn.discard_spools()
        decoded = (await store.get_transaction(txn.id))["response"]["body"]["decoded"]
        self.assertEqual((decoded["text"].encode(), decoded["truncated"]), (text, False))

    async def test_undecodable_body_is_kept_raw_and_says_why(self) -> None:
        store = await self.store()
        txn = encoded_transaction(b"not gzip at all", "gzip")
        await store.transactionCompleted(txn)
        body = (await store.get_transaction(txn.id))["response"]["body"]
        self.assertEqual(body["text"], "not gzip at all")
        self.assertIn("incorrect header check", body["decode_error"])
        self.assertNotIn("decoded", body)

    async def test_truncated_encoded_body_decodes_as_far_as_it_goes(self) -> None:
        store = await self.store()
        whole = gzip.compress(bytes(range(256)) * 400, compresslevel=0)
        cut = Body(size=len(whole), captured=True, truncated=True, content=whole[:5000])
        txn = encoded_transaction(cut)
        await store.transactionCompleted(txn)
        decoded = (await store.get_transaction(txn.id))["response"]["body"]["decoded"]
        self.assertTrue(decoded["truncated"])
        self.assertEqual(decoded, decode(whole[:5000], "gzip", 1 << 20, True).to_json())
        self.assertGreater(decoded["size"], 4000)

    async def test_search_in_headers_and_bodies(self) -> None:
        store = await self.store()
        sid = "s"
        txns = {
            "raw": make_transaction(session_id=sid, response_body=b"a plain needle"),
            "decoded": encoded_transaction(gzip.compress(b"a gzipped needle"), session_id=sid),
            "header": make_transaction(
                session_id=sid, request_headers=((b"X-Search", b"Needle-Header"),)),
            "none": encoded_transaction(gzip.compress(b"nothing here"), session_id=sid),
        }
        for txn in txns.values():
            store.transactionCompleted(txn)

        async def ids(query: str, *places: str) -> set[str]:
            _, items = await store.list_transactions(sid, query=query, search_in=places)
            return {item["id"] for item in items}

        self.assertEqual(await ids("needle"), set())
        self.assertEqual(await ids("needle", "body"), {txns["raw"].id, txns["decoded"].id})
        self.assertEqual(await ids("NEEDLE-header", "headers"), {txns["header"].id})
        self.assertEqual(await ids("Needle", "body"), set())  # bodies match exact bytes
        self.assertEqual(len(await ids("needle", "headers", "body")), 3)

    async def test_missing_transaction(self) -> None:
        store = await self.store()
        self.assertIsNone(await store.get_transaction("nope"))

    async def test_list_details_for_exports(self) -> None:
        store = await self.store()
        txns = [make_transaction(session_id="s", response_body=bytes([n]) * 3) for n in range(4)]
        for txn in txns:
            store.transactionCompleted(txn)
        details = await store.list_details("s", 2, 1)
        self.assertEqual(details, [expected_detail(txn) for txn in txns[1:3]])
        self.assertEqual(await store.list_details("s"), [expected_detail(t) for t in txns])
        self.assertEqual(await store.list_details("nope"), [])

    async def test_delete_transactions_updates_counters(self) -> None:
        store = await self.store()
        session = make_session()
        await store.save_session(session)
        txns = [make_transaction(session_id=session.id) for _ in range(3)]
        for txn in txns:
            store.transactionCompleted(txn)
        deleted = await store.delete_transactions([txns[0].id, txns[2].id, txns[0].id, "nope"])
        self.assertEqual(deleted, 2)
        self.assertEqual(await store.list_transactions(session.id), (1, [txns[1].summary()]))
        self.assertIsNone(await store.get_transaction(txns[0].id))
        record = await store.get_session(session.id)
        self.assertEqual((record.request_count, record.total_bytes), (1, txns[1].response_bytes))
        self.assertEqual(await store.delete_transactions([]), 0)

    async def test_session_less_transactions_are_not_stored(self) -> None:
        store = await self.store()
        done = store.transactionCompleted(make_transaction(session_id=None))
        self.assertIsNone(await done)
        self.assertEqual(await store.list_transactions(None), (0, []))

    async def test_duplicate_ids_are_stored_once(self) -> None:
        store = await self.store()
        session = make_session()
        await store.save_session(session)
        txn = make_transaction(session_id=session.id)
        store.transactionCompleted(txn)
        await store.transactionCompleted(txn)
        self.assertEqual(await store.list_transactions(session.id), (1, [txn.summary()]))
        self.assertEqual((await store.get_session(session.id)).request_count, 1)

    async def test_counters_follow_stored_transactions(self) -> None:
        store = await self.store()
        one, two = make_session(), make_session()
        await store.save_session(one)
        await store.save_session(two)
        txns = [
            make_transaction(session_id=one.id, request_body=b"abc", started_at=10.0),
            make_transaction(session_id=one.id, started_at=20.0, duration_ms=1500.0),
            make_transaction(session_id=one.id, started_at=21.0, duration_ms=100.0),
            make_transaction(session_id=two.id, error="refused", started_at=5.0),
        ]
        for txn in txns:
            store.transactionCompleted(txn)
        await store.flush()

        first = await store.get_session(one.id)
        self.assertEqual(first.request_count, 3)
        self.assertEqual(
            first.total_bytes, sum(t.request_bytes + t.response_bytes for t in txns[:3])
        )
        self.assertEqual(first.last_activity, 21.5)
        second = await store.get_session(two.id)
        self.assertEqual((second.request_count, second.total_bytes), (1, 0))
        self.assertEqual(second.last_activity, 5.0425)

        # Activity never moves back: a late capture that started earlier keeps 21.5.
        store.transactionCompleted(make_transaction(session_id=one.id, started_at=1.0))
        later = await store.get_session(one.id)
        self.assertEqual((later.request_count, later.last_activity), (4, 21.5))

    async def test_transactions_of_unknown_sessions_are_kept(self) -> None:
        store = await self.store()
        txn = make_transaction(session_id="never-saved")
        await store.transactionCompleted(txn)
        self.assertIsNone(await store.get_session("never-saved"))
        self.assertEqual(await store.list_transactions("never-saved"), (1, [txn.summary()]))

    async def test_reads_see_writes_not_yet_confirmed(self) -> None:
        store = await self.store()
        session = make_session()
        await store.save_session(session)
        txn = make_transaction(session_id=session.id)
        store.transactionCompleted(txn)  # not awaited
        self.assertEqual(await store.get_transaction(txn.id), expected_detail(txn))
        other = make_transaction(session_id=session.id)
        store.transactionCompleted(other)
        self.assertEqual(
            await store.list_transactions(session.id), (2, [txn.summary(), other.summary()])
        )
        store.transactionCompleted(make_transaction(session_id=session.id))
        self.assertEqual((await store.get_session(session.id)).request_count, 3)
        store.transactionCompleted(make_transaction(session_id=session.id))
        self.assertEqual((await store.list_sessions())[1][0].request_count, 4)
        store.transactionCompleted(make_transaction(session_id=session.id))
        self.assertEqual(len(await store.list_details(session.id)), 5)

    # -- WebSocket messages (IWebSocketHistory) ------------------------------------------

    async def websocket_with_messages(self, store: Any, count: int = 3) -> tuple[Transaction, list[Any]]:
        from postcap.model import WebSocketMessage

        txn = make_transaction(session_id="s", kind="websocket", status=101, response_body=b"")
        store.transactionCompleted(txn)
        messages = [
            WebSocketMessage(txn.id, "client" if n % 2 == 0 else "server", "text", 1000.0 + n,
                             2, False, b"m%d" % n)
            for n in range(count)
        ]
        for message in messages:
            store.append_message(message)
        return txn, messages

    async def test_provides_websocket_history(self) -> None:
        from postcap.interfaces import IWebSocketHistory

        store = await self.store()
        self.assertTrue(verifyObject(IWebSocketHistory, store))

    async def test_messages_are_kept_with_their_transaction_oldest_first(self) -> None:
        store = await self.store()
        txn, messages = await self.websocket_with_messages(store, 5)
        self.assertEqual(await store.list_messages(txn.id, 2, 1),
                         (5, [m.to_json() for m in messages[1:3]]))
        self.assertEqual(await store.list_messages(txn.id), (5, [m.to_json() for m in messages]))
        detail = await store.get_transaction(txn.id)
        self.assertEqual(detail["websocket"], {
            "messages": [m.to_json() for m in messages], "message_count": 5,
            "closed_by": None, "close_code": None,
        })
        store.websocket_closed(txn.id, "server", 4001)
        closed = (await store.get_transaction(txn.id))["websocket"]
        self.assertEqual((closed["closed_by"], closed["close_code"]), ("server", 4001))
        (exported,) = await store.list_details("s")
        self.assertEqual(exported["websocket"]["message_count"], 5)

    async def test_message_shapes_survive_the_store(self) -> None:
        from postcap.model import WebSocketMessage

        store = await self.store()
        txn = make_transaction(session_id="s", kind="websocket", status=101, response_body=b"")
        store.transactionCompleted(txn)
        kept = [
            WebSocketMessage(txn.id, "server", "binary", 1.5, 4, False, b"\x00\xff\x01\x02"),
            WebSocketMessage(txn.id, "client", "text", 2.5, 100, True, "é".encode() * 3),
            WebSocketMessage(txn.id, "client", "close", 3.5, 6, False, b"bye", 1000),
        ]
        for message in kept:
            store.append_message(message)
        self.assertEqual(await store.list_messages(txn.id), (3, [m.to_json() for m in kept]))

    async def test_messages_of_unknown_transactions(self) -> None:
        from postcap.model import WebSocketMessage

        store = await self.store()
        store.append_message(WebSocketMessage("nope", "client", "text", 1.0, 1, False, b"x"))
        store.websocket_closed("nope", "client", 1000)
        self.assertIsNone(await store.list_messages("nope"))
        plain = make_transaction(session_id="s")
        store.transactionCompleted(plain)
        self.assertEqual(await store.list_messages(plain.id), (0, []))
        self.assertNotIn("websocket", await store.get_transaction(plain.id))

    async def test_messages_go_with_their_transaction(self) -> None:
        store = await self.store()
        txn, _ = await self.websocket_with_messages(store)
        other, _ = await self.websocket_with_messages(store)
        self.assertEqual(await store.delete_transactions([txn.id]), 1)
        self.assertIsNone(await store.list_messages(txn.id))
        self.assertEqual((await store.list_messages(other.id))[0], 3)
        await store.delete_session("s")
        self.assertIsNone(await store.list_messages(other.id))
