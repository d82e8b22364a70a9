"""GET /sessions/ID.har streams page by page and waits while the client is slow."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest

from postcap.control.har_resource import SessionExports
from postcap.export import har
from postcap.sinks.history import SQLiteHistoryStore
from postcap.testing import make_session, make_transaction


class SlowClient(DummyRequest):
    """A request whose transport asks its push producer to pause after every write."""

    def __init__(self, postpath: list[bytes]) -> None:
        super().__init__(postpath)
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None:
            self.producer.pauseProducing()


async def settle(condition: Any, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await deferLater(reactor, 0.01, lambda: None)


class HARStreamTests(TestCase):
    async def test_pages_wait_for_the_transport(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        store = SQLiteHistoryStore(os.path.join(directory, "h.sqlite3"))
        self.addCleanup(store.close)
        await store.open()
        session = make_session()
        await store.save_session(session)
        for n in range(5):
            await store.transactionCompleted(make_transaction(
                session_id=session.id, url=f"http://api.test/items/{n}"))
        self.patch(har, "EXPORT_PAGE", 2)
        resource = SessionExports(store)
        request = SlowClient([f"{session.id}.har".encode()])
        resource.render_GET(request)
        waiting = lambda: request.producer is not None and request.producer._resumed is not None  # noqa: E731
        await settle(waiting)
        # Only the document's opening went out; the first page waits for the client.
        self.assertEqual(b"".join(request.written).count(b'"startedDateTime"'), 0)
        self.assertFalse(request.finished)
        seen = [0]
        for _ in range(10):
            if request.finished:
                break
            request.producer.resumeProducing()
            await settle(lambda: request.finished or waiting())
            entries = b"".join(request.written).count(b'"startedDateTime"')
            self.assertLessEqual(entries - seen[-1], 2)  # one page of 2 per resume, no more
            seen.append(entries)
        self.assertEqual(seen[-1], 5)
        self.assertTrue(request.finished)
        document = json.loads(b"".join(request.written))
        self.assertEqual([e["request"]["url"] for e in document["log"]["entries"]],
                         [f"http://api.test/items/{n}" for n in range(5)])
        self.assertIn(b"attachment", request.responseHeaders.getRawHeaders(
            b"content-disposition")[0])
