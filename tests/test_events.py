"""The event hub and ``GET /events``: numbering, resuming, heartbeats, slow clients,
and a real SSE client following a real server."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from postcap.control.events_resource import HEARTBEAT, EventsResource
from postcap.events import EventHub, TransactionEvents
from postcap.testing import make_transaction
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess


class EventHubTests(SynchronousTestCase):
    def test_ids_count_up_within_a_run(self) -> None:
        hub = EventHub(run_id="run1")
        ids = [hub.publish("session", {"n": n}).id for n in range(3)]
        self.assertEqual(ids, ["run1:1", "run1:2", "run1:3"])

    def test_resume_gives_exactly_the_missed_events(self) -> None:
        hub = EventHub(run_id="r")
        for n in range(5):
            hub.publish("transaction", {"n": n})
        missed, problem = hub.since("r:2")
        self.assertIsNone(problem)
        self.assertEqual([json.loads(e.data)["n"] for e in missed], [2, 3, 4])
        self.assertEqual(hub.since("r:5"), ([], None))
        self.assertEqual(hub.since(None), ([], None))

    def test_resume_past_the_buffer_says_so(self) -> None:
        hub = EventHub(buffer_size=3, run_id="r")
        for n in range(10):
            hub.publish("transaction", {"n": n})
        missed, problem = hub.since("r:2")
        self.assertEqual([e.number for e in missed], [8, 9, 10])
        self.assertEqual(problem, "events after that id are no longer buffered")

    def test_ids_from_another_run_or_the_future_are_flagged(self) -> None:
        hub = EventHub(run_id="now")
        hub.publish("session", {})
        self.assertEqual(hub.since("before:7")[1], "the event id is from an earlier run of the server")
        self.assertEqual(hub.since("now:99")[1], "the event id is newer than any event sent")
        self.assertEqual(hub.since("garbage")[1], "the event id is from an earlier run of the server")

    def test_a_failing_subscriber_does_not_stop_the_others(self) -> None:
        hub = EventHub()
        seen: list[str] = []

        def broken(event: Any) -> None:
            raise RuntimeError("boom")

        hub.subscribe(broken)
        hub.subscribe(lambda event: seen.append(event.kind))
        hub.publish("cookie", {})
        self.assertEqual(seen, ["cookie"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_transaction_sink_publishes_summaries(self) -> None:
        hub = EventHub()
        txn = make_transaction()
        TransactionEvents(hub).transactionCompleted(txn)
        (event,) = hub.since(f"{hub.run_id}:0")[0]
        self.assertEqual((event.kind, json.loads(event.data)), ("transaction", txn.summary()))


class StreamRequest(DummyRequest):
    """A DummyRequest that keeps a push producer (DummyRequest would pull it in a loop)
    and has a transport to abort."""

    def __init__(self) -> None:
        super().__init__([b"events"])
        self.transport = StringTransport()
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer


def frames(request: DummyRequest) -> bytes:
    return b"".join(request.written)


class EventsResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = EventHub(run_id="r")
        self.resource = EventsResource(self.hub, self.clock, heartbeat=15.0, max_backlog=3)

    def connect(self, last_event_id: str | None = None, types: str | None = None) -> StreamRequest:
        request = StreamRequest()
        if last_event_id is not None:
            request.requestHeaders.addRawHeader(b"last-event-id", last_event_id.encode())
        if types is not None:
            request.args[b"types"] = [types.encode()]
        self.resource.render_GET(request)
        return request

    def test_live_events_and_heartbeat(self) -> None:
        request = self.connect()
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/event-stream; charset=utf-8"])
        self.hub.publish("session", {"a": 1})
        self.assertIn(b'id: r:1\nevent: session\ndata: {"a":1}\n\n', frames(request))
        self.clock.advance(15)
        self.assertTrue(frames(request).endswith(HEARTBEAT))

    def test_types_narrow_the_stream(self) -> None:
        request = self.connect(types="cookie")
        self.hub.publish("session", {})
        self.hub.publish("cookie", {"name": "c"})
        self.assertNotIn(b"event: session", frames(request))
        self.assertIn(b"event: cookie", frames(request))
        bad = StreamRequest()
        bad.args[b"types"] = [b"cookie,weather"]
        self.resource.render_GET(bad)
        self.assertEqual(bad.responseCode, 400)

    def test_resume_replays_then_goes_live_without_duplicates(self) -> None:
        for n in range(3):
            self.hub.publish("transaction", {"n": n})
        request = self.connect(last_event_id="r:1")
        self.hub.publish("transaction", {"n": 3})
        sent = frames(request).decode()
        self.assertEqual([line for line in sent.splitlines() if line.startswith("id:")],
                         ["id: r:2", "id: r:3", "id: r:4"])

    def test_resume_from_an_unknown_id_sends_reset_first(self) -> None:
        self.hub.publish("transaction", {})
        request = self.connect(last_event_id="old:5")
        sent = frames(request)
        self.assertIn(b"event: reset", sent)
        self.assertLess(sent.index(b"event: reset"), sent.index(b"id: r:1"))

    def test_slow_client_is_cut_off_not_buffered_forever(self) -> None:
        request = self.connect()
        stream = next(iter(self.resource.streams))
        stream.pauseProducing()
        for n in range(4):
            self.hub.publish("transaction", {"n": n})
        self.assertEqual(self.resource.streams, set())
        self.assertEqual(self.hub.subscriber_count, 0)
        self.assertTrue(request.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_disconnect_unsubscribes_and_stops_the_heartbeat(self) -> None:
        request = self.connect()
        self.assertNotEqual(self.clock.getDelayedCalls(), [])
        request.finish()
        self.assertEqual(self.hub.subscriber_count, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


# -- a real SSE client against a real server ---------------------------------------------




class SSEClient:
    """A minimal blocking SSE reader over a raw socket (bounded by timeouts)."""

    def __init__(self, server: PostcapProcess, last_event_id: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.control_port), timeout=10)
        headers = f"Authorization: Bearer {server.token}\r\n"
        if last_event_id:
            headers += f"Last-Event-ID: {last_event_id}\r\n"
        self.sock.sendall(
            f"GET /events?types=transaction HTTP/1.1\r\nHost: 127.0.0.1:{server.control_port}\r\n"
            f"{headers}\r\n".encode()
        )
        self.buffer = b""

    def events(self, count: int, timeout: float = 15) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            while b"\n\n" in self.buffer and len(found) < count:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1) for line in block.decode().splitlines()
                    if ": " in line and not line.startswith(":")
                )
                if "event" in fields:
                    found.append(fields)
            if len(found) < count:
                self.sock.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk.replace(b"\r\n", b"\n")
        return found

    def close(self) -> None:
        self.sock.close()


@requires_curl
def test_sse_client_follows_live_and_resumes_without_loss_or_duplicates(
    tmp_path: Any, origin: Origin
) -> None:
    with PostcapProcess(tmp_path / "data") as server:
        server.rpc("session.start", name="live")
        client = SSEClient(server)
        try:
            server.curl(origin.url("/hello?n=1"), origin.url("/hello?n=2"))
            first = client.events(2)
        finally:
            client.close()
        assert [json.loads(e["data"])["url"] for e in first] == [
            origin.url("/hello?n=1"), origin.url("/hello?n=2")]
        # Missed while disconnected: two more.
        server.curl(origin.url("/hello?n=3"), origin.url("/hello?n=4"))
        resumed = SSEClient(server, last_event_id=first[-1]["id"])
        try:
            server.curl(origin.url("/hello?n=5"))
            rest = resumed.events(3)
        finally:
            resumed.close()
        assert [json.loads(e["data"])["url"] for e in rest] == [
            origin.url(f"/hello?n={n}") for n in (3, 4, 5)]
        ids = [e["id"] for e in first + rest]
        assert len(set(ids)) == 5
