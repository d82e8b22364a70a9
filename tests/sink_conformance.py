"""What every ICaptureSink must do, as a mixin for trial test cases.

Use it as ``class MySinkTests(CaptureSinkConformance, TestCase)`` and define
``make_sink()``, which returns a ready sink or a Deferred firing with one (and
registers whatever cleanup the sink needs; ``close()`` may be called twice).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface.verify import verifyObject

from postcap.interfaces import ICaptureSink
from postcap.testing import make_transaction


class CaptureSinkConformance:
    """Tests run against every capture sink implementation."""

    def make_sink(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define make_sink()")

    async def sink(self) -> Any:
        return await maybeDeferred(self.make_sink)

    async def test_provides_interface(self) -> None:
        sink = await self.sink()
        self.assertTrue(verifyObject(ICaptureSink, sink))

    async def test_has_a_name(self) -> None:
        sink = await self.sink()
        self.assertIsInstance(sink.name, str)
        self.assertTrue(sink.name)

    async def test_transaction_completed_returns_none_or_deferred(self) -> None:
        sink = await self.sink()
        result = sink.transactionCompleted(make_transaction())
        if result is not None:
            self.assertIsInstance(result, Deferred)
            await result

    async def test_accepts_transaction_outside_a_session(self) -> None:
        sink = await self.sink()
        result = sink.transactionCompleted(make_transaction(session_id=None))
        if result is not None:
            await result

    async def test_accepts_error_transaction(self) -> None:
        sink = await self.sink()
        result = sink.transactionCompleted(make_transaction(error="upstream refused"))
        if result is not None:
            await result

    async def test_flush_fires(self) -> None:
        sink = await self.sink()
        for _ in range(3):
            sink.transactionCompleted(make_transaction())
        flushed = sink.flush()
        self.assertIsInstance(flushed, Deferred)
        await flushed

    async def test_flush_when_idle_fires(self) -> None:
        sink = await self.sink()
        await sink.flush()

    async def test_close_fires(self) -> None:
        sink = await self.sink()
        sink.transactionCompleted(make_transaction())
        closed = sink.close()
        self.assertIsInstance(closed, Deferred)
        await closed

    async def test_close_twice(self) -> None:
        sink = await self.sink()
        await sink.close()
        await sink.close()
